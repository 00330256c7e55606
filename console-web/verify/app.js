// The /verify/ page: paste or scan a stamp, verify it in the browser against the cached trust list.
import { verifyStamp, StampError } from './stamp.js';

const TRUST_URL = '/.well-known/sportello/trust-list.json';
const TRUST_KEY = 'sportello-trust-list';
const $ = (id) => document.getElementById(id);

async function trustList() {
  try {
    const r = await fetch(TRUST_URL, { cache: 'no-cache' });
    if (!r.ok) throw new Error(String(r.status));
    // The service worker's cached copy while offline: say so, with its date, below.
    if (r.headers.get('x-sportello-offline')) throw new Error('offline');
    const list = await r.json();
    localStorage.setItem(TRUST_KEY, JSON.stringify({ fetched: Date.now(), list }));
    $('trust-status').textContent = `Elenco dei firmatari aggiornato ora. / Trust list updated now.`;
    return list;
  } catch {
    const cached = localStorage.getItem(TRUST_KEY);
    if (!cached) throw new StampError('trust', 'elenco dei firmatari non disponibile: collegarsi almeno una volta', 'trust list unavailable: connect once first');
    const { fetched, list } = JSON.parse(cached);
    $('trust-status').textContent = `Senza connessione: elenco dei firmatari del ${new Date(fetched).toLocaleString('it-IT')}. / Offline: trust list from ${new Date(fetched).toLocaleString('en-GB')}.`;
    return list;
  }
}

const el = (tag, text, attrs = {}) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  Object.assign(e, attrs);
  return e;
};
const day = (s) => new Date(s * 1000).toLocaleDateString('it-IT');

function show(result, error) {
  const box = $('result');
  box.hidden = false;
  box.replaceChildren();
  if (error) {
    box.className = 'bad';
    box.append(el('p', 'Contrassegno NON valido', { className: 'verdict' }), el('p', 'Stamp NOT valid', { className: 'en' }));
    box.append(el('p', error.it ? `${error.it} — ${error.en}` : String(error)));
    return;
  }
  if (result.development) {
    // The signature checks, but a development key never makes a document valid.
    box.className = 'bad';
    box.append(
      el('p', 'Contrassegno NON valido: firmato con una chiave di sviluppo', { className: 'verdict' }),
      el('p', 'Stamp NOT valid: signed with a development key, not a valid document.', { className: 'en' }),
    );
  } else {
    box.className = 'ok';
    box.append(el('p', 'Contrassegno valido', { className: 'verdict' }), el('p', 'Valid stamp: compare these data with the paper.', { className: 'en' }));
  }
  const c = result.certificate;
  const dl = el('dl');
  const row = (it, en, value) => { if (value !== null && value !== undefined && value !== '') { dl.append(el('dt', `${it} / ${en}`), el('dd', String(value))); } };
  row('Emittente', 'Issuer', `${result.issuerName} (ISTAT ${result.issuer})`);
  row('Documento', 'Document', c.documentId);
  row('Tipo', 'Kind', c.kind);
  row('Intestatario', 'Subject', `${c.surname} ${c.givenNames}`);
  row('Codice fiscale', 'Fiscal code', c.fiscalCode);
  row('Nascita', 'Birth', `${c.birthDate}, ${c.birthPlace}`);
  row('Alla data', 'As of', c.asOf);
  for (const [k, v] of c.fields) row(k, 'field', v);
  row('Bollo', 'Revenue stamp', c.exemption ? `esente (${c.exemption}) / exempt` : 'dovuto / due');
  row('Rilasciato il', 'Issued', day(result.issuedAt));
  row('Valido fino al', 'Valid until', result.expiresAt ? day(result.expiresAt) : 'validità illimitata / no expiry');
  row('Firmatario', 'Signer', result.signerSubject);
  row('Impronta del testo', 'Text digest (SHA-256)', c.textSha256);
  box.append(dl);
  if (c.members.length) {
    const t = el('table');
    const head = el('tr');
    // The plain family certificates carry no kinship (Circ. Min. Interno 11/1996): no column then.
    const kinship = c.members.some((m) => m[3]);
    const headers = ['Cognome / Surname', 'Nome / Name', 'Nato/a il / Born', 'Rapporto / Relationship'].slice(0, kinship ? 4 : 3);
    for (const h of headers) head.append(el('th', h));
    t.append(head);
    for (const m of c.members) { const tr = el('tr'); for (const v of m.slice(0, headers.length)) tr.append(el('td', String(v ?? ''))); t.append(tr); }
    box.append(t);
  } else if (c.reduced) {
    box.append(el('p', `Componenti: ${c.memberCount} (elenco sul documento) / Members: ${c.memberCount} (listed on the paper)`));
  }
}

async function verify(text) {
  try {
    show(await verifyStamp(text, await trustList()));
  } catch (e) {
    show(null, e);
  }
}

$('verify').addEventListener('click', () => verify($('stamp').value));

/**
 * A QR reader: the browser's own `BarcodeDetector` where it has one, else the ZXing-C++ polyfill
 * shipped with the page (`vendor/`, loaded on first use and kept offline by the service worker).
 */
let detectorPromise = null;
function qrDetector() {
  detectorPromise ??= (async () => {
    if ('BarcodeDetector' in window) {
      try {
        const formats = await window.BarcodeDetector.getSupportedFormats();
        if (formats.includes('qr_code')) return new window.BarcodeDetector({ formats: ['qr_code'] });
      } catch { /* fall back to the polyfill */ }
    }
    await new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = new URL('./vendor/barcode-detector.js', import.meta.url).href;
      s.onload = resolve;
      s.onerror = () => reject(new Error('vendor/barcode-detector.js'));
      document.head.append(s);
    });
    const api = window.BarcodeDetectionAPI;
    const wasm = new URL('./vendor/zxing_reader.wasm', import.meta.url).href;
    api.prepareZXingModule({ overrides: { locateFile: (path, prefix) => (path.endsWith('.wasm') ? wasm : prefix + path) } });
    return new api.BarcodeDetector({ formats: ['qr_code'] });
  })();
  detectorPromise.catch(() => { detectorPromise = null; });
  return detectorPromise;
}

/** The stamp text in what a detector found, if any. */
const stampIn = (codes) => codes.map((c) => c.rawValue).find((v) => v.startsWith('IT1:'));

async function startCamera() {
  const video = $('video');
  const detector = await qrDetector();
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  const tick = async () => {
    try {
      const hit = stampIn(await detector.detect(video));
      if (hit) {
        stream.getTracks().forEach((t) => t.stop());
        video.hidden = true;
        $('stamp').value = hit;
        await verify(hit);
        return;
      }
    } catch { /* A frame that cannot be read is skipped. */ }
    setTimeout(tick, 250);
  };
  tick();
}

/**
 * The stamp text of a PDF issued by Sportello: it carries the text in its Info dictionary
 * (`/SportelloStamp (IT1:…)`), so nothing needs rendering. A scanned PDF has none.
 */
function stampOfPdf(bytes) {
  const text = new TextDecoder('latin1').decode(bytes);
  const key = '/SportelloStamp (';
  const at = text.lastIndexOf(key);
  if (at < 0) return null;
  const end = text.indexOf(')', at + key.length);
  const value = end < 0 ? '' : text.slice(at + key.length, end);
  return value.startsWith('IT1:') ? value : null;
}

/** Reads the stamp from a chosen file (a photo or scan of the paper, or the certificate's PDF). */
async function readFile(file) {
  const status = $('file-status');
  status.textContent = `Lettura di ${file.name}… / Reading ${file.name}…`;
  try {
    let stamp;
    if (file.type === 'application/pdf' || /\.pdf$/i.test(file.name)) {
      stamp = stampOfPdf(new Uint8Array(await file.arrayBuffer()));
      if (!stamp) {
        throw new StampError('file', 'il PDF non contiene il contrassegno in forma leggibile: fotografare o scansionare la pagina e scegliere l\'immagine',
          'the PDF carries no readable stamp: take a photo or scan of the page and choose the image');
      }
    } else {
      const detector = await qrDetector();
      const bitmap = await createImageBitmap(file);
      try {
        stamp = stampIn(await detector.detect(bitmap));
      } finally {
        bitmap.close();
      }
      if (!stamp) {
        throw new StampError('file', 'nessun contrassegno trovato nell\'immagine: inquadrare tutto il codice, ben illuminato e a fuoco',
          'no stamp found in the image: show the whole code, well lit and in focus');
      }
    }
    status.textContent = `Contrassegno letto da ${file.name}. / Stamp read from ${file.name}.`;
    $('stamp').value = stamp;
    await verify(stamp);
  } catch (e) {
    status.textContent = '';
    show(null, e instanceof StampError ? e : new StampError('file', `file non leggibile: ${e.message}`, 'the file cannot be read'));
  }
}

$('file').addEventListener('change', (e) => {
  const file = e.target.files?.[0];
  if (file) readFile(file);
});

if (navigator.mediaDevices?.getUserMedia) {
  $('camera').hidden = false;
  $('camera').addEventListener('click', () => startCamera().catch((e) => show(null, new StampError('camera', `fotocamera non disponibile: ${e.message}`, 'camera unavailable'))));
} else {
  $('camera-note').textContent = 'Questo browser non dà accesso alla fotocamera: scegliere una foto del codice qui sotto, o incollarne il testo. / This browser gives no camera access: choose a photo of the code below, or paste its text.';
}

if ('serviceWorker' in navigator) navigator.serviceWorker.register('./sw.js').catch(() => {});
trustList().catch(() => {});

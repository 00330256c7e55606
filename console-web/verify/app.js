// The /verify/ page: paste or scan a stamp, verify it in the browser against the cached trust list.
import { verifyStamp, StampError } from './stamp.js';

const TRUST_URL = '/.well-known/sportello/trust-list.json';
const TRUST_KEY = 'sportello-trust-list';
const $ = (id) => document.getElementById(id);

async function trustList() {
  try {
    const r = await fetch(TRUST_URL, { cache: 'no-cache' });
    if (!r.ok) throw new Error(String(r.status));
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
    for (const h of ['Cognome / Surname', 'Nome / Name', 'Nato/a il / Born', 'Rapporto / Relationship']) head.append(el('th', h));
    t.append(head);
    for (const m of c.members) { const tr = el('tr'); for (const v of m) tr.append(el('td', String(v))); t.append(tr); }
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

async function startCamera() {
  const video = $('video');
  const detector = new BarcodeDetector({ formats: ['qr_code'] });
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  const tick = async () => {
    try {
      const codes = await detector.detect(video);
      const hit = codes.find((c) => c.rawValue.startsWith('IT1:'));
      if (hit) {
        stream.getTracks().forEach((t) => t.stop());
        video.hidden = true;
        $('stamp').value = hit.rawValue;
        await verify(hit.rawValue);
        return;
      }
    } catch { /* A frame that cannot be read is skipped. */ }
    setTimeout(tick, 250);
  };
  tick();
}

if ('BarcodeDetector' in window && navigator.mediaDevices) {
  $('camera').hidden = false;
  $('camera').addEventListener('click', () => startCamera().catch((e) => show(null, new StampError('camera', `fotocamera non disponibile: ${e.message}`, 'camera unavailable'))));
} else {
  $('camera-note').textContent = 'Questo browser non legge i codici QR dalla fotocamera: usare un lettore QR e incollare il testo. / This browser cannot scan QR codes: use any QR reader and paste the text.';
}

if ('serviceWorker' in navigator) navigator.serviceWorker.register('./sw.js').catch(() => {});
trustList().catch(() => {});

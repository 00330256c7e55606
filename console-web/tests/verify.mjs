// The verification page /verify/ in real headless Chromium, which has no `BarcodeDetector`: the
// page must read the QR code with the decoder it ships (vendor/, ZXing-C++ as WebAssembly).
//
// 1. Load /verify/ and wait until its service worker controls the page (reload once).
// 2. Choose a photo of the printed certificate (a JPEG made by the Rust test: the page rendered at
//    150 dpi, turned by a few degrees, blurred, under uneven light) → "Contrassegno valido", and the
//    document id of the certificate.
// 3. Choose the certificate's PDF → valid (the stamp text is read from the PDF's Info dictionary).
// 4. Choose an image without a code → a clear "nessun contrassegno trovato".
// 5. Go offline, reload: the page comes from the service worker's cache; the photo still verifies
//    (decoder and trust list cached).
// axe-core checks the page with a result shown; no CSP violation may occur.
//
// Usage: node verify.mjs --base URL --photo FILE --pdf FILE --blank FILE --document-id ID
//                        [--chromium PATH] [--timeout-s 60]
// Prints one JSON line: {"ok":true,"nativeDetector":false,"photo":{…},"pdf":{…},"offline":{…},"axe":{…}}
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, newContext, optionReader, report, waitFor, watch,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    photo: flag('photo', 'PHOTO'),
    pdf: flag('pdf', 'PDF'),
    blank: flag('blank', 'BLANK'),
    documentId: flag('document-id', 'DOCUMENT_ID'),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    timeoutS: Number(flag('timeout-s', 'VERIFY_TIMEOUT_S', '60')),
  };
  const missing = ['base', 'photo', 'pdf', 'blank', 'documentId'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`verify.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  return o;
}

/** Chooses `file` in the page's file input and waits for a verdict; returns it. */
async function choose(side, o, file) {
  await side.page.evaluate(() => {
    const r = document.getElementById('result');
    r.hidden = true;
    r.replaceChildren();
  });
  await side.page.setInputFiles('#file', file);
  await waitFor(side, o, `gave no verdict for ${file}`, () => !document.getElementById('result').hidden);
  return side.page.evaluate(() => {
    const r = document.getElementById('result');
    return { className: r.className, verdict: r.querySelector('.verdict')?.textContent ?? '', text: r.textContent };
  });
}

function expectValid(what, v, o) {
  if (v.className !== 'ok' || !/^Contrassegno valido/.test(v.verdict)) throw new Failure(`${what}: not valid: ${JSON.stringify(v)}`);
  if (!v.text.includes(o.documentId)) throw new Failure(`${what}: the document id ${o.documentId} is not shown: ${v.text}`);
}

async function main() {
  const o = options();
  const browser = await chromium.launch({ executablePath: o.chromium, args: FLAGS });
  const result = { ok: false };
  let side = null;
  try {
    const context = await newContext(browser, o, { width: 412, height: 915 });
    side = watch('verify', await context.newPage());
    // 1. The page, then its service worker in control.
    await side.page.goto(`${o.base}/verify/`);
    result.nativeDetector = await side.page.evaluate(() => 'BarcodeDetector' in window);
    await waitFor(side, o, 'registered no service worker', () => navigator.serviceWorker.ready.then(() => true));
    await side.page.reload();
    await waitFor(side, o, 'is not controlled by its service worker', () => Boolean(navigator.serviceWorker.controller));
    await waitFor(side, o, 'did not load the trust list', () => Boolean(localStorage.getItem('sportello-trust-list')));

    // 2. A photo of the paper.
    const t0 = Date.now();
    const photo = await choose(side, o, o.photo);
    expectValid('photo', photo, o);
    result.photo = { valid: true, ms: Date.now() - t0 };
    result.axe = await axe(side);
    if (result.axe.serious) throw new Failure(`axe: ${JSON.stringify(result.axe.violations)}`);

    // 3. The PDF.
    const pdf = await choose(side, o, o.pdf);
    expectValid('pdf', pdf, o);
    result.pdf = { valid: true };

    // 4. An image with no code.
    const blank = await choose(side, o, o.blank);
    if (blank.className !== 'bad' || !/nessun contrassegno trovato/.test(blank.text)) throw new Failure(`blank image: ${JSON.stringify(blank)}`);
    result.blank = { refused: true };

    // 5. Offline.
    await context.setOffline(true);
    await side.page.reload();
    await waitFor(side, o, 'did not load offline', () => Boolean(document.getElementById('file')));
    const offline = await choose(side, o, o.photo);
    expectValid('offline photo', offline, o);
    const trust = await side.page.textContent('#trust-status');
    if (!/Senza connessione/.test(trust)) throw new Failure(`offline trust status: ${trust}`);
    result.offline = { valid: true, trust };
    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`verify.mjs: FAILED: ${e.message}`);
    if (side) console.error(await report(side));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`verify.mjs: ${e.stack ?? e}`);
  process.exit(1);
});

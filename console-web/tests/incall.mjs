// End-to-end check of the in-call actions in real headless Chromium (fake camera): a kiosk screen
// (/kiosk/, with the kiosk agent's URL in its fragment) calls; the operator logs in on /console/,
// goes available and accepts; the operator asks for a paper document; the kiosk prompts the citizen
// to place it on the scanner and the test touches "Fatto" (the agent scans and uploads); the console
// shows the scan beside the live video, the operator confirms fiscal code, document type and number;
// both screens say the citizen is identified; the operator issues a certificate with bollo; the
// console previews the PDF (fetched with the operator's token) and the kiosk tells the citizen to
// apply a marca da bollo; the operator prints it; the console shows "stampato" and the kiosk tells
// the citizen to collect it. axe-core checks the kiosk's scanner prompt and the console with its
// panels open (any violation fails the run). Finally the operator ends the call.
//
// The kiosk agent (`sportello-kiosk-agent`, with a scanner and a printer) must already be running
// for the same kiosk; the script only drives the two pages.
//
// Usage:
//   node incall.mjs --base http://127.0.0.1:PORT --kiosk-token TOKEN
//                   --username USER --password PASS --fiscal-code CF
//                   [--agent-url http://127.0.0.1:7480] [--document-type carta_identita]
//                   [--document-number CA00000AA] [--kind residenza] [--timeout-s 120]
//                   [--screenshot-dir DIR] [--chromium PATH]
// Every option may also come from the environment: SPORTELLO_BASE, KIOSK_TOKEN, AGENT_URL,
// OPERATOR_USERNAME, OPERATOR_PASSWORD, FISCAL_CODE, DOCUMENT_TYPE, DOCUMENT_NUMBER,
// CERTIFICATE_KIND, INCALL_TIMEOUT_S, SCREENSHOT_DIR, CHROMIUM. Screenshots (1280×900 console,
// 1280×800 kiosk: incall-kiosk-scan/verified/bollo/printed.png, incall-console-scan/verified/
// issued/printed.png) are written when SCREENSHOTS=1 or a screenshot directory is given (default
// directory ../../docs/screenshots).
//
// On success prints one JSON line and exits 0:
//   {"ok":true,"call_id","document_id","job_id","fiscal_code","kind","pages","bollo_due",
//    "valid_until","scan":{"naturalWidth","naturalHeight"},"preview":{"bytes","type"},
//    "print_state":"printed","kiosk":{"prompts":[…],"identity":"verified","bollo_notice":true,
//    "collect_notice":true},"axe":{"violations":0,"console":[…],"kiosk":[…]},"ended":true}
// On failure prints the reason and both pages' logs on standard error and exits 1.
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, kioskScreen, openPage, optionReader, report, shot, sleep, waitFor,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const shotDir = flag('screenshot-dir', 'SCREENSHOT_DIR');
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    agentUrl: flag('agent-url', 'AGENT_URL', 'http://127.0.0.1:7480'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    fiscalCode: flag('fiscal-code', 'FISCAL_CODE'),
    documentType: flag('document-type', 'DOCUMENT_TYPE', 'carta_identita'),
    documentNumber: flag('document-number', 'DOCUMENT_NUMBER', 'CA00000AA'),
    kind: flag('kind', 'CERTIFICATE_KIND', 'residenza'),
    timeoutS: Number(flag('timeout-s', 'INCALL_TIMEOUT_S', '120')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    screenshots: process.env.SCREENSHOTS === '1' || Boolean(shotDir),
    shotDir: shotDir ?? new URL('../../docs/screenshots/', import.meta.url).pathname,
  };
  const missing = ['base', 'kioskToken', 'username', 'password', 'fiscalCode'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`incall.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  o.fiscalCode = o.fiscalCode.toUpperCase();
  return o;
}

/** The visible case panel of the selected booth on the console. */
const CASE = '#incall-panels .casefile:not([hidden])';

/** The console's in-call summary of `callId` once `test(summary)` holds. */
async function incallState(op, o, what, callId, test) {
  // The condition is checked here, in Node: the page's CSP refuses `new Function`.
  const deadline = Date.now() + o.timeoutS * 1000;
  for (;;) {
    const s = await op.page.evaluate((id) => window.__probe.incall(id), callId).catch(() => null);
    if (s && test(s)) return s;
    if (Date.now() > deadline) throw new Failure(`timeout: ${op.name} ${what}: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

const text = (side, selector) => side.page.evaluate((sel) => document.querySelector(sel)?.innerText ?? '', selector);

/** A screenshot of the console with `selector` scrolled to the top of the view. */
async function consoleShot(op, o, selector, file) {
  if (!o.screenshots) return;
  await op.page.evaluate((sel) => document.querySelector(sel)?.scrollIntoView({ block: 'start' }), selector);
  await shot(op, o, file);
}

/** axe-core, where every violation counts (not only the serious ones). */
async function axeAll(side, what) {
  const r = await axe(side);
  if (r.violations.length) throw new Failure(`axe-core on ${what}: ${JSON.stringify(r.violations)}`);
  return r.violations;
}

async function main() {
  const o = options();
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: FLAGS, timeout: o.timeoutS * 1000 });
  const sides = [];
  const result = { ok: false, fiscal_code: o.fiscalCode, kind: o.kind, kiosk: {}, axe: {} };
  try {
    // 1. The operator logs in and goes available.
    const op = await openPage(browser, o, 'console', `${o.base}/console/`, { width: 1280, height: 900 });
    sides.push(op);
    await waitFor(op, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    await op.page.fill('#username', o.username);
    await op.page.fill('#password', o.password);
    await op.page.click('#login-submit');
    await waitFor(op, o, 'did not open the console', () => document.body.dataset.screen === 'console' && document.body.dataset.connection === 'open');
    await op.page.click('[data-presence="available"]');
    await waitFor(op, o, 'did not become available', () => JSON.parse(document.body.dataset.operator).state === 'available');

    // 2. The kiosk calls (the agent's URL in the fragment); the operator accepts.
    const kioskUrl = `${o.base}/kiosk/#token=${encodeURIComponent(o.kioskToken)}&agent=${encodeURIComponent(o.agentUrl)}`;
    const kiosk = await openPage(browser, o, 'kiosk', kioskUrl);
    sides.push(kiosk);
    await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
    await kiosk.page.click('#call');
    await waitFor(op, o, 'showed no offer', () => document.querySelector('.offer .offer-accept'));
    await op.page.click('.offer .offer-accept');
    const tile = await waitFor(op, o, 'has no connected booth', () => window.__probe.tiles().find((t) => t.state === 'connected'));
    result.call_id = tile.callId;
    await kioskScreen(kiosk, o, 'in_call');
    await waitFor(op, o, 'showed no case panel', (sel) => document.querySelector(sel), CASE);

    // 3. Paper document: the kiosk prompts for the scanner; the citizen touches "Fatto".
    await op.page.click(`${CASE} .act-method[data-method="document"]`);
    await incallState(op, o, 'did not show the identification as pending', result.call_id, (s) => s.identity.status === 'pending');
    await waitFor(kiosk, o, 'did not prompt for the scanner', () => document.body.dataset.prompt === 'scan' && !document.getElementById('scan-done').hidden);
    const scanPrompt = await text(kiosk, '#prompt');
    if (!/Appoggia il documento sul vetro dello scanner/.test(scanPrompt)) throw new Failure(`scanner prompt: ${scanPrompt}`);
    await shot(kiosk, o, 'incall-kiosk-scan');
    result.axe.kiosk = await axeAll(kiosk, 'the kiosk scanner prompt');
    await kiosk.page.click('#scan-done');

    // 4. The console shows the scan (fetched with the token) beside the live video.
    await incallState(op, o, 'did not load the scan', result.call_id, (s) => s.scan?.loaded);
    result.scan = await waitFor(op, o, 'did not display the scan image', (sel) => {
      const img = document.querySelector(`${sel} .scan-img`);
      return img && img.complete && img.naturalWidth > 0 && { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight };
    }, CASE);
    await consoleShot(op, o, CASE, 'incall-console-scan');

    // 5. The operator confirms; both screens say the citizen is identified.
    await op.page.fill(`${CASE} .confirm-cf`, o.fiscalCode);
    await op.page.selectOption(`${CASE} .confirm-type`, o.documentType);
    await op.page.fill(`${CASE} .confirm-number`, o.documentNumber);
    await op.page.click(`${CASE} .act-confirm`);
    const verified = await incallState(op, o, 'did not show the citizen as identified', result.call_id, (s) => s.identity.status === 'verified');
    // The citizen's data is on the panel (not in its data-summary).
    const subject = { fiscal_code: await text(op, `${CASE} .subject-cf`), name: await text(op, `${CASE} .subject-name`) };
    if (subject.fiscal_code !== o.fiscalCode) throw new Failure(`identified as ${JSON.stringify(subject)} (${verified.identity.method})`);
    const idStatus = await text(op, `${CASE} .id-status`);
    if (!/Identificato/.test(idStatus)) throw new Failure(`console identity status: ${idStatus}`);
    result.subject = subject;
    await waitFor(kiosk, o, 'did not show the identity as verified', () => document.body.dataset.identity === 'verified' && document.body.dataset.prompt === 'verified');
    const kioskVerified = await text(kiosk, '#prompt');
    if (!/Identità verificata/.test(kioskVerified)) throw new Failure(`kiosk verified prompt: ${kioskVerified}`);
    await shot(kiosk, o, 'incall-kiosk-verified');
    await consoleShot(op, o, CASE, 'incall-console-verified');

    // 6. A certificate with bollo: the console previews the PDF; the kiosk asks for a marca da bollo.
    await op.page.selectOption(`${CASE} .cert-kind`, o.kind);
    await op.page.check(`${CASE} .usage-bollo`);
    const cf = await op.page.inputValue(`${CASE} .cert-cf`);
    if (cf !== o.fiscalCode) throw new Failure(`the certificate is not for the identified citizen by default: ${cf}`);
    // First the preview (certificate.preview): shown in the panel, nothing issued yet.
    await op.page.click(`${CASE} .act-preview`);
    const drafted = await incallState(op, o, 'did not show the preview', result.call_id, (s) => s.draft);
    if (drafted.draft.kind !== o.kind || drafted.draft.fiscal_code !== o.fiscalCode || drafted.docs.length) {
      throw new Failure(`preview: ${JSON.stringify(drafted)}`);
    }
    const draftFrame = await op.page.evaluate((sel) => {
      const f = document.querySelector(`${sel} .cert-draft-frame`);
      return { src: f?.getAttribute('src') ?? '', visible: Boolean(f && !f.closest('.cert-draft').hidden) };
    }, CASE);
    if (!draftFrame.visible || !draftFrame.src.startsWith('blob:')) throw new Failure(`preview frame: ${JSON.stringify(draftFrame)}`);
    result.draft = { bytes: drafted.draft.bytes };
    await op.page.click(`${CASE} .act-issue`);
    const issued = await incallState(op, o, 'did not show the issued certificate', result.call_id, (s) => s.docs.length > 0);
    const doc = issued.docs[0];
    Object.assign(result, { document_id: doc.document_id, pages: doc.pages, bollo_due: doc.bollo_due, valid_until: doc.valid_until });
    if (!doc.bollo_due) throw new Failure(`a certificate with bollo says no bollo is due: ${JSON.stringify(doc)}`);
    const preview = await incallState(op, o, 'did not load the PDF preview', result.call_id, (s) => s.docs[0].preview || s.docs[0].previewError);
    if (!preview.docs[0].preview) throw new Failure(`PDF preview failed: ${preview.docs[0].previewError}`);
    result.preview = { bytes: preview.docs[0].previewBytes, type: preview.docs[0].previewType };
    const frame = await op.page.evaluate((sel) => {
      const f = document.querySelector(`${sel} .doc-preview`);
      const a = document.querySelector(`${sel} .doc-open`);
      return { src: f?.getAttribute('src') ?? '', visible: Boolean(f && !f.hidden), open: a?.getAttribute('href') ?? '' };
    }, CASE);
    if (!frame.visible || !frame.src.startsWith('blob:') || frame.open !== frame.src) throw new Failure(`PDF preview: ${JSON.stringify(frame)}`);
    await waitFor(kiosk, o, 'did not show the bollo notice',
      (id) => JSON.parse(document.body.dataset.notices).certificate?.document_id === id && JSON.parse(document.body.dataset.notices).certificate.bollo_due
        && !document.getElementById('notice-bollo').hidden, doc.document_id);
    const bollo = await text(kiosk, '#notice-bollo');
    if (!/marca da bollo da 16 €/.test(bollo)) throw new Failure(`kiosk bollo notice: ${bollo}`);
    result.kiosk.bollo_notice = true;
    await consoleShot(op, o, CASE, 'incall-console-issued');
    await shot(kiosk, o, 'incall-kiosk-bollo');

    // 7. Print: the console follows the job to "stampato"; the kiosk says to collect it.
    await op.page.click(`${CASE} .doc .act-print`);
    const printed = await incallState(op, o, 'did not show the job as printed', result.call_id,
      (s) => s.jobs.some((j) => j.state === 'printed' || j.state === 'failed'));
    const job = printed.jobs[0];
    if (job.state !== 'printed') throw new Failure(`print job ${job.job_id}: ${job.state} ${job.detail ?? ''}`);
    result.job_id = job.job_id;
    result.print_state = job.state;
    const jobText = await text(op, `${CASE} .doc .job`);
    if (!/stampato/.test(jobText)) throw new Failure(`console job state: ${jobText}`);
    await waitFor(kiosk, o, 'did not tell the citizen to collect the certificate',
      () => JSON.parse(document.body.dataset.notices).print?.state === 'printed' && !document.getElementById('notice-print').hidden);
    const collect = await text(kiosk, '#notice-print');
    if (!/Ritira il certificato dalla stampante/.test(collect)) throw new Failure(`kiosk print notice: ${collect}`);
    result.kiosk.collect_notice = true;
    await consoleShot(op, o, `${CASE} .panel-docs`, 'incall-console-printed');
    await shot(kiosk, o, 'incall-kiosk-printed');

    // 7b. A contestuale of two parts, its bollo paid with a marca recorded in the form: a malformed
    // identifier is caught in the form; then nothing is due and the card names the marca.
    await op.page.selectOption(`${CASE} .cert-kind`, 'contestuale');
    await op.page.check(`${CASE} .usage-bollo`);
    await op.page.check(`${CASE} .cert-part[value="nascita"]`);
    await op.page.check(`${CASE} .cert-part[value="residenza"]`);
    await op.page.fill(`${CASE} .cert-marca-id`, '123');
    await op.page.fill(`${CASE} .cert-marca-date`, new Date().toISOString().slice(0, 10));
    await op.page.click(`${CASE} .act-issue`);
    const marcaError = await text(op, `${CASE} .cert-error`);
    if (!/14 cifre/.test(marcaError)) throw new Failure(`a malformed marca was not caught: ${marcaError}`);
    const marcaId = String(Date.now()).padStart(14, '0').slice(-14);
    await op.page.fill(`${CASE} .cert-marca-id`, marcaId);
    await op.page.click(`${CASE} .act-issue`);
    const paid = await incallState(op, o, 'did not show the certificate paid with a marca', result.call_id, (s) => s.docs.length > 1);
    const paidDoc = paid.docs[1];
    if (paidDoc.kind !== 'contestuale' || paidDoc.bollo_due || paidDoc.marca_id !== marcaId) throw new Failure(`certificate with a marca: ${JSON.stringify(paidDoc)}`);
    const card = await text(op, `${CASE} .doc[data-document-id="${paidDoc.document_id}"] .doc-bollo`);
    if (!card.includes(marcaId)) throw new Failure(`the card does not name the marca: ${card}`);
    result.marca = { document_id: paidDoc.document_id, marca_id: marcaId };

    // 8. axe-core on the console with the panels open.
    result.axe.console = await axeAll(op, 'the console with the in-call panels');
    result.axe.violations = result.axe.console.length + result.axe.kiosk.length;
    result.kiosk.prompts = await kiosk.page.evaluate(() => JSON.parse(document.body.dataset.prompts));
    result.kiosk.identity = await kiosk.page.evaluate(() => document.body.dataset.identity);
    result.kiosk.agent = await kiosk.page.evaluate(() => JSON.parse(document.body.dataset.agent));

    // 9. The operator ends the call: the kiosk clears the prompts and notices.
    await op.page.click(`#tile-${tile.slot} .act-end`);
    await kioskScreen(kiosk, o, 'ended');
    const cleared = await kiosk.page.evaluate(() => ({ prompt: document.body.dataset.prompt ?? null, notices: JSON.parse(document.body.dataset.notices), side: document.getElementById('side').hidden }));
    if (cleared.prompt !== null || cleared.notices.certificate !== null || !cleared.side) throw new Failure(`kiosk not cleared: ${JSON.stringify(cleared)}`);
    result.ended = true;
    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`incall.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`incall.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});

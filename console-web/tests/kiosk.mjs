// End-to-end check of the kiosk screen /kiosk/ in real headless Chromium (fake camera): the kiosk
// picks a language and a service and calls; an operator on /media-test/ accepts; the kiosk shows the
// in-call screen and decodes the operator's video; the operator holds and resumes; the kiosk's
// socket is cut and it recovers with its call; the operator ends and the kiosk shows the end screen
// and then the welcome screen. axe-core checks the welcome screen (serious or critical violations
// fail the run).
//
// Usage:
//   node kiosk.mjs --base http://127.0.0.1:PORT --kiosk-token TOKEN --username USER --password PASS
//                  [--timeout-s 90] [--chromium PATH]
// With SCREENSHOTS=1 it writes kiosk-welcome/waiting/in-call/hold/reconnecting.png (1280×800) into
// SCREENSHOT_DIR (default ../../docs/screenshots).
//
// On success prints one JSON line {"ok":true,"screens",…} and exits 0; on failure prints the reason
// and both pages' logs on standard error and exits 1.
import http from 'node:http';
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, cspViolations, axe, kioskScreen, login, newContext, openPage, optionReader, report, shot, sleep, waitFor, watch,
} from './harness.mjs';



function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    timeoutS: Number(flag('timeout-s', 'KIOSK_TIMEOUT_S', '90')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    screenshots: process.env.SCREENSHOTS === '1',
    shotDir: process.env.SCREENSHOT_DIR ?? new URL('../../docs/screenshots/', import.meta.url).pathname,
  };
  const missing = ['base', 'kioskToken', 'username', 'password'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`kiosk.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  return o;
}




/** Step 7: getUserMedia refuses video until the test allows it (a denied or missing camera). */
async function cameraDenied(browser, o, operatorToken, sides) {
  const operator = await openPage(browser, o, 'operator 2', `${o.base}/media-test/#role=operator&token=${encodeURIComponent(operatorToken)}`);
  sides.push(operator);
  await waitFor(operator, o, 'did not become available', () => window.mediaTest?.state === 'available');
  const context = await newContext(browser, o, undefined, () => {
    const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) => (c?.video && !window.allowCamera
      ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))
      : real(c));
  });
  const kiosk = watch('kiosk 2', await context.newPage());
  const { page } = kiosk;
  sides.push(kiosk);
  // The token is in localStorage of the first context only: give it again.
  await page.goto(`${o.base}/kiosk/#token=${encodeURIComponent(o.kioskToken)}`);
  await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
  await page.click('#call');
  await kioskScreen(kiosk, o, 'in_call');
  await waitFor(kiosk, o, 'showed no camera message', () => document.body.dataset.banner === 'camera' && !document.getElementById('camera-retry').hidden);
  const message = await text(kiosk, 'banner');
  if (!/Fotocamera o microfono non disponibili/.test(message)) throw new Failure(`camera message: ${message}`);
  await waitFor(kiosk, o, 'did not decode the operator without a camera',
    async () => (await window.__probe.framesDecoded()) > 10);
  await shot(kiosk, o, 'kiosk-camera');
  const cameraError = await page.evaluate(() => document.body.dataset.cameraError);
  await page.evaluate(() => { window.allowCamera = true; });
  await page.click('#camera-retry');
  await waitFor(kiosk, o, 'kept the camera message after the retry', () => document.body.dataset.banner === undefined);
  await waitFor(operator, o, 'did not decode the kiosk after the camera retry',
    async () => (await window.mediaTest.stats()).framesDecoded > 10);
  await page.click('#hang-up');
  await kioskScreen(kiosk, o, 'ended');
  return { cameraError, message, retried: true };
}

const text = (side, id) => side.page.evaluate((i) => document.getElementById(i)?.innerText ?? '', id);

/**
 * Step 8: the `#agent=` override. A non-loopback address is ignored with a warning and never
 * stored; a loopback one is stored, and the kiosk's CSP lets the page reach it (a stand-in agent on
 * a free loopback port answers) while it refuses any other origin.
 */
async function agentOverride(browser, o, sides) {
  const hits = [];
  const agent = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': o.base });
    res.end('{"connected":true}');
  });
  await new Promise((r) => agent.listen(0, '127.0.0.1', r));
  const agentUrl = `http://127.0.0.1:${agent.address().port}`;
  try {
    const kiosk = watch('kiosk 3', await (await newContext(browser, o)).newPage());
    sides.push(kiosk);
    // No device token: the page shows its setup screen, and reads the fragment all the same.
    const stored = () => kiosk.page.evaluate(() => localStorage.getItem('sportello.kiosk.agent'));
    await kiosk.page.goto(`${o.base}/kiosk/#agent=${encodeURIComponent('http://evil.example/')}`);
    await kioskScreen(kiosk, o, 'setup');
    const evil = await stored();
    if (evil !== null) throw new Failure(`a non-loopback agent was stored: ${evil}`);
    const warned = kiosk.consoleLines.some((l) => l.startsWith('[warning]') && l.includes('#agent= ignored'));
    if (!warned) throw new Failure('no console warning for the ignored #agent=');
    await kiosk.page.goto('about:blank');
    await kiosk.page.goto(`${o.base}/kiosk/#agent=${encodeURIComponent(`${agentUrl}/`)}`);
    await kioskScreen(kiosk, o, 'setup');
    const kept = await stored();
    if (kept !== agentUrl) throw new Failure(`the loopback agent was not stored: ${kept}`);
    const reached = await kiosk.page.evaluate((u) => fetch(`${u}/v1/status`).then((r) => r.json()), agentUrl);
    if (!reached.connected || !hits.includes('GET /v1/status')) throw new Failure(`the loopback agent was not reached: ${hits}`);
    // The CSP refuses anything else, even if a page script tried.
    const before = cspViolations.length;
    const blocked = await kiosk.page.evaluate(() => fetch('http://evil.example/v1/pin').then(() => false, () => true));
    if (!blocked) throw new Failure('the kiosk page could fetch http://evil.example/');
    await sleep(200);
    const refused = cspViolations.splice(before);
    if (!refused.some((l) => l.includes('evil.example'))) throw new Failure(`no CSP violation for evil.example: ${refused}`);
    return { ignored: 'http://evil.example/', stored: kept, reached: true, cspRefusedOther: true };
  } finally {
    agent.close();
  }
}

async function main() {
  const o = options();
  const operatorToken = await login(o.base, o.username, o.password);
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: FLAGS, timeout: o.timeoutS * 1000 });
  const sides = [];
  let operator = null;
  const result = { ok: false };
  try {
    // 1. The welcome screen: token out of the URL, axe-core, screenshot.
    const kiosk = await openPage(browser, o, 'kiosk', `${o.base}/kiosk/#token=${encodeURIComponent(o.kioskToken)}&feedback_s=5`);
    sides.push(kiosk);
    await kioskScreen(kiosk, o, 'welcome');
    await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
    if (kiosk.page.url().includes('token')) throw new Failure(`the token is still in the URL: ${kiosk.page.url()}`);
    if (!(await kiosk.page.evaluate(() => localStorage.getItem('sportello.kiosk.token')))) throw new Failure('the token was not stored');
    await shot(kiosk, o, 'kiosk-welcome');
    result.axe = await axe(kiosk);
    if (result.axe.serious > 0) throw new Failure(`axe-core: ${JSON.stringify(result.axe.violations)}`);
    const small = await kiosk.page.evaluate(() => [...document.querySelectorAll('button')]
      .filter((b) => b.offsetParent && b.getBoundingClientRect().height < 64).map((b) => b.id || b.textContent));
    if (small.length) throw new Failure(`buttons lower than 64 px: ${small.join(', ')}`);

    // 2. English, civil status, call: nobody is online, so the wait is unknown.
    await kiosk.page.click('button.lang[data-lang="en"]');
    await kiosk.page.click('#service-stato_civile');
    await kiosk.page.click('#call');
    await kioskScreen(kiosk, o, 'waiting');
    const estimate = await waitFor(kiosk, o, 'showed no estimate', () => document.getElementById('waiting-estimate').innerText);
    if (!/Wait unknown/.test(estimate) || !/Attesa non stimabile/.test(estimate)) throw new Failure(`waiting estimate: ${estimate}`);
    result.waiting = { position: await text(kiosk, 'waiting-position'), estimate };
    await shot(kiosk, o, 'kiosk-waiting');

    // 3. The operator comes online and accepts; the kiosk decodes the operator's video.
    operator = await openPage(browser, o, 'operator', `${o.base}/media-test/#role=operator&token=${encodeURIComponent(operatorToken)}`);
    sides.push(operator);
    await kioskScreen(kiosk, o, 'in_call');
    const frames = await waitFor(kiosk, o, 'did not decode more than 10 frames',
      async () => { const n = await window.__probe.framesDecoded(); return n > 10 && n; });
    result.callId = await kiosk.page.evaluate(() => document.body.dataset.callId);
    await shot(kiosk, o, 'kiosk-in-call');

    // 4. Hold and resume.
    await operator.page.evaluate(() => window.mediaTest.hold());
    await kioskScreen(kiosk, o, 'hold');
    const hold = await text(kiosk, 'screen-hold');
    if (!/The operator will be back shortly/.test(hold) || !/L'operatore tornerà tra poco/.test(hold)) throw new Failure(`hold screen: ${hold}`);
    await shot(kiosk, o, 'kiosk-hold');
    await operator.page.evaluate(() => window.mediaTest.resume());
    await kioskScreen(kiosk, o, 'in_call');

    // 5. The socket is cut: the kiosk says so, reconnects with resume and keeps its call and video.
    await kiosk.page.evaluate(() => window.__probe.dropConnection());
    await waitFor(kiosk, o, 'did not notice the lost connection', () => Number(document.body.dataset.lost) > 0);
    await waitFor(kiosk, o, 'did not reconnect', () => document.body.dataset.connection === 'open' && document.body.dataset.banner !== 'network');
    const after = await kiosk.page.evaluate(() => ({ screen: document.body.dataset.screen, callId: document.body.dataset.callId }));
    if (after.screen !== 'in_call' || after.callId !== result.callId) throw new Failure(`after reconnecting: ${JSON.stringify(after)}`);
    await waitFor(kiosk, o, 'stopped decoding after reconnecting',
      async (n) => (await window.__probe.framesDecoded()) > n + 10, frames);
    result.reconnected = true;
    result.framesDecoded = await kiosk.page.evaluate(() => window.__probe.framesDecoded());

    // 6. The operator ends: end screen with the rating faces, which return to the welcome screen by
    // themselves when nobody answers; everything cleared.
    await operator.page.evaluate(() => window.mediaTest.hangUp());
    await kioskScreen(kiosk, o, 'ended');
    await waitFor(kiosk, o, 'did not ask for a rating', () => document.body.dataset.feedback === 'asking');
    await waitFor(kiosk, o, 'did not return to welcome', () => document.body.dataset.screen === 'welcome', null, 20000);
    result.feedbackAsked = true;
    const cleared = await kiosk.page.evaluate(() => ({
      callId: document.body.dataset.callId ?? null,
      lang: document.documentElement.lang,
      remote: document.getElementById('remote').srcObject,
    }));
    if (cleared.callId !== null || cleared.lang !== 'it' || cleared.remote !== null) throw new Failure(`not cleared: ${JSON.stringify(cleared)}`);
    result.screens = await kiosk.page.evaluate(() => JSON.parse(document.body.dataset.screens));
    await kiosk.page.context().close();
    await operator.page.context().close();
    sides.length = 0;

    // 7. A kiosk whose camera is denied: a clear message, the call goes on (the citizen still sees
    //    and hears the operator), the retry brings the camera back; the citizen ends the call.
    result.camera = await cameraDenied(browser, o, operatorToken, sides);
    result.agent = await agentOverride(browser, o, sides);
    // Every page of the run (kiosks, operators) loaded and ran without a CSP violation.
    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`kiosk.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    if (operator) await operator.page.evaluate(() => window.mediaTest.hangUp()).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`kiosk.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});

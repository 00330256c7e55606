// End-to-end check of the operator console /console/ in real headless Chromium (fake camera): the
// operator logs in and goes available; two kiosk pages (/kiosk/) call one after the other; the
// console rings for each offer and accepts both (the first with the A key, the second with its
// button); both booth tiles decode their kiosk's video; booth 1 is held (its kiosk shows the hold
// screen) and resumed with the keyboard; booth 2 is ended (its kiosk shows the end screen and the
// citizen rates the call with a face) and its wrap-up closed with a disposition by key and notes;
// booth 1's citizen skips the rating; in between the console reloads and state.sync restores both tiles. axe-core checks the login form, the ringing offer and the console (serious or critical violations fail).
//
// Usage:
//   node console.mjs --base http://127.0.0.1:PORT --username USER --password PASS
//                    --kiosk-token TOKEN --kiosk2-token TOKEN [--timeout-s 90] [--chromium PATH]
// With SCREENSHOTS=1 it writes console-login/offer/two-booths/disposition.png and kiosk-feedback.png (1280×900) into SCREENSHOT_DIR
// (default ../../docs/screenshots).
//
// On success prints one JSON line {"ok":true,…} and exits 0; on failure prints the reason and every
// page's logs on standard error and exits 1.
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, kioskScreen, login, openPage, optionReader, report, shot, sleep, waitFor,
} from './harness.mjs';


function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    kiosk2Token: flag('kiosk2-token', 'KIOSK2_TOKEN'),
    timeoutS: Number(flag('timeout-s', 'CONSOLE_TIMEOUT_S', '90')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    screenshots: process.env.SCREENSHOTS === '1',
    shotDir: process.env.SCREENSHOT_DIR ?? new URL('../../docs/screenshots/', import.meta.url).pathname,
  };
  const missing = ['base', 'username', 'password', 'kioskToken', 'kiosk2Token'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`console.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  return o;
}


/** The console's tile of `kioskId`, once it is in `state`. */
const tileOf = (op, o, kioskId, callState) => waitFor(op, o, `has no ${callState} tile for ${kioskId}`,
  ([k, s]) => window.__probe.tiles().find((t) => t.kioskId === k && t.state === s), [kioskId, callState]);

/** A kiosk page that calls; resolves once the console shows its offer. */
async function kioskCalls(browser, o, op, name, token, kioskId) {
  const kiosk = await openPage(browser, o, name, `${o.base}/kiosk/#token=${encodeURIComponent(token)}`);
  await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
  await kiosk.page.click('#call');
  await waitFor(op, o, `showed no offer from ${kioskId}`,
    (k) => window.__probe.offers().some((x) => x.kioskId === k) && document.querySelector('.offer'), kioskId);
  return kiosk;
}

async function main() {
  const o = options();
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: FLAGS, timeout: o.timeoutS * 1000 });
  const sides = [];
  const result = { ok: false, frames: {} };
  try {
    // 1. Login: axe-core on the form, then log in; the token goes to sessionStorage.
    const op = await openPage(browser, o, 'console', `${o.base}/console/`, { width: 1280, height: 900 });
    sides.push(op);
    await waitFor(op, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    const loginAxe = await axe(op);
    await op.page.fill('#username', o.username);
    await op.page.fill('#password', o.password);
    await shot(op, o, 'console-login');
    await op.page.click('#login-submit');
    await waitFor(op, o, 'did not open the console', () => document.body.dataset.screen === 'console' && document.body.dataset.connection === 'open');
    const firstToken = await op.page.evaluate(() => sessionStorage.getItem('sportello.console.token'));
    if (!firstToken) throw new Failure('the token was not stored');
    if (!(await op.page.evaluate(() => sessionStorage.getItem('sportello.console.token.refresh')))) throw new Failure('the refresh token was not stored');

    // 2. Available.
    await op.page.click('[data-presence="available"]');
    await waitFor(op, o, 'did not become available', () => JSON.parse(document.body.dataset.operator).state === 'available');

    // 3. Kiosk 1 calls; the console rings; the A key accepts.
    const kiosk1 = await kioskCalls(browser, o, op, 'kiosk 1', o.kioskToken, 'municipio');
    sides.push(kiosk1);
    const ringing = await op.page.evaluate(() => ({
      ring: document.getElementById('offers').classList.contains('ringing'),
      countdown: document.querySelector('.offer .countdown')?.textContent,
      beeps: Number(document.body.dataset.beeps),
    }));
    if (!ringing.ring || !/\d+ s/.test(ringing.countdown ?? '')) throw new Failure(`the offer does not ring: ${JSON.stringify(ringing)}`);
    result.ringing = ringing;
    await shot(op, o, 'console-offer');
    const offerAxe = await axe(op);
    await op.page.evaluate(() => document.activeElement?.blur());
    await op.page.keyboard.press('a');
    let booth1 = await tileOf(op, o, 'municipio', 'connected');
    result.acceptedByKey = true;
    await kioskScreen(kiosk1, o, 'in_call');

    // 4. Kiosk 2 calls; accepted with the button.
    const kiosk2 = await kioskCalls(browser, o, op, 'kiosk 2', o.kiosk2Token, 'centro-torri');
    sides.push(kiosk2);
    result.offersSeen = await op.page.evaluate(() => Number(document.body.dataset.offered));
    await op.page.click('.offer .offer-accept');
    let booth2 = await tileOf(op, o, 'centro-torri', 'connected');
    await kioskScreen(kiosk2, o, 'in_call');
    if (booth1.slot === booth2.slot) throw new Failure(`both calls in one booth: ${JSON.stringify([booth1, booth2])}`);

    // 5. Both tiles decode their kiosk's video.
    for (const [key, tile] of [['booth1', booth1], ['booth2', booth2]]) {
      result.frames[key] = await waitFor(op, o, `${key} decoded no video`,
        async (id) => { const n = await window.__probe.framesDecoded(document.querySelector(`.tile[data-call-id="${id}"] video.remote`)); return n > 10 && n; }, tile.callId);
    }
    // …and each kiosk decodes the operator's video.
    result.kioskFrames = {};
    for (const [key, page] of [['kiosk1', kiosk1], ['kiosk2', kiosk2]]) {
      result.kioskFrames[key] = await waitFor(page, o, `${key} decoded no video from the console`,
        async () => { const n = await window.__probe.framesDecoded(); return n > 10 && n; });
    }
    await shot(op, o, 'console-two-booths');

    // 6. Hold booth 1 from the keyboard: the kiosk shows its hold screen; resume.
    await op.page.keyboard.press(String(booth1.slot));
    await op.page.keyboard.press('h');
    await tileOf(op, o, 'municipio', 'on_hold');
    await kioskScreen(kiosk1, o, 'hold');
    result.kiosk1Held = true;
    await op.page.keyboard.press('h');
    await tileOf(op, o, 'municipio', 'connected');
    await kioskScreen(kiosk1, o, 'in_call');

    // 7. The console reloads: the token is still in sessionStorage, state.sync restores both tiles
    //    and their video comes back.
    await op.page.reload();
    await waitFor(op, o, 'did not reopen the console', () => document.body.dataset.screen === 'console' && document.body.dataset.connection === 'open');
    booth1 = await tileOf(op, o, 'municipio', 'connected');
    booth2 = await tileOf(op, o, 'centro-torri', 'connected');
    for (const [key, tile] of [['booth1', booth1], ['booth2', booth2]]) {
      await waitFor(op, o, `${key} decoded no video after the reload`,
        async (id) => (await window.__probe.framesDecoded(document.querySelector(`.tile[data-call-id="${id}"] video.remote`))) > 10, tile.callId);
    }
    result.restoredAfterReload = true;
    // The access tokens last a minute in this run: the page has refreshed its token by now, and
    // the call went on through it.
    await waitFor(op, o, 'never refreshed its token', () => Number(document.body.dataset.tokenRefreshes ?? 0) >= 1);
    result.tokenRefreshed = (await op.page.evaluate(() => sessionStorage.getItem('sportello.console.token'))) !== firstToken;

    // 8. End booth 2: the kiosk shows its end screen and asks for a rating, which the citizen
    // gives (4, "soddisfatto"). The booth's tile asks for the disposition: its buttons carry the
    // labels as accessible names and keys 1–5; key 2 ("informazioni") closes the wrap-up.
    await op.page.keyboard.press(String(booth2.slot));
    await op.page.keyboard.press('e');
    await tileOf(op, o, 'centro-torri', 'wrapup');
    await waitFor(kiosk2, o, 'did not show the end screen', () => JSON.parse(document.body.dataset.screens).includes('ended'));
    result.kiosk2Ended = true;
    await waitFor(kiosk2, o, 'did not ask for a rating', () => document.body.dataset.feedback === 'asking'
      && document.querySelectorAll('#faces .face').length === 5);
    result.kioskFaces = await kiosk2.page.evaluate(() => [...document.querySelectorAll('#faces .face')].map((b) => b.innerText.replace(/\s+/g, ' ').trim()));
    await shot(kiosk2, o, 'kiosk-feedback');
    await kiosk2.page.click('#faces .face[data-rating="4"]');
    await waitFor(kiosk2, o, 'did not send the rating', () => document.body.dataset.feedback === 'sent' && document.body.dataset.rating === '4');
    result.kioskRated = 4;
    await waitFor(kiosk2, o, 'did not return to the welcome screen after the rating', () => document.body.dataset.screen === 'welcome');
    result.kioskBackToWelcome = true;
    const slot2 = booth2.slot;
    await waitFor(op, o, 'did not ask for a disposition', (slot) => {
      const box = document.querySelector(`#tile-${slot} .dispositions`);
      return box && !box.hidden && box.querySelectorAll('button.disposition').length === 5;
    }, slot2);
    result.dispositions = await op.page.evaluate((slot) => [...document.querySelectorAll(`#tile-${slot} button.disposition`)]
      .map((b) => ({ code: b.dataset.code, keys: b.getAttribute('aria-keyshortcuts'), name: b.innerText.replace(/\s+/g, ' ').trim() })), slot2);
    await op.page.fill(`#notes-${slot2}`, 'orari dello sportello');
    await shot(op, o, 'console-disposition');
    await op.page.evaluate(() => document.activeElement?.blur());
    await op.page.keyboard.press('2');
    await waitFor(op, o, 'kept booth 2 after wrap-up', (slot) => window.__probe.tiles()[slot - 1].state === 'free', booth2.slot);

    // 9. axe-core on the console with a call in progress.
    const consoleAxe = await axe(op);
    result.axe = {
      serious: loginAxe.serious + offerAxe.serious + consoleAxe.serious,
      violations: [...loginAxe.violations, ...offerAxe.violations, ...consoleAxe.violations],
    };
    if (result.axe.serious > 0) throw new Failure(`axe-core: ${JSON.stringify(result.axe.violations)}`);

    // 10. Clean up: end booth 1 with its button; its citizen skips the rating.
    await op.page.click(`#tile-${booth1.slot} .act-end`);
    await kioskScreen(kiosk1, o, 'ended');
    await waitFor(kiosk1, o, 'did not ask kiosk 1 for a rating', () => document.body.dataset.feedback === 'asking');
    await kiosk1.page.click('#feedback-skip');
    await waitFor(kiosk1, o, 'skipping did not go back to the welcome screen', () => document.body.dataset.screen === 'welcome' && document.body.dataset.feedback === 'skipped');
    result.kioskSkipped = true;
    result.tiles = await op.page.evaluate(() => window.__probe.tiles());
    // 11. Log out: the login is revoked on the server, not only forgotten by the page.
    const lastToken = await op.page.evaluate(() => sessionStorage.getItem('sportello.console.token'));
    await op.page.click('#logout');
    await waitFor(op, o, 'did not show the login form after logout', () => document.body.dataset.screen === 'login');
    const session = (token) => fetch(`${o.base}/api/v1/session`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    for (let i = 0; i < 50 && (await session(lastToken)) !== 401; i += 1) await new Promise((r) => setTimeout(r, 100));
    result.logoutRevoked = (await session(lastToken)) === 401 && (await session(firstToken)) === 401;
    result.storageCleared = await op.page.evaluate(() => Object.keys(sessionStorage).filter((k) => k.startsWith('sportello.console.token')).length === 0);
    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`console.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`console.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});

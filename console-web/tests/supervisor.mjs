// End-to-end check of the supervisor's wallboard /supervisor/ in real headless Chromium (fake
// camera): the supervisor logs in and sees the snapshots; the operator logs in on /console/ but
// stays paused; a kiosk (/kiosk/) calls, so the board shows 1 waiting on anagrafe; the operator
// goes available and accepts with the A key; the board shows the operator with load 1, the call
// connected and nobody waiting; the supervisor monitors the call and both monitor videos (kiosk and
// operator) decode; monitoring stops; the supervisor forces the operator to paused with a reason
// (the board and the console show it); the console ends the call. axe-core checks the login form
// and the board (serious or critical violations fail).
//
// Usage:
//   node supervisor.mjs --base http://127.0.0.1:PORT --supervisor USER --supervisor-password PASS
//                       --username OPERATOR --password PASS --kiosk-token TOKEN
//                       [--timeout-s 90] [--chromium PATH]
// With SCREENSHOTS=1 it writes supervisor-waiting/monitoring.png (1280×1000) into SCREENSHOT_DIR.
//
// On success prints one JSON line {"ok":true,…} and exits 0; on failure prints the reason and every
// page's logs on standard error and exits 1.
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, kioskScreen, openPage, optionReader, report, shot, sleep, waitFor,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    supervisor: flag('supervisor', 'SUPERVISOR_USERNAME'),
    supervisorPassword: flag('supervisor-password', 'SUPERVISOR_PASSWORD'),
    username: flag('username', 'OPERATOR_USERNAME'),
    password: flag('password', 'OPERATOR_PASSWORD'),
    kioskToken: flag('kiosk-token', 'KIOSK_TOKEN'),
    timeoutS: Number(flag('timeout-s', 'SUPERVISOR_TIMEOUT_S', '90')),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    screenshots: process.env.SCREENSHOTS === '1',
    shotDir: process.env.SCREENSHOT_DIR ?? new URL('../../docs/screenshots/', import.meta.url).pathname,
  };
  const missing = ['base', 'supervisor', 'supervisorPassword', 'username', 'password', 'kioskToken'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`supervisor.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  o.base = o.base.replace(/\/$/, '');
  return o;
}

/** Polls the wallboard's last snapshot until `fn(snapshot, arg)` is truthy (checked in Node). */
async function board(sup, o, what, fn, arg) {
  const deadline = Date.now() + o.timeoutS * 1000;
  for (;;) {
    const snap = await sup.page.evaluate(() => (document.body.dataset.snapshot ? JSON.parse(document.body.dataset.snapshot) : null)).catch(() => null);
    const v = snap && fn(snap, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Failure(`timeout: the wallboard ${what}: ${JSON.stringify(snap)}`);
    await sleep(200);
  }
}

/** Logs in on a page with a #username/#password/#login-submit form. */
async function formLogin(side, user, pass) {
  await side.page.fill('#username', user);
  await side.page.fill('#password', pass);
  await side.page.click('#login-submit');
}

async function main() {
  const o = options();
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args: FLAGS, timeout: o.timeoutS * 1000 });
  const sides = [];
  const result = { ok: false };
  try {
    // 1. The supervisor logs in; snapshots arrive.
    const sup = await openPage(browser, o, 'supervisor', `${o.base}/supervisor/`, { width: 1280, height: 1000 });
    sides.push(sup);
    await waitFor(sup, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    const loginAxe = await axe(sup);
    await formLogin(sup, o.supervisor, o.supervisorPassword);
    await waitFor(sup, o, 'received no snapshot', () => document.body.dataset.screen === 'board' && Number(document.body.dataset.snapshots) > 0);

    // 2. The operator logs in on the console (paused: "login").
    const op = await openPage(browser, o, 'console', `${o.base}/console/`, { width: 1280, height: 900 });
    sides.push(op);
    await waitFor(op, o, 'did not show the login form', () => document.body.dataset.ready === 'true' && document.body.dataset.screen === 'login');
    await formLogin(op, o.username, o.password);
    await waitFor(op, o, 'did not open the console', () => document.body.dataset.screen === 'console' && document.body.dataset.connection === 'open');
    await board(sup, o, 'does not show the operator', (s, id) => s.operators.some((x) => x.id === id), o.username);

    // 3. The kiosk calls: the board shows 1 waiting on anagrafe.
    const kiosk = await openPage(browser, o, 'kiosk', `${o.base}/kiosk/#token=${encodeURIComponent(o.kioskToken)}`);
    sides.push(kiosk);
    await waitFor(kiosk, o, 'did not connect', () => document.body.dataset.connection === 'open');
    await kiosk.page.click('#call');
    await kioskScreen(kiosk, o, 'waiting');
    await board(sup, o, 'does not show 1 waiting on anagrafe',
      (s) => s.services.find((x) => x.service === 'anagrafe')?.waiting === 1);
    result.waitingShown = await waitFor(sup, o, 'does not render 1 waiting',
      () => document.querySelector('[data-service="anagrafe"] .fig-waiting dd')?.textContent === '1');
    await shot(sup, o, 'supervisor-waiting');
    const waitingAxe = await axe(sup);

    // 4. The operator goes available and accepts with the A key.
    await op.page.click('[data-presence="available"]');
    await waitFor(op, o, 'showed no offer', () => document.querySelector('.offer'));
    await op.page.evaluate(() => document.activeElement?.blur());
    await op.page.keyboard.press('a');
    const tile = await waitFor(op, o, 'has no connected tile',
      () => window.__probe.tiles().find((x) => x.kioskId === 'municipio' && x.state === 'connected'));
    await kioskScreen(kiosk, o, 'in_call');
    const connected = await board(sup, o, 'does not show the call connected with load 1 and nobody waiting',
      (s, id) => {
        const m = s.operators.find((x) => x.id === id);
        return m && m.load === 1 && m.calls.some((c) => c.state === 'connected')
          && s.services.find((x) => x.service === 'anagrafe')?.waiting === 0;
      }, o.username);
    result.connectedShown = Boolean(connected);

    // 5. Monitor the call: both monitor videos decode.
    await sup.page.click(`[data-operator="${o.username}"] [data-call="${tile.callId}"] .monitor-start`);
    const frames = await waitFor(sup, o, 'monitor videos decoded no frames', async () => {
      const s = {
        kioskFramesDecoded: await window.__probe.framesDecoded(document.getElementById('monitor-kiosk')),
        operatorFramesDecoded: await window.__probe.framesDecoded(document.getElementById('monitor-operator')),
      };
      return s.kioskFramesDecoded > 10 && s.operatorFramesDecoded > 10 && s;
    });
    result.monitor = frames;
    result.monitorMuted = await sup.page.evaluate(() => document.getElementById('monitor-kiosk').muted && document.getElementById('monitor-operator').muted);
    await shot(sup, o, 'supervisor-monitoring');
    const monitorAxe = await axe(sup);

    // 6. Stop monitoring.
    await sup.page.click('#monitor-stop');
    await waitFor(sup, o, 'did not stop monitoring', () => document.body.dataset.monitor === undefined && document.getElementById('monitor').hidden);
    result.monitorStopped = true;

    // 7. Force the operator to paused with a reason.
    const row = `[data-operator="${o.username}"]`;
    await sup.page.selectOption(`${row} .force-state`, 'paused');
    await sup.page.fill(`${row} .force-reason`, 'riunione');
    await sup.page.click(`${row} .force-apply`);
    await board(sup, o, 'does not show the operator paused',
      (s, id) => { const m = s.operators.find((x) => x.id === id); return m?.state === 'paused' && m.reason === 'riunione'; }, o.username);
    await waitFor(sup, o, 'does not render the pause', (id) => /riunione/.test(document.querySelector(`[data-operator="${id}"] .op-state`)?.textContent ?? ''), o.username);
    await waitFor(op, o, 'console not paused', () => JSON.parse(document.body.dataset.operator).state === 'paused');
    result.forcedPaused = true;

    // 8. The console ends the call: the kiosk shows its end screen, the board the wrap-up.
    await op.page.click(`#tile-${tile.slot} .act-end`);
    await kioskScreen(kiosk, o, 'ended');
    await board(sup, o, 'still shows the call connected',
      (s, id) => { const m = s.operators.find((x) => x.id === id); return m && m.load === 0; }, o.username);
    result.ended = true;

    result.axe = {
      serious: loginAxe.serious + waitingAxe.serious + monitorAxe.serious,
      violations: [...loginAxe.violations, ...waitingAxe.violations, ...monitorAxe.violations],
    };
    if (result.axe.serious > 0) throw new Failure(`axe-core: ${JSON.stringify(result.axe.violations)}`);
    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`supervisor.mjs: FAILED: ${e.message}`);
    for (const s of sides) console.error(await report(s));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`supervisor.mjs: FAILED: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  process.exit(1);
});

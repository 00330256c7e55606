// What the browser test scripts share: Chromium's flags, option parsing, login, pages with their
// console, polling, screenshots, failure reports, axe-core, and the error type for an expected
// failure (a timeout, a page error) as opposed to a bug in the script.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Chromium flags that work on these machines: headless, fake camera and microphone. */
export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** A failure the script reports (exit 1 with the pages' logs), not a crash. */
export class Failure extends Error {}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads `--name value` from the command line, else the environment variable, else the fallback.
 * @returns {(name: string, env: string, fallback?: string) => string | undefined}
 */
export function optionReader(args = process.argv.slice(2)) {
  return (name, env, fallback) => {
    const i = args.indexOf(`--${name}`);
    if (i >= 0 && i + 1 < args.length) return args[i + 1];
    return process.env[env] ?? fallback;
  };
}

/** Logs an operator in over HTTP; returns the login token. */
export async function login(base, username, password) {
  const r = await fetch(`${base}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Failure(`login of ${username} failed: HTTP ${r.status} ${JSON.stringify(body)}`);
  return body.token;
}

/** A page in its own browser context with camera and microphone allowed, recording its console. */
export async function openPage(browser, o, name, url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(['camera', 'microphone'], { origin: o.base });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  await page.goto(url);
  return { name, page, consoleLines };
}

/** Polls `fn` in the page until it returns something truthy. */
export async function waitFor(side, o, what, fn, arg, timeoutMs = o.timeoutS * 1000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await side.page.evaluate(fn, arg).catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Failure(`timeout: ${side.name} ${what}`);
    await sleep(100);
  }
}

/** Waits until a kiosk page shows `screen`. */
export const kioskScreen = (kiosk, o, screen) => waitFor(kiosk, o, `did not show the ${screen} screen`,
  (s) => window.kioskTest?.screen === s, screen);

/** With `o.screenshots`, saves the page as `o.shotDir/<file>.png` once transitions have settled. */
export async function shot(side, o, file) {
  if (!o.screenshots) return;
  mkdirSync(o.shotDir, { recursive: true });
  await sleep(300);
  await side.page.screenshot({ path: path.join(o.shotDir, `${file}.png`) });
}

/** A page's own log (from its test hook) and its browser console, for a failure report. */
export async function report(side) {
  const out = [`--- ${side.name} ---`];
  try {
    const log = await side.page.evaluate(
      () => (window.consoleTest ?? window.kioskTest ?? window.mediaTest ?? window.supervisorTest)?.log ?? []);
    out.push('log:', ...log.map((l) => `  ${l}`));
  } catch (e) {
    out.push(`(page not readable: ${e.message})`);
  }
  out.push('console:', ...side.consoleLines.map((l) => `  ${l}`));
  return out.join('\n');
}

/** axe-core on the current page: the serious and critical violations. */
export async function axe(side) {
  await side.page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
  const results = await side.page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  return {
    serious: bad.length,
    violations: results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    })),
  };
}

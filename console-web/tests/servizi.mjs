// The citizens' portal /servizi/ in real headless Chromium, signing in through a real OpenID
// provider (oidc-provider.mjs, started by the Rust test with testkit::oidc):
//
// 1. /servizi/ signed out: the sign-in link(s) and the catalogue; axe-core.
// 1b. "Annulla / Cancel" on the provider's login page → the server's page says the sign-in was
//     cancelled; axe-core.
// 2. Sign in: the link → the provider's login page → `login` typed and sent → back on /servizi/
//    signed in, with the citizen's fiscal code and family shown.
// 3. A residenza for oneself with a marca da bollo → issued, and its PDF downloaded.
// 4. The same marca again → the 409 message ("già stata usata").
// 5. A residenza for a family member (chosen in "Per chi") with another marca → issued, PDF.
// 6. One for a stranger (typed as "another person") → the 403 message.
// 6b. With --budget 4 (the server's requests_per_hour): a fifth request → the 429 message.
// 7. The list of one's certificates holds both; axe-core on the signed-in page with a result shown.
// 8. A phone screen, 360 px wide: nothing wider than the screen; axe-core again.
// 9. English: the language switch changes the texts.
// 10. "Esci / Sign out" → signed out again.
// 11. With --outsider LOGIN: one whose fiscal code is not in the registry signs in and is told so
//     plainly, without the request form; axe-core.
// No CSP violation may occur.
//
// Usage: node servizi.mjs --base URL --login NAME --fiscal-code FC --family FC --stranger FC
//                         --marca ID --marca2 ID --out-dir DIR [--outsider LOGIN] [--budget 4]
//                         [--chromium PATH] [--timeout-s 60]
// Screenshots (servizi-*.png) with SCREENSHOTS=1 into SCREENSHOT_DIR (default ../../docs/screenshots).
// Prints one JSON line: {"ok":true,"own":{…},"family":{…},"conflict":{…},"forbidden":{…},"axe":{…},…}
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  FLAGS, Failure, assertNoCsp, axe, newContext, optionReader, report, shot, waitFor, watch,
} from './harness.mjs';

function options() {
  const flag = optionReader();
  const o = {
    base: flag('base', 'SPORTELLO_BASE'),
    login: flag('login', 'OIDC_LOGIN'),
    fiscalCode: flag('fiscal-code', 'FISCAL_CODE'),
    family: flag('family', 'FAMILY_FC'),
    stranger: flag('stranger', 'STRANGER_FC'),
    marca: flag('marca', 'MARCA'),
    marca2: flag('marca2', 'MARCA2'),
    outDir: flag('out-dir', 'OUT_DIR'),
    outsider: flag('outsider', 'OUTSIDER_LOGIN'),
    budget: flag('budget', 'WEB_BUDGET'),
    chromium: flag('chromium', 'CHROMIUM', '/usr/bin/chromium'),
    timeoutS: Number(flag('timeout-s', 'SERVIZI_TIMEOUT_S', '60')),
    screenshots: process.env.SCREENSHOTS === '1',
    shotDir: process.env.SCREENSHOT_DIR ?? new URL('../../docs/screenshots/', import.meta.url).pathname,
  };
  const missing = ['base', 'login', 'fiscalCode', 'family', 'stranger', 'marca', 'marca2', 'outDir'].filter((k) => !o[k]);
  if (missing.length) {
    console.error(`servizi.mjs: missing options: ${missing.join(', ')}`);
    process.exit(2);
  }
  return o;
}

const state = (side, o, wanted) => waitFor(side, o, `did not reach the state ${wanted}`,
  (w) => document.body.dataset.state === w, wanted);

/** Yesterday in Rome (YYYY-MM-DD): a marca's issue date that no time zone puts in the future. */
const yesterday = () => new Date(Date.now() - 86400e3).toLocaleDateString('sv-SE', { timeZone: 'Europe/Rome' });

/**
 * Fills and sends the request form; waits for its outcome (`data-result` changes from `before`).
 * @returns {Promise<{result: string, text: string, message: string, href: string | null}>}
 */
async function request(side, o, { kind, subject, other, marca }) {
  const page = side.page;
  await page.evaluate(() => { delete document.body.dataset.result; });
  await page.selectOption('#kind', kind);
  await page.selectOption('#subject', subject);
  if (other !== undefined) await page.fill('#other-fc', other);
  await page.check('#usage-bollo');
  await page.fill('#marca-id', marca);
  await page.fill('#marca-date', yesterday());
  await page.check('#declaration');
  await page.click('#submit');
  await waitFor(side, o, `gave no outcome for ${kind} ${subject}`, () => document.body.dataset.result);
  return page.evaluate(() => {
    const box = document.getElementById('request-result');
    return {
      result: document.body.dataset.result,
      text: box.textContent,
      message: document.getElementById('error-message')?.textContent ?? '',
      href: document.getElementById('download')?.getAttribute('href') ?? null,
      documentId: box.dataset.documentId ?? null,
      role: box.getAttribute('role'),
    };
  });
}

/** Clicks the result's download link and saves the PDF as `outDir/name`; returns its path. */
async function download(side, o, name) {
  const [dl] = await Promise.all([side.page.waitForEvent('download'), side.page.click('#download')]);
  const file = path.join(o.outDir, name);
  await dl.saveAs(file);
  return file;
}

async function main() {
  const o = options();
  const browser = await chromium.launch({ executablePath: o.chromium, args: FLAGS });
  const result = { ok: false };
  let side = null;
  try {
    const context = await newContext(browser, o, { width: 1280, height: 900 });
    context.setDefaultTimeout(o.timeoutS * 1000);
    side = watch('servizi', await context.newPage());
    const page = side.page;
    page.on('response', (r) => {
      if (r.status() >= 400) side.consoleLines.push(`[http] ${r.status()} ${r.request().method()} ${r.url()}`);
    });

    // 1. Signed out.
    await page.goto(`${o.base}/servizi/`);
    await state(side, o, 'signed-out');
    const links = await page.$$eval('#login-links a', (as) => as.map((a) => ({ href: a.getAttribute('href'), text: a.textContent })));
    if (!links.length || !links.every((l) => l.href.startsWith('/servizi/login'))) throw new Failure(`sign-in links: ${JSON.stringify(links)}`);
    const offered = await page.$$eval('#catalogue .kind', (ks) => ks.map((k) => k.dataset.kind));
    if (!offered.includes('residenza') || (await page.$$('#catalogue .kind button')).length) {
      throw new Failure(`the catalogue signed out (shown, without request buttons): ${JSON.stringify(offered)}`);
    }
    result.signedOut = { links, kinds: offered.length, axe: await axe(side) };
    if (result.signedOut.axe.serious) throw new Failure(`axe (signed out): ${JSON.stringify(result.signedOut.axe.violations)}`);
    await shot(side, o, 'servizi-signed-out');

    // 1b. Cancel at the provider: the server's page says so, in plain words.
    await page.click('#login-links a');
    await page.waitForSelector('#cancel-submit');
    await Promise.all([page.waitForURL(`${o.base}/servizi/**`), page.click('#cancel-submit')]);
    const cancelled = await page.evaluate(() => ({
      failure: document.querySelector('main')?.dataset.failure ?? null,
      title: document.querySelector('h1')?.textContent ?? '',
    }));
    if (!/annullato/i.test(cancelled.title)) throw new Failure(`cancelled sign-in: ${JSON.stringify(cancelled)}`);
    result.cancelled = { ...cancelled, axe: await axe(side) };
    if (result.cancelled.axe.serious) throw new Failure(`axe (cancelled): ${JSON.stringify(result.cancelled.axe.violations)}`);
    await shot(side, o, 'servizi-cancelled');
    await page.goto(`${o.base}/servizi/`);
    await state(side, o, 'signed-out');

    // 2. Sign in through the provider's login page.
    await page.click('#login-links a');
    await page.waitForSelector('#login-name');
    result.provider = new URL(page.url()).origin;
    await page.fill('#login-name', o.login);
    await Promise.all([page.waitForURL(`${o.base}/servizi/**`), page.click('#login-submit')]);
    await state(side, o, 'signed-in');
    const me = await page.evaluate(() => ({
      url: location.pathname,
      fiscalCode: document.getElementById('me-fiscal-code').textContent,
      family: [...document.querySelectorAll('#family li')].map((li) => li.textContent),
      inRegistry: document.body.dataset.inRegistry,
    }));
    if (me.url !== '/servizi/') throw new Failure(`signed in, but on ${me.url}`);
    if (me.fiscalCode !== o.fiscalCode) throw new Failure(`the page shows ${me.fiscalCode}, not ${o.fiscalCode}`);
    if (!me.family.some((f) => f.includes(o.family))) throw new Failure(`the family ${JSON.stringify(me.family)} lacks ${o.family}`);
    result.me = me;

    // 2b. "Richiedi questo certificato" in the catalogue chooses that kind in the form.
    await page.click('.kind[data-kind="stato_famiglia"] summary');
    await page.click('.kind[data-kind="stato_famiglia"] button');
    const chosen = await page.evaluate(() => ({ kind: document.getElementById('kind').value, focused: document.activeElement?.id }));
    if (chosen.kind !== 'stato_famiglia' || chosen.focused !== 'kind') throw new Failure(`the catalogue's request button: ${JSON.stringify(chosen)}`);

    // 3. A residenza for oneself with a marca.
    const own = await request(side, o, { kind: 'residenza', subject: '', marca: o.marca });
    if (own.result !== 'issued' || !own.href) throw new Failure(`own residenza: ${JSON.stringify(own)}`);
    result.own = { ...own, pdf: await download(side, o, 'own.pdf') };

    // 4. The same marca again: 409.
    const again = await request(side, o, { kind: 'residenza', subject: '', marca: o.marca });
    if (again.result !== 'conflict' || !/già stata usata/.test(again.message) || again.role !== 'alert') {
      throw new Failure(`the same marca again: ${JSON.stringify(again)}`);
    }
    result.conflict = again;
    await shot(side, o, 'servizi-marca-used');

    // 5. For a family member.
    const fam = await request(side, o, { kind: 'residenza', subject: o.family, marca: o.marca2 });
    if (fam.result !== 'issued' || !fam.href) throw new Failure(`family member's residenza: ${JSON.stringify(fam)}`);
    result.family = { ...fam, pdf: await download(side, o, 'family.pdf') };

    // 6. For a stranger: 403.
    const stranger = await request(side, o, { kind: 'residenza', subject: '__other__', other: o.stranger, marca: '99999999999999' });
    if (stranger.result !== 'forbidden' || !/solo per te/.test(stranger.message)) throw new Failure(`stranger: ${JSON.stringify(stranger)}`);
    result.forbidden = stranger;

    // 6b. With --budget N (the server's [web] requests_per_hour), the request after N: 429, and
    //     the page says in how many minutes to try again.
    if (o.budget && Number(o.budget) === 4) {
      const over = await request(side, o, { kind: 'residenza', subject: '', marca: '99999999999998' });
      if (over.result !== 'rate_limited' || !/Riprova tra \d+ minuti/.test(over.message)) throw new Failure(`over the budget: ${JSON.stringify(over)}`);
      result.rateLimited = over;
    }

    // 7. One's certificates, and axe on the signed-in page.
    await page.reload();
    await state(side, o, 'signed-in');
    const mine = await page.$$eval('#mine .doc', (docs) => docs.map((d) => ({
      text: d.textContent,
      href: d.querySelector('a')?.getAttribute('href') ?? null,
    })));
    for (const href of [own.href, fam.href]) {
      if (!mine.some((m) => m.href === href)) throw new Failure(`${href} is not in the list of one's certificates: ${JSON.stringify(mine)}`);
    }
    result.mine = mine.length;
    result.axe = await axe(side);
    if (result.axe.serious) throw new Failure(`axe (signed in): ${JSON.stringify(result.axe.violations)}`);
    await page.screenshot({ path: path.join(o.outDir, 'signed-in.png'), fullPage: true });
    if (o.screenshots) await page.screenshot({ path: path.join(o.shotDir, 'servizi-signed-in.png'), fullPage: true });

    // 8. A phone screen.
    await page.setViewportSize({ width: 360, height: 740 });
    await page.reload();
    await state(side, o, 'signed-in');
    const phone = await page.evaluate(() => {
      const wide = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > 361 && el.offsetParent !== null)
        .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`);
      return { scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 10) };
    });
    if (phone.scrollWidth > 360 || phone.wide.length) throw new Failure(`wider than a 360 px phone: ${JSON.stringify(phone)}`);
    result.phone = { ...phone, axe: await axe(side) };
    if (result.phone.axe.serious) throw new Failure(`axe (phone): ${JSON.stringify(result.phone.axe.violations)}`);
    await shot(side, o, 'servizi-phone');

    // 9. English.
    await page.click('.lang[data-lang="en"]');
    const english = await page.evaluate(() => ({
      lang: document.documentElement.lang,
      request: document.getElementById('request-title').textContent,
      logout: document.querySelector('#logout button').textContent,
    }));
    if (english.lang !== 'en' || english.request !== 'Request a certificate' || english.logout !== 'Sign out') {
      throw new Failure(`English: ${JSON.stringify(english)}`);
    }
    result.english = english;
    await page.click('.lang[data-lang="it"]');
    await page.setViewportSize({ width: 1280, height: 900 });

    // 10. Sign out.
    await Promise.all([page.waitForURL(`${o.base}/servizi/**`), page.click('#logout button')]);
    await state(side, o, 'signed-out');
    const after = await page.evaluate(() => fetch('/api/v1/web/me').then((r) => r.status));
    if (after !== 401) throw new Failure(`after signing out, /api/v1/web/me answers ${after}`);
    result.signedOutAgain = true;

    // 11. Someone whose fiscal code is not in the registry: told so plainly, no request form.
    if (o.outsider) {
      // The provider remembers Luca (its own session cookie, as a real one would): forget it.
      await context.clearCookies();
      await page.click('#login-links a');
      await page.waitForSelector('#login-name');
      await page.fill('#login-name', o.outsider);
      await Promise.all([page.waitForURL(`${o.base}/servizi/**`), page.click('#login-submit')]);
      await state(side, o, 'signed-in');
      const outsider = await page.evaluate(() => ({
        inRegistry: document.body.dataset.inRegistry,
        notice: document.getElementById('not-in-registry').hidden ? null : document.getElementById('not-in-registry').textContent.trim(),
        form: !document.getElementById('request').hidden,
        links: document.querySelectorAll('#links a').length,
      }));
      if (outsider.inRegistry !== 'false' || !outsider.notice || !/non risulta nell'anagrafe/.test(outsider.notice) || outsider.form) {
        throw new Failure(`not in the registry: ${JSON.stringify(outsider)}`);
      }
      result.outsider = { ...outsider, axe: await axe(side) };
      if (result.outsider.axe.serious) throw new Failure(`axe (not in the registry): ${JSON.stringify(result.outsider.axe.violations)}`);
      await shot(side, o, 'servizi-not-in-registry');
      await Promise.all([page.waitForURL(`${o.base}/servizi/**`), page.click('#logout button')]);
      await state(side, o, 'signed-out');
    }

    result.cspViolations = assertNoCsp();
    result.ok = true;
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`servizi.mjs: FAILED: ${e.message}`);
    if (side) console.error(await report(side));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`servizi.mjs: ${e.stack ?? e}`);
  process.exit(1);
});

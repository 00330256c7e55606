// What the staff pages (operator console, supervisor wallboard) share: the login form, keeping
// the access token fresh with the login's refresh token, and logging out.
//
// Session storage holds, under `tokenKey`, the access token (short: `auth.access_ttl_s`), and
// under `<tokenKey>.refresh` and `<tokenKey>.expires` the refresh token and the access token's
// expiry. A minute before the access token ends, `keepFresh` trades the refresh token for a new
// one, so a shift needs the password once; logging out ends the login on the server.

import { refreshLogin, staffLogin, staffLogout } from './sportello.js';

const timers = new Map();
// Bumped by `endStaffSession`: a refresh answered after the logout must not store its tokens back.
const generations = new Map();

/** Stores a login or refresh answer's tokens under `tokenKey`. */
function remember(tokenKey, body) {
  sessionStorage.setItem(tokenKey, body.token);
  if (body.refresh_token) sessionStorage.setItem(`${tokenKey}.refresh`, body.refresh_token);
  if (body.expires_at) sessionStorage.setItem(`${tokenKey}.expires`, body.expires_at);
}

/**
 * Refreshes the access token under `tokenKey` a minute before it expires (at least 5 s from
 * now), again and again, calling `onToken(newToken)` each time (the page gives it to its
 * connection). Stops when the login is over: the next reconnect then shows the login form.
 * @param {string} tokenKey
 * @param {(token: string) => void} onToken
 */
export function keepFresh(tokenKey, onToken) {
  clearTimeout(timers.get(tokenKey));
  const refresh = sessionStorage.getItem(`${tokenKey}.refresh`);
  const expires = Date.parse(sessionStorage.getItem(`${tokenKey}.expires`) ?? '');
  if (!refresh || Number.isNaN(expires)) return;
  const wait = Math.max(5000, expires - Date.now() - 60000);
  const generation = generations.get(tokenKey);
  timers.set(tokenKey, setTimeout(async () => {
    try {
      const body = await refreshLogin(refresh);
      if (generations.get(tokenKey) !== generation) return;
      remember(tokenKey, body);
      document.body.dataset.tokenRefreshes = String(Number(document.body.dataset.tokenRefreshes ?? 0) + 1);
      onToken(body.token);
      keepFresh(tokenKey, onToken);
    } catch (e) {
      if (e.code === 'unauthorized') return;
      // The server is unreachable for now: try again shortly.
      timers.set(tokenKey, setTimeout(() => keepFresh(tokenKey, onToken), 10000));
    }
  }, wait));
}

/**
 * The stored access token, refreshed first when it has expired or is about to (a page reloaded
 * late in a shift); `null` when there is none or the login is over.
 * @param {string} tokenKey
 */
export async function storedToken(tokenKey) {
  const token = sessionStorage.getItem(tokenKey);
  const refresh = sessionStorage.getItem(`${tokenKey}.refresh`);
  const expires = Date.parse(sessionStorage.getItem(`${tokenKey}.expires`) ?? '');
  if (!token || !refresh || Number.isNaN(expires) || expires - Date.now() > 30000) return token;
  const generation = generations.get(tokenKey);
  try {
    const body = await refreshLogin(refresh);
    if (generations.get(tokenKey) !== generation) return null;
    remember(tokenKey, body);
    return body.token;
  } catch {
    return token;
  }
}

/**
 * Ends the login stored under `tokenKey`: forgets its tokens here and revokes them on the server
 * (a failure there is ignored: the tokens are gone from this page anyway).
 * @param {string} tokenKey
 */
export async function endStaffSession(tokenKey) {
  clearTimeout(timers.get(tokenKey));
  generations.set(tokenKey, (generations.get(tokenKey) ?? 0) + 1);
  const token = sessionStorage.getItem(tokenKey);
  for (const key of [tokenKey, `${tokenKey}.refresh`, `${tokenKey}.expires`]) sessionStorage.removeItem(key);
  if (token) await staffLogout(token).catch(() => {});
}

/**
 * Handles the login form's submit: logs in as `role`, keeps the token in session storage under
 * `tokenKey`, clears the password and calls `onToken(token)`; on failure shows the catalogue key
 * `<prefix>.login.failed`, `notRoleKey` or `<prefix>.login.error` in `#login-error`.
 * @param {SubmitEvent} event
 * @param {{role: string, prefix: string, notRoleKey: string, tokenKey: string,
 *   setText: (el: Element, key: string) => void, note: (text: string) => void,
 *   onToken: (token: string) => Promise<void>}} o
 */
export async function submitStaffLogin(event, o) {
  event.preventDefault();
  const $ = (id) => document.getElementById(id);
  const err = $('login-error');
  err.hidden = true;
  $('login-submit').disabled = true;
  try {
    const body = await staffLogin($('username').value.trim(), $('password').value, o.role).catch((e) => {
      const key = { unauthorized: `${o.prefix}.login.failed`, forbidden: o.notRoleKey }[e.code];
      throw Object.assign(e, { key: key ?? `${o.prefix}.login.error` });
    });
    remember(o.tokenKey, body);
    $('password').value = '';
    await o.onToken(body.token);
  } catch (e) {
    o.note(`login failed: ${e.message}`);
    o.setText(err, e.key ?? `${o.prefix}.login.error`);
    err.hidden = false;
  } finally {
    $('login-submit').disabled = false;
  }
}

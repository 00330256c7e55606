// What the staff pages (operator console, supervisor wallboard) share: the login form.

import { staffLogin } from './sportello.js';

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
    sessionStorage.setItem(o.tokenKey, body.token);
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

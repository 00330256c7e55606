// What the browser test scripts share: Chromium's flags, option parsing, login, and the error type
// for an expected failure (a timeout, a page error) as opposed to a bug in the script.

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

// A real OpenID provider for the tests of the web channel (the npm package `oidc-provider`),
// configured like a SPID/CIE OpenID Connect gateway. testkit starts it (`testkit/src/oidc.rs`);
// it can also be run by hand:
//
//   node console-web/tests/oidc-provider.mjs --port 4444 --issuer http://127.0.0.1:4444 \
//     --client-id sportello --client-secret s3cret \
//     --redirect-uris http://127.0.0.1:8080/servizi/auth/callback --accounts accounts.json
//
// Options (each also an environment variable):
//   --port N               OIDC_PORT            the loopback port (127.0.0.1 only)
//   --issuer URL           OIDC_ISSUER          default http://127.0.0.1:PORT
//   --client-id ID         OIDC_CLIENT_ID       default sportello
//   --client-secret S      OIDC_CLIENT_SECRET   default sportello-test-secret
//   --redirect-uris A,B    OIDC_REDIRECT_URIS   comma-separated, required; one with port 0
//                                               (http://127.0.0.1:0/cb) allows any port of 127.0.0.1
//   --auth-method M        OIDC_AUTH_METHOD     the client's token_endpoint_auth_method:
//                                               client_secret_basic (default) or client_secret_post
//   --accounts FILE        OIDC_ACCOUNTS        JSON: [{"login","fiscal_code","given_name","family_name"}]
//
// The flow (authorization code; PKCE with S256 is required; scopes `openid profile`):
//   GET  /.well-known/openid-configuration   discovery (authorization_endpoint = ISSUER/auth,
//                                            token_endpoint = ISSUER/token, jwks_uri = ISSUER/jwks)
//   GET  /auth?...                           303 to /interaction/UID (the login page)
//   GET  /interaction/UID                    the login page: a plain HTML form, no JavaScript:
//          <form id="login" method="post" action="/interaction/UID/login">
//            <input name="login" id="login-name">  <button id="login-submit">Entra / Sign in</button>
//          <form id="cancel" method="post" action="/interaction/UID/abort">
//            <button id="cancel-submit">Annulla / Cancel</button>
//   POST /interaction/UID/login  login=NAME  303 back to /auth/UID, then 303 to the redirect URI
//                                            with ?code&state&iss. An unknown login gets the form
//                                            again with status 401 and an error message.
//   POST /interaction/UID/abort              ends the flow: 303 to the redirect URI with
//                                            ?error=access_denied&state…
//   POST /token                              the code for tokens (client authentication per
//                                            --auth-method, code_verifier).
// Consent is granted automatically for the test client: there is no consent screen.
//
// The ID token (RS256, the key in /jwks) carries the claims, as a SPID/CIE gateway would:
//   sub (the login), `https://attributes.eid.gov.it/fiscal_number` (`TINIT-<fiscal code>`),
//   given_name, family_name, nonce, and acr: the first of the request's `acr_values`, else
//   `https://www.spid.gov.it/SpidL1`.
//
// The tamper switch, for tests of the relying party's checks:
//   POST /__test/tamper  {"mode":"signature"|"nonce"|"audience"|"issuer"|"expired"|"none"}
//     → 200 {"mode":…}; 400 {"error":…} for anything else.
//   It makes the NEXT token response's id_token bad in that way, once:
//     signature  one byte of the signature flipped;
//     nonce      the nonce changed, re-signed with the provider's own key;
//     audience   aud = "someone-else", re-signed;
//     issuer     iss = "https://not-the-issuer.example", re-signed;
//     expired    exp and iat an hour in the past, re-signed;
//     none       no change (clears a pending mode).
//   GET /__test/tamper → {"mode":…} (the pending mode).
//
// It prints `oidc-provider listening on ISSUER` once it accepts connections.

import crypto from 'node:crypto';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { optionReader } from './harness.mjs';
import Provider from 'oidc-provider';

const FISCAL_NUMBER = 'https://attributes.eid.gov.it/fiscal_number';
const DEFAULT_ACR = 'https://www.spid.gov.it/SpidL1';
const ACR_VALUES = [
  'https://www.spid.gov.it/SpidL1',
  'https://www.spid.gov.it/SpidL2',
  'https://www.spid.gov.it/SpidL3',
];
const TAMPER_MODES = ['signature', 'nonce', 'audience', 'issuer', 'expired', 'none'];

const option = optionReader();
const port = Number(option('port', 'OIDC_PORT'));
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('oidc-provider: --port N (or OIDC_PORT) is required');
  process.exit(2);
}
const issuer = option('issuer', 'OIDC_ISSUER', `http://127.0.0.1:${port}`);
const clientId = option('client-id', 'OIDC_CLIENT_ID', 'sportello');
const clientSecret = option('client-secret', 'OIDC_CLIENT_SECRET', 'sportello-test-secret');
const authMethod = option('auth-method', 'OIDC_AUTH_METHOD', 'client_secret_basic');
const redirectUris = (option('redirect-uris', 'OIDC_REDIRECT_URIS', '') || '')
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
if (redirectUris.length === 0) {
  console.error('oidc-provider: --redirect-uris URL[,URL] (or OIDC_REDIRECT_URIS) is required');
  process.exit(2);
}
const accountsFile = option('accounts', 'OIDC_ACCOUNTS');
/** @type {Map<string, {login: string, fiscal_code: string, given_name: string, family_name: string}>} */
const accounts = new Map();
if (accountsFile) {
  let list;
  try {
    list = JSON.parse(readFileSync(accountsFile, 'utf8'));
  } catch (e) {
    console.error(`oidc-provider: cannot read the accounts file ${accountsFile}: ${e.message}`);
    process.exit(2);
  }
  if (!Array.isArray(list)) {
    console.error('oidc-provider: the accounts file must hold a JSON array');
    process.exit(2);
  }
  for (const a of list) {
    if (!a || typeof a.login !== 'string' || typeof a.fiscal_code !== 'string') {
      console.error(`oidc-provider: an account needs "login" and "fiscal_code": ${JSON.stringify(a)}`);
      process.exit(2);
    }
    accounts.set(a.login, a);
  }
}

// The signing key: one RSA key per run, also used to re-sign tampered tokens.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: authMethod,
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile'],
  claims: {
    openid: ['sub', FISCAL_NUMBER],
    profile: ['given_name', 'family_name'],
  },
  acrValues: ACR_VALUES,
  // The scope's claims go into the ID token too, as SPID/CIE gateways do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const a = accounts.get(id);
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          [FISCAL_NUMBER]: `TINIT-${a.fiscal_code}`,
          given_name: a.given_name,
          family_name: a.family_name,
        };
      },
    };
  },
  // Consent is automatic for the test client: a grant of what it asked for.
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile');
    grant.addOIDCClaims([FISCAL_NUMBER, 'given_name', 'family_name']);
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Errore / Error', `<p>${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
  },
});

// A redirect URI registered with port 0 accepts the same URI on any port of 127.0.0.1: the
// relying party under test binds port 0 and learns its port after it started.
const { redirectUriAllowed } = provider.Client.prototype;
provider.Client.prototype.redirectUriAllowed = function anyLoopbackPort(value) {
  if (redirectUriAllowed.call(this, value)) return true;
  let url;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.hostname !== '127.0.0.1' || url.port === '') return false;
  url.port = '0';
  return redirectUriAllowed.call(this, url.href);
};

// --- The tamper switch -----------------------------------------------------------------------

let tamperMode = 'none';

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const unb64 = (s) => Buffer.from(s, 'base64url');

/** Returns `jwt` spoiled per `mode` (see the header). */
function tamper(jwt, mode) {
  const [h, p, s] = jwt.split('.');
  if (mode === 'signature') {
    const sig = unb64(s);
    sig[Math.floor(sig.length / 2)] ^= 0x01;
    return `${h}.${p}.${b64(sig)}`;
  }
  const payload = JSON.parse(unb64(p).toString('utf8'));
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'nonce') payload.nonce = `tampered-${payload.nonce ?? ''}`;
  else if (mode === 'audience') payload.aud = 'someone-else';
  else if (mode === 'issuer') payload.iss = 'https://not-the-issuer.example';
  else if (mode === 'expired') {
    payload.iat = now - 7200;
    payload.exp = now - 3600;
    if (payload.auth_time) payload.auth_time = now - 7200;
  }
  const input = `${h}.${b64(JSON.stringify(payload))}`;
  return `${input}.${b64(crypto.sign('sha256', Buffer.from(input), privateKey))}`;
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.method !== 'POST' || ctx.path !== '/token' || tamperMode === 'none') return;
  const body = ctx.body;
  if (body && typeof body === 'object' && typeof body.id_token === 'string') {
    const mode = tamperMode;
    tamperMode = 'none';
    ctx.body = { ...body, id_token: tamper(body.id_token, mode) };
    console.log(`oidc-provider: tampered the id_token (${mode})`);
  }
});

// --- The login page ----------------------------------------------------------------------------

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html>
<html lang="it"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title></head>
<body><main><h1>${esc(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid, error) {
  const alert = error ? `<p role="alert" id="login-error">${esc(error)}</p>` : '';
  return page(
    'Provider di identità di prova / Test identity provider',
    `${alert}
<form id="login" method="post" action="/interaction/${esc(uid)}/login">
  <label for="login-name">Nome utente / Username</label>
  <input id="login-name" name="login" autocomplete="username" required>
  <button id="login-submit" type="submit">Entra / Sign in</button>
</form>
<form id="cancel" method="post" action="/interaction/${esc(uid)}/abort">
  <button id="cancel-submit" type="submit">Annulla / Cancel</button>
</form>`,
  );
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 64 * 1024) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'text/html; charset=utf-8', page('Errore / Error', '<p>interaction mismatch</p>'));
    return;
  }
  if (details.prompt.name !== 'login') {
    // Consent is automatic (see loadExistingGrant); anything else just continues.
    await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET' && !action) {
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    return;
  }
  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the user cancelled the sign-in' },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = new URLSearchParams(await readBody(req));
    const login = (form.get('login') ?? '').trim();
    if (!accounts.has(login)) {
      send(res, 401, 'text/html; charset=utf-8', loginPage(uid, `Utente sconosciuto / Unknown user: ${login}`));
      return;
    }
    const requested = String(details.params.acr_values ?? '')
      .split(' ')
      .filter(Boolean);
    const acr = requested[0] ?? DEFAULT_ACR;
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: login, acr, amr: ['pwd'] } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  send(res, 405, 'text/plain', 'method not allowed');
}

const callback = provider.callback();

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', issuer);
  try {
    if (url.pathname === '/__test/tamper') {
      if (req.method === 'GET') {
        send(res, 200, 'application/json', JSON.stringify({ mode: tamperMode }));
        return;
      }
      if (req.method !== 'POST') {
        send(res, 405, 'application/json', JSON.stringify({ error: 'POST or GET' }));
        return;
      }
      let mode;
      try {
        mode = JSON.parse(await readBody(req)).mode;
      } catch {
        mode = undefined;
      }
      if (!TAMPER_MODES.includes(mode)) {
        send(res, 400, 'application/json', JSON.stringify({ error: `mode must be one of ${TAMPER_MODES.join(', ')}` }));
        return;
      }
      tamperMode = mode;
      send(res, 200, 'application/json', JSON.stringify({ mode }));
      return;
    }
    const m = url.pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/);
    if (m) {
      await interaction(req, res, m[1], m[2]);
      return;
    }
    callback(req, res);
  } catch (e) {
    console.error(`oidc-provider: ${req.method} ${url.pathname}: ${e.stack ?? e}`);
    if (!res.headersSent) {
      send(res, 400, 'text/html; charset=utf-8', page('Errore / Error', `<p>${esc(e.message ?? e)}</p>`));
    } else {
      res.end();
    }
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

// Offline verification of a Sportello timbro digitale, with no dependencies:
// Base45 -> zlib (DecompressionStream 'deflate') -> COSE_Sign1 (minimal CBOR) -> ECDSA P-256 (WebCrypto).
// The same algorithm as certificates/src/stamp.rs; keep the two in step.

export const PREFIX = 'IT1:';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';
const CLAIM_CERTIFICATE = -65537;
const MAX_TEXT = 8192;
const MAX_INFLATED = 16384;

export class StampError extends Error {
  constructor(code, it, en) {
    super(`${it} / ${en}`);
    this.code = code;
    this.it = it;
    this.en = en;
  }
}

export function base45Decode(text) {
  const v = [];
  for (const c of text) {
    const i = ALPHABET.indexOf(c);
    if (i < 0) throw new StampError('format', 'carattere non Base45', 'not a Base45 character');
    v.push(i);
  }
  const out = [];
  for (let i = 0; i < v.length; i += 3) {
    const g = v.slice(i, i + 3);
    if (g.length === 3) {
      const n = g[0] + g[1] * 45 + g[2] * 2025;
      if (n > 0xffff) throw new StampError('format', 'Base45 fuori intervallo', 'Base45 out of range');
      out.push(n >> 8, n & 0xff);
    } else if (g.length === 2) {
      const n = g[0] + g[1] * 45;
      if (n > 0xff) throw new StampError('format', 'Base45 fuori intervallo', 'Base45 out of range');
      out.push(n);
    } else {
      throw new StampError('format', 'lunghezza Base45 non valida', 'bad Base45 length');
    }
  }
  return new Uint8Array(out);
}

export async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  const reader = stream.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > MAX_INFLATED) throw new StampError('format', 'contenuto troppo grande', 'payload too large');
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

// Minimal CBOR decoder: integers, byte and text strings, arrays, maps (as Map), tags, simple values.
export function cborDecode(bytes) {
  let pos = 0;
  const need = (n) => {
    if (pos + n > bytes.length) throw new StampError('format', 'CBOR troncato', 'truncated CBOR');
  };
  const arg = (info) => {
    if (info < 24) return info;
    const size = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
    if (!size) throw new StampError('format', 'CBOR non supportato', 'unsupported CBOR');
    need(size);
    let n = 0;
    for (let i = 0; i < size; i++) n = n * 256 + bytes[pos++];
    if (!Number.isSafeInteger(n)) throw new StampError('format', 'intero CBOR troppo grande', 'CBOR integer too large');
    return n;
  };
  const item = (depth) => {
    if (depth > 32) throw new StampError('format', 'CBOR troppo annidato', 'CBOR nested too deep');
    need(1);
    const b = bytes[pos++];
    const major = b >> 5;
    const info = b & 31;
    switch (major) {
      case 0: return arg(info);
      case 1: return -1 - arg(info);
      case 2: { const n = arg(info); need(n); const v = bytes.slice(pos, pos + n); pos += n; return v; }
      case 3: { const n = arg(info); need(n); const v = new TextDecoder('utf-8', { fatal: true }).decode(bytes.slice(pos, pos + n)); pos += n; return v; }
      case 4: { const n = arg(info); if (n > bytes.length) throw new StampError('format', 'CBOR non valido', 'bad CBOR'); const a = []; for (let i = 0; i < n; i++) a.push(item(depth + 1)); return a; }
      case 5: { const n = arg(info); if (n > bytes.length) throw new StampError('format', 'CBOR non valido', 'bad CBOR'); const m = new Map(); for (let i = 0; i < n; i++) { const k = item(depth + 1); m.set(k, item(depth + 1)); } return m; }
      case 6: { const tag = arg(info); return { tag, value: item(depth + 1) }; }
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        throw new StampError('format', 'CBOR non supportato', 'unsupported CBOR');
    }
  };
  const v = item(0);
  if (pos !== bytes.length) throw new StampError('format', 'byte in eccesso', 'trailing bytes');
  return v;
}

function cborHead(major, n) {
  if (n < 24) return [(major << 5) | n];
  if (n < 256) return [(major << 5) | 24, n];
  if (n < 65536) return [(major << 5) | 25, n >> 8, n & 0xff];
  return [(major << 5) | 26, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

// Sig_structure = ["Signature1", protected, external_aad = h'', payload] (RFC 9052 section 4.4).
export function sigStructure(protectedBytes, payload) {
  const ctx = new TextEncoder().encode('Signature1');
  const parts = [
    cborHead(4, 4),
    cborHead(3, ctx.length), ctx,
    cborHead(2, protectedBytes.length), protectedBytes,
    cborHead(2, 0),
    cborHead(2, payload.length), payload,
  ];
  const flat = parts.flatMap((p) => Array.from(p));
  return new Uint8Array(flat);
}

const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (a) => Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

export async function decodeStamp(text) {
  const t = String(text).replace(/[\r\n]/g, '').trim();
  if (t.length > MAX_TEXT) throw new StampError('format', 'testo troppo lungo', 'text too long');
  if (!t.startsWith(PREFIX)) throw new StampError('format', `manca il prefisso ${PREFIX}`, `missing ${PREFIX} prefix`);
  let cose = cborDecode(await inflate(base45Decode(t.slice(PREFIX.length))).catch((e) => {
    throw e instanceof StampError ? e : new StampError('format', 'zlib non valido', 'bad zlib data');
  }));
  if (cose && cose.tag === 18) cose = cose.value;
  if (!Array.isArray(cose) || cose.length !== 4) throw new StampError('format', 'COSE_Sign1 non valido', 'not a COSE_Sign1');
  const [protectedBytes, , payload, signature] = cose;
  if (!(protectedBytes instanceof Uint8Array) || !(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new StampError('format', 'COSE_Sign1 non valido', 'not a COSE_Sign1');
  }
  const header = cborDecode(protectedBytes);
  if (!(header instanceof Map) || header.get(1) !== -7) throw new StampError('format', 'algoritmo diverso da ES256', 'algorithm is not ES256');
  const kid = header.get(4);
  if (!(kid instanceof Uint8Array) || kid.length !== 8) throw new StampError('format', 'kid non valido', 'bad kid');
  const claims = cborDecode(payload);
  if (!(claims instanceof Map) || !(claims.get(CLAIM_CERTIFICATE) instanceof Map)) {
    throw new StampError('format', 'claim non valide', 'bad claims');
  }
  return { protectedBytes, payload, signature, kid, claims };
}

function certificateOf(claims) {
  const c = claims.get(CLAIM_CERTIFICATE);
  const s = c.get('s') instanceof Map ? c.get('s') : new Map();
  const u = c.get('u');
  return {
    version: c.get('v'),
    documentId: c.get('id'),
    kind: c.get('k'),
    fiscalCode: s.get('cf'),
    surname: s.get('sn'),
    givenNames: s.get('gn'),
    birthDate: s.get('bd'),
    birthPlace: s.get('bp'),
    asOf: c.get('ad') ?? null,
    fields: c.get('f') instanceof Map ? Array.from(c.get('f').entries()) : [],
    members: Array.isArray(c.get('m')) ? c.get('m') : [],
    memberCount: c.get('n') ?? 0,
    exemption: u instanceof Map ? u.get('e') : null,
    textSha256: c.get('h') instanceof Uint8Array ? hex(c.get('h')) : '',
    development: c.get('dev') === true,
    reduced: c.get('r') === true,
  };
}

// Verifies a stamp against a trust list at `now` (milliseconds). Throws StampError on any failure.
export async function verifyStamp(text, trustList, now = Date.now()) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) throw new StampError('crypto', 'WebCrypto non disponibile (serve HTTPS)', 'WebCrypto unavailable (needs HTTPS)');
  const d = await decodeStamp(text);
  const signer = (trustList.signers || []).find((s) => same(b64(s.kid), d.kid));
  if (!signer) throw new StampError('untrusted', `firmatario sconosciuto (kid ${hex(d.kid)})`, `unknown signer (kid ${hex(d.kid)})`);
  const key = await subtle.importKey('spki', b64(signer.public_key_spki), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const ok = await subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, d.signature, sigStructure(d.protectedBytes, d.payload));
  if (!ok) throw new StampError('signature', 'firma non valida', 'invalid signature');
  if (d.claims.get(1) !== trustList.issuer) throw new StampError('untrusted', 'emittente diverso', 'different issuer');
  const iat = d.claims.get(6);
  if (typeof iat !== 'number' || iat < signer.not_before || iat > signer.not_after) {
    throw new StampError('signer', 'certificato del firmatario non valido alla data di emissione', 'signer certificate not valid at issue time');
  }
  const exp = d.claims.get(4);
  if (typeof exp === 'number' && now / 1000 > exp) {
    throw new StampError('expired', `certificato scaduto il ${new Date(exp * 1000).toLocaleDateString('it-IT')}`, 'certificate expired');
  }
  return {
    issuer: d.claims.get(1),
    issuerName: trustList.issuer_name,
    issuedAt: iat,
    expiresAt: typeof exp === 'number' ? exp : null,
    signerSubject: signer.subject,
    development: signer.development || certificateOf(d.claims).development,
    certificate: certificateOf(d.claims),
  };
}

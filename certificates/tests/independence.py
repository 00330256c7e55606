"""Independent verification of a Sportello stamp: no code of ours, only cbor2 and cryptography.

Usage: python3 independence.py STAMP_TEXT_FILE TRUST_LIST_JSON
Prints the claims as JSON on success; exits non-zero on any failure.
"""
import base64, hashlib, json, sys, zlib

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

def b45decode(s):
    out = bytearray()
    v = [ALPHABET.index(c) for c in s]
    for i in range(0, len(v), 3):
        g = v[i:i + 3]
        if len(g) == 3:
            n = g[0] + g[1] * 45 + g[2] * 2025
            out += n.to_bytes(2, "big")
        else:
            out.append(g[0] + g[1] * 45)
    return bytes(out)

text = open(sys.argv[1]).read().strip()
trust = json.load(open(sys.argv[2]))
assert text.startswith("IT1:"), "prefix"
cose = cbor2.loads(zlib.decompress(b45decode(text[4:])))
assert isinstance(cose, cbor2.CBORTag) and cose.tag == 18, "COSE_Sign1 tag"
protected_bytes, _unprotected, payload, signature = cose.value
protected = cbor2.loads(protected_bytes)
assert protected[1] == -7, "alg ES256"
kid = protected[4]
signer = next(s for s in trust["signers"] if base64.b64decode(s["kid"]) == kid)
der = base64.b64decode(signer["certificate"])
assert hashlib.sha256(der).digest()[:8] == kid, "kid is the certificate hash"
key = x509.load_der_x509_certificate(der).public_key()
tbs = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
key.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
claims = cbor2.loads(payload)
cert = claims[-65537]
cert["h"] = cert["h"].hex()
print(json.dumps({"iss": claims[1], "iat": claims[6], "exp": claims.get(4), "certificate": cert}, ensure_ascii=False))

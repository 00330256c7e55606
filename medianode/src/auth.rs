//! Authentication of requests between nodes: HMAC-SHA256 over a secret the nodes share.
//!
//! Every request of the internal API carries the header [`HEADER`],
//! `x-sportello-node-auth: t=<unix ms>,sig=<hex>`, where
//!
//! ```text
//! sig = hex(HMAC-SHA256(secret, "<METHOD>\n<PATH>\n<t>\n<hex(SHA-256(body))>"))
//! ```
//!
//! `METHOD` is the upper-case HTTP method, `PATH` the request target's path with its query when it
//! has one (`/internal/v1/offer`), and `t` the sender's clock in Unix milliseconds. The receiver
//! refuses a missing or malformed header, a `t` more than [`MAX_SKEW_MS`] away from its own clock,
//! and a signature that does not match (compared in constant time). A signed request can be
//! replayed within that window; the internal API's requests are idempotent or harmless to repeat
//! (an offer renegotiates, a leave or an end closes what is already closed).
//!
//! The core ([`sign`], [`verify`]) takes `now` and does no I/O. [`Secret`] is the shared key,
//! read from a file that every node of a deployment has (a shared data directory, or a copy).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The request header that carries the timestamp and the signature.
pub const HEADER: &str = "x-sportello-node-auth";

/// How far a request's `t` may be from the receiver's clock, either way, in milliseconds.
pub const MAX_SKEW_MS: u64 = 30_000;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The key the nodes of one deployment share. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the node secret is {0} bytes long; at least 32 are needed")]
    TooShort(usize),
    /// The file could not be read or created.
    #[error("node secret {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

impl Secret {
    /// A secret from its bytes, with surrounding ASCII whitespace trimmed (as a file holds it);
    /// refused when shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Secret, SecretError> {
        let key = bytes.as_ref().trim_ascii();
        if key.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Secret { key: key.to_vec() })
    }

    /// A new random secret: 32 random bytes, hex-encoded (64 bytes of key), as
    /// [`Secret::load_or_create`] writes it.
    pub fn random() -> Secret {
        Secret {
            key: random_text().into_bytes(),
        }
    }

    /// Reads the secret from `path`: the file's content, trimmed, at least 32 bytes.
    pub fn load(path: &Path) -> Result<Secret, SecretError> {
        let bytes = fs::read(path).map_err(|source| SecretError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Secret::new(bytes)
    }

    /// Reads the secret from `path`, creating it first when it does not exist: 32 random bytes,
    /// hex-encoded, in a file of mode 0600. Processes starting at once on one directory all end
    /// up with the same secret: the file is written under a temporary name and hard-linked into
    /// place, which fails when another process got there first.
    pub fn load_or_create(path: &Path) -> Result<Secret, SecretError> {
        let io_error = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = read_or_create(path, || random_text().into_bytes()).map_err(io_error)?;
        Secret::new(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length.
        <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn read_or_create(path: &Path, make: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => return Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        random_text()
    ));
    let bytes = make();
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Another process won; its file is whole because it was linked whole.
            for _ in 0..50 {
                if let Ok(bytes) = fs::read(path) {
                    return Ok(bytes);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            fs::read(path)
        }
        Err(e) => Err(e),
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No [`HEADER`].
    #[error("missing x-sportello-node-auth header")]
    Missing,
    /// The header is not `t=<unix ms>,sig=<64 hex digits>`.
    #[error("malformed x-sportello-node-auth header")]
    Malformed,
    /// `t` is more than [`MAX_SKEW_MS`] from the receiver's clock.
    #[error("request time is more than 30 s from this node's clock")]
    Stale,
    /// The signature does not match.
    #[error("bad request signature")]
    BadSignature,
    /// This exact signed request was already received (a replay).
    #[error("request already received")]
    Replayed,
}

/// The signed requests a node has received within the time window, so each is carried out once:
/// a request captured on the wire and sent again is refused.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// At most this many signatures are remembered; past it the oldest half of the window is dropped.
const MAX_REMEMBERED: usize = 200_000;

impl ReplayGuard {
    /// Records `header` (already verified) as received at `now_ms`; `Replayed` if it was before.
    pub fn check(&self, header: &str, now_ms: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains_key(header) {
            return Err(AuthError::Replayed);
        }
        // Anything older than the window would be refused as stale anyway.
        if seen.len() >= MAX_REMEMBERED || seen.len() % 1024 == 0 {
            let horizon = now_ms.saturating_sub(2 * MAX_SKEW_MS);
            seen.retain(|_, t| *t >= horizon);
            if seen.len() >= MAX_REMEMBERED {
                let horizon = now_ms.saturating_sub(MAX_SKEW_MS);
                seen.retain(|_, t| *t >= horizon);
            }
        }
        seen.insert(header.to_owned(), now_ms);
        Ok(())
    }
}

/// The milliseconds since the Unix epoch now (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mac_for(secret: &Secret, method: &str, path: &str, body: &[u8], t: u64) -> HmacSha256 {
    let mut mac = secret.mac();
    let body_hash = hex::encode(Sha256::digest(body));
    mac.update(format!("{method}\n{path}\n{t}\n{body_hash}").as_bytes());
    mac
}

/// The value of [`HEADER`] for a request sent at `now_ms`.
pub fn sign(secret: &Secret, method: &str, path: &str, body: &[u8], now_ms: u64) -> String {
    let sig = mac_for(secret, method, path, body, now_ms)
        .finalize()
        .into_bytes();
    format!("t={now_ms},sig={}", hex::encode(sig))
}

/// Reads `t=<digits>,sig=<64 hex digits>`, in that order, nothing else.
fn parse_header(header: &str) -> Result<(u64, [u8; 32]), AuthError> {
    let (t, sig) = header.split_once(',').ok_or(AuthError::Malformed)?;
    let t = t.strip_prefix("t=").ok_or(AuthError::Malformed)?;
    let sig = sig.strip_prefix("sig=").ok_or(AuthError::Malformed)?;
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Malformed);
    }
    let t: u64 = t.parse().map_err(|_| AuthError::Malformed)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(sig, &mut bytes).map_err(|_| AuthError::Malformed)?;
    Ok((t, bytes))
}

/// Checks a request received at `now_ms`: `header` is the value of [`HEADER`] (`None` when the
/// request has none), `method` the upper-case method, `path` the path (and query) it was sent to,
/// `body` its whole body. The time is checked before the signature, and the signature in constant
/// time.
pub fn verify(
    secret: &Secret,
    method: &str,
    path: &str,
    body: &[u8],
    header: Option<&str>,
    now_ms: u64,
) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (t, sig) = parse_header(header)?;
    check_time(t, now_ms)?;
    mac_for(secret, method, path, body, t)
        .verify_slice(&sig)
        .map_err(|_| AuthError::BadSignature)
}

/// The checks that need no body: the header is well formed and its time is close to `now_ms`.
/// The server runs them before it reads the body.
pub fn precheck(header: Option<&str>, now_ms: u64) -> Result<(), AuthError> {
    let (t, _) = parse_header(header.ok_or(AuthError::Missing)?)?;
    check_time(t, now_ms)
}

fn check_time(t: u64, now_ms: u64) -> Result<(), AuthError> {
    if t.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(AuthError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn signed(method: &str, path: &str, body: &[u8], t: u64) -> String {
        sign(&secret(), method, path, body, t)
    }

    #[test]
    fn a_signed_request_verifies() {
        let h = signed("POST", "/internal/v1/offer", b"{\"a\":1}", NOW);
        assert!(h.starts_with(&format!("t={NOW},sig=")));
        assert_eq!(h.len(), format!("t={NOW},sig=").len() + 64);
        assert_eq!(
            verify(
                &secret(),
                "POST",
                "/internal/v1/offer",
                b"{\"a\":1}",
                Some(&h),
                NOW
            ),
            Ok(())
        );
        // An empty body too (the GET requests).
        let h = signed("GET", "/internal/v1/load", b"", NOW);
        assert_eq!(
            verify(&secret(), "GET", "/internal/v1/load", b"", Some(&h), NOW),
            Ok(())
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_documented_string() {
        let body = b"{}";
        let body_hash = hex::encode(Sha256::digest(body));
        let text = format!("POST\n/internal/v1/end\n{NOW}\n{body_hash}");
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"0123456789abcdef0123456789abcdef")
            .expect("any key length");
        mac.update(text.as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            signed("POST", "/internal/v1/end", body, NOW),
            format!("t={NOW},sig={expected}")
        );
    }

    #[test]
    fn tampering_with_any_part_fails() {
        let body = b"{\"call_id\":\"c1\"}";
        let h = signed("POST", "/internal/v1/end", body, NOW);
        let check = |method: &str, path: &str, body: &[u8], header: &str| {
            verify(&secret(), method, path, body, Some(header), NOW)
        };
        assert_eq!(check("POST", "/internal/v1/end", body, &h), Ok(()));
        assert_eq!(
            check("GET", "/internal/v1/end", body, &h),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("POST", "/internal/v1/leave", body, &h),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("POST", "/internal/v1/end?x=1", body, &h),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("POST", "/internal/v1/end", b"{\"call_id\":\"c2\"}", &h),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("POST", "/internal/v1/end", b"", &h),
            Err(AuthError::BadSignature)
        );
        // Another time with the same signature.
        let moved = h.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            check("POST", "/internal/v1/end", body, &moved),
            Err(AuthError::BadSignature)
        );
        // One flipped digit of the signature.
        let mut flipped = h.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            check("POST", "/internal/v1/end", body, &flipped),
            Err(AuthError::BadSignature)
        );
        // Another secret.
        let other = Secret::new("another secret that is long enough!!").unwrap();
        let h2 = sign(&other, "POST", "/internal/v1/end", body, NOW);
        assert_eq!(
            check("POST", "/internal/v1/end", body, &h2),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn the_time_may_be_30_seconds_off_and_no_more() {
        let body = b"x";
        for t in [NOW - MAX_SKEW_MS, NOW, NOW + MAX_SKEW_MS] {
            let h = signed("POST", "/p", body, t);
            assert_eq!(
                verify(&secret(), "POST", "/p", body, Some(&h), NOW),
                Ok(()),
                "{t}"
            );
        }
        for t in [NOW - MAX_SKEW_MS - 1, NOW + MAX_SKEW_MS + 1, 0, u64::MAX] {
            let h = signed("POST", "/p", body, t);
            assert_eq!(
                verify(&secret(), "POST", "/p", body, Some(&h), NOW),
                Err(AuthError::Stale),
                "{t}"
            );
            assert_eq!(precheck(Some(&h), NOW), Err(AuthError::Stale));
        }
        let h = signed("POST", "/p", body, NOW);
        assert_eq!(precheck(Some(&h), NOW), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = signed("POST", "/p", b"", NOW);
        let sig = good.split_once(",sig=").unwrap().1.to_owned();
        assert_eq!(
            verify(&secret(), "POST", "/p", b"", None, NOW),
            Err(AuthError::Missing)
        );
        for bad in [
            String::new(),
            "garbage".into(),
            format!("t={NOW}"),
            format!("sig={sig}"),
            format!("sig={sig},t={NOW}"),
            format!("t={NOW}, sig={sig}"),
            format!("t={NOW},sig={sig},x=1"),
            format!("t=-{NOW},sig={sig}"),
            format!("t=+{NOW},sig={sig}"),
            format!("t=,sig={sig}"),
            format!("t=99999999999999999999,sig={sig}"),
            format!("t={NOW},sig={}", &sig[..62]),
            format!("t={NOW},sig={sig}00"),
            format!("t={NOW},sig={}zz", &sig[..62]),
            format!("T={NOW},sig={sig}"),
        ] {
            assert_eq!(
                verify(&secret(), "POST", "/p", b"", Some(&bad), NOW),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
        // Upper-case hex is still hex.
        let upper = format!("t={NOW},sig={}", sig.to_uppercase());
        assert_eq!(
            verify(&secret(), "POST", "/p", b"", Some(&upper), NOW),
            Ok(())
        );
    }

    #[test]
    fn short_secrets_are_refused_and_whitespace_is_trimmed() {
        assert!(matches!(
            Secret::new("too short"),
            Err(SecretError::TooShort(9))
        ));
        assert!(matches!(
            Secret::new(format!("  {}\n", "a".repeat(31))),
            Err(SecretError::TooShort(31))
        ));
        assert_eq!(
            Secret::new(format!("{}\n", "a".repeat(32))).unwrap(),
            Secret::new("a".repeat(32)).unwrap()
        );
        assert_eq!(format!("{:?}", secret()), "Secret(..)");
        assert_ne!(Secret::random(), Secret::random());
    }

    #[test]
    fn load_or_create_creates_a_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.secret");
        assert!(matches!(Secret::load(&path), Err(SecretError::Io { .. })));
        let created = Secret::load_or_create(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(Secret::load_or_create(&path).unwrap(), created);
        assert_eq!(Secret::load(&path).unwrap(), created);
        // Nothing but the secret is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // A file that is there but too short is refused, not replaced.
        let short = dir.path().join("short.secret");
        fs::write(&short, "abc\n").unwrap();
        assert!(matches!(
            Secret::load_or_create(&short),
            Err(SecretError::TooShort(3))
        ));
        assert_eq!(fs::read_to_string(&short).unwrap(), "abc\n");
    }

    #[test]
    fn concurrent_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.secret");
        let secrets: Vec<Secret> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Secret::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! `[turn]`: the STUN/TURN servers the clients use when direct media is blocked, and the shared
//! secret from which the server derives time-limited TURN credentials (coturn's `use-auth-secret`,
//! `docs/turn.md`).

use std::path::{Path, PathBuf};

use protocol::IceTransportPolicy;
use serde::{Deserialize, Serialize};

/// The default lifetime of TURN credentials: a day.
pub const DEFAULT_TTL_S: u64 = 86_400;
/// The shortest credential lifetime accepted (credentials are refreshed every half of it).
pub const MIN_TTL_S: u64 = 10;
/// The longest credential lifetime accepted: a week.
pub const MAX_TTL_S: u64 = 7 * 86_400;

/// `[turn]`: ICE servers for the clients, with TURN credentials signed with a shared secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    /// `turn:`, `turns:` or `stun:` URLs, e.g. `turn:turn.comune.it:3478?transport=udp` and
    /// `turns:turn.comune.it:443?transport=tcp`. They share one set of credentials.
    pub urls: Vec<String>,
    /// The file holding the shared secret: the same text as coturn's `static-auth-secret`
    /// (surrounding whitespace and the final newline are ignored).
    pub secret_file: Option<PathBuf>,
    /// How long a set of credentials stays valid, in seconds. Sessions get fresh ones every half.
    pub ttl_s: u64,
    /// `all` (default) or `relay`: the ICE transport policy clients must use. `relay` is for
    /// sites where direct media is known to be blocked.
    pub policy: IceTransportPolicy,
}

impl Default for TurnSettings {
    fn default() -> Self {
        TurnSettings {
            urls: Vec::new(),
            secret_file: None,
            ttl_s: DEFAULT_TTL_S,
            policy: IceTransportPolicy::All,
        }
    }
}

/// The shared secret, read from `secret_file`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Vec<u8>);

impl TurnSecret {
    /// The secret's bytes, as HMAC key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A secret from its text (trimmed); `None` when it is empty.
    pub fn from_text(text: &str) -> Option<TurnSecret> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| TurnSecret(trimmed.as_bytes().to_vec()))
    }
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(…)")
    }
}

/// Reads and checks the secret file: a clear error when it is missing, unreadable, not text or empty.
pub fn read_secret(path: &Path) -> Result<TurnSecret, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("turn.secret_file: cannot read {}: {e}", path.display()))?;
    parse_secret(path, &bytes)
}

/// Checks the bytes of the secret file at `path` (the async driver reads them itself).
pub fn parse_secret(path: &Path, bytes: &[u8]) -> Result<TurnSecret, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("turn.secret_file: {} is not UTF-8 text", path.display()))?;
    TurnSecret::from_text(text)
        .ok_or_else(|| format!("turn.secret_file: {} is empty", path.display()))
}

impl TurnSettings {
    /// Every problem of this section (empty when valid). Reads the secret file.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.urls.is_empty() {
            problems.push(
                "turn.urls: list at least one turn:, turns: or stun: URL (or remove [turn])".into(),
            );
        }
        for url in &self.urls {
            if let Err(e) = check_url(url) {
                problems.push(format!("turn.urls: {url:?} {e}"));
            }
        }
        if !self.urls.iter().any(|u| u.starts_with("turn")) && !self.urls.is_empty() {
            problems.push("turn.urls: list at least one turn: or turns: URL".into());
        }
        match &self.secret_file {
            None => problems.push(
                "turn.secret_file: required (the file with coturn's static-auth-secret)".into(),
            ),
            Some(path) => {
                if let Err(e) = read_secret(path) {
                    problems.push(e);
                }
            }
        }
        if !(MIN_TTL_S..=MAX_TTL_S).contains(&self.ttl_s) {
            problems.push(format!(
                "turn.ttl_s: {} must be between {MIN_TTL_S} and {MAX_TTL_S}",
                self.ttl_s
            ));
        }
        problems
    }
}

/// Checks one ICE server URL (RFC 7064/7065): scheme, host, optional port and `transport`.
fn check_url(url: &str) -> Result<(), String> {
    let rest = ["turns:", "turn:", "stun:"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or("must start with turn:, turns: or stun:")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.starts_with("//") || authority.contains('@') || authority.contains('/') {
        return Err("must be scheme:host[:port][?transport=udp|tcp] (RFC 7065)".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("has an IPv6 address without its closing ']'")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has a bad port {port:?}"));
        }
    }
    if let Some(query) = query {
        if url.starts_with("stun") {
            return Err("a stun: URL takes no ?transport".into());
        }
        match query {
            "transport=udp" | "transport=tcp" => {}
            _ => return Err("takes only ?transport=udp or ?transport=tcp".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("turn.secret");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn urls_are_checked() {
        for good in [
            "turn:turn.comune.it:3478?transport=udp",
            "turns:turn.comune.it:443?transport=tcp",
            "turn:127.0.0.1",
            "stun:stun.comune.it:3478",
            "turn:[2001:db8::1]:3478?transport=tcp",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://turn.comune.it",
            "turn:",
            "turn:host:0",
            "turn:host:99999",
            "turn:host:3478?transport=sctp",
            "turn://host:3478",
            "turn:user@host",
            "stun:host?transport=udp",
            "stuns:host",
            "turn:ho st",
            "turn:[2001:db8::1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_or_empty_secret_is_a_problem() {
        let (_dir, path) = with_secret("  s3cret\n");
        let good = TurnSettings {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret_file: Some(path.clone()),
            ..TurnSettings::default()
        };
        assert_eq!(good.problems(), Vec::<String>::new());
        assert_eq!(read_secret(&path).unwrap().as_bytes(), b"s3cret");

        let (_empty_dir, empty) = with_secret(" \n");
        let problems = TurnSettings {
            secret_file: Some(empty),
            ..good.clone()
        }
        .problems();
        assert!(
            problems.iter().any(|p| p.contains("is empty")),
            "{problems:?}"
        );

        let problems = TurnSettings {
            secret_file: Some(PathBuf::from("/nonexistent/turn.secret")),
            ..good.clone()
        }
        .problems();
        assert!(
            problems.iter().any(|p| p.contains("cannot read")),
            "{problems:?}"
        );

        let problems = TurnSettings {
            secret_file: None,
            ttl_s: 1,
            urls: vec!["stun:host".into()],
            ..good
        }
        .problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(format!("{:?}", read_secret(&path).unwrap()).contains('…'));
    }
}

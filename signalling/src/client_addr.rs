//! The client's address, behind trusted reverse proxies.
//!
//! Without `[limits] trusted_proxies` the client is the TCP peer, as it always was. When the peer
//! is inside one of the trusted ranges (nginx, an Ingress controller), the client is read from
//! `X-Forwarded-For`: the list is walked from the right (the entry the nearest proxy appended)
//! to the left, trusted proxies are skipped, and the first untrusted address is the client. Only
//! the entries walked must parse: whatever a client put left of the real address is never read.
//! A malformed entry on the walk makes the whole header ignored (the peer is kept, and the reason
//! is logged at `debug`). When every entry is a trusted proxy, the leftmost one is the client.
//!
//! - [`AddressRange`] is one configured range (`10.0.0.0/8`, `fd00::/8`, or a bare address).
//! - [`resolve`] is the walk, a pure function.
//! - [`resolve_layer`] is the middleware that puts a [`ClientAddr`] into every request of a
//!   router served with `ConnectInfo<SocketAddr>`; the per-address WebSocket cap, the login
//!   throttles and the request logs read it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::AppState;

/// The header proxies append the address they received a request from to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// At most this many `X-Forwarded-For` entries are walked: a longer chain of trusted proxies is
/// not a real deployment, and the walk stays bounded whatever a client sends.
const MAX_HOPS: usize = 32;

/// A range of addresses in the configuration: a CIDR range (`10.0.0.0/8`, `2001:db8::/32`) or a
/// single address (`192.0.2.9`, counted as `/32` or `/128`). IPv4-mapped IPv6 addresses are
/// compared as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange(IpNet);

impl AddressRange {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The length of the prefix (0 for a range that holds every address of its family).
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

impl From<IpAddr> for AddressRange {
    fn from(ip: IpAddr) -> Self {
        AddressRange(IpNet::from(ip.to_canonical()))
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| {
                format!("{s:?} is not an address range (expected e.g. 10.0.0.0/8 or fd00::/8)")
            })?;
            // An IPv4-mapped range compares as IPv4, like the addresses it is checked against.
            let net = match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                        .map_err(|e| format!("{s:?}: {e}"))?,
                    None => net,
                },
                _ => net,
            };
            Ok(AddressRange(net.trunc()))
        } else {
            let ip: IpAddr = s.parse().map_err(|_| {
                format!(
                    "{s:?} is not an address or a range (expected e.g. 192.0.2.9 or 10.0.0.0/8)"
                )
            })?;
            Ok(ip.into())
        }
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpNet::V4(n) if n.prefix_len() == 32 => n.addr().fmt(f),
            IpNet::V6(n) if n.prefix_len() == 128 => n.addr().fmt(f),
            n => n.fmt(f),
        }
    }
}

impl Serialize for AddressRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AddressRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether any of `ranges` holds `ip`.
pub fn in_ranges(ranges: &[AddressRange], ip: IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// Why a forwarded header was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`) or in brackets (`[2001:db8::1]`), as some proxies write them.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The client's address for a request from `peer` that carried the `X-Forwarded-For` header
/// lines `forwarded_for` (in the order received; several lines are one comma-separated list).
///
/// The peer is the client unless it is in `trusted`. From a trusted peer, the list is walked
/// from the right, skipping trusted addresses: the first untrusted one is the client; when all
/// are trusted, the leftmost; with no header (or an empty one), the peer. An entry on the walk
/// that is not an address makes the header ignored: the peer is returned with the reason.
pub fn resolve<'a>(
    peer: IpAddr,
    trusted: &[AddressRange],
    forwarded_for: impl IntoIterator<Item = &'a [u8]>,
) -> (IpAddr, Option<Malformed>) {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !in_ranges(trusted, peer) {
        return (peer, None);
    }
    let mut lines = Vec::new();
    for line in forwarded_for {
        match std::str::from_utf8(line) {
            Ok(text) => lines.push(text),
            Err(_) => {
                return (
                    peer,
                    Some(Malformed("X-Forwarded-For is not text".to_owned())),
                )
            }
        }
    }
    let entries = lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(','))
        .filter(|e| !e.trim().is_empty());
    let mut leftmost = None;
    for (hop, entry) in entries.enumerate() {
        if hop == MAX_HOPS {
            return (
                peer,
                Some(Malformed(format!(
                    "X-Forwarded-For has more than {MAX_HOPS} trusted proxies"
                ))),
            );
        }
        let Some(ip) = parse_entry(entry) else {
            let shown: String = entry.trim().chars().take(64).collect();
            return (
                peer,
                Some(Malformed(format!(
                    "X-Forwarded-For entry {shown:?} is not an address"
                ))),
            );
        };
        if !in_ranges(trusted, ip) {
            return (ip, None);
        }
        leftmost = Some(ip);
    }
    (leftmost.unwrap_or(peer), None)
}

/// The client's address of a request, as [`resolve_layer`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Middleware: puts the request's [`ClientAddr`] (from the peer of `ConnectInfo<SocketAddr>` and
/// `[limits] trusted_proxies`) into its extensions. A request without `ConnectInfo` (a router
/// driven without a socket) gets none.
pub async fn resolve_layer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        let (client, malformed) = resolve(
            peer.ip(),
            &state.config.limits.trusted_proxies,
            request
                .headers()
                .get_all(X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
        );
        if let Some(Malformed(reason)) = malformed {
            tracing::debug!(peer = %peer.ip(), %reason, "X-Forwarded-For ignored");
        }
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ranges(list: &[&str]) -> Vec<AddressRange> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn walk(peer: &str, trusted: &[&str], headers: &[&str]) -> (IpAddr, Option<Malformed>) {
        resolve(
            ip(peer),
            &ranges(trusted),
            headers.iter().map(|h| h.as_bytes()),
        )
    }

    #[test]
    fn ranges_parse_cidr_and_bare_addresses_and_refuse_junk() {
        let r: AddressRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.200.1.2")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        let one: AddressRange = "192.0.2.9".parse().unwrap();
        assert!(one.contains(ip("192.0.2.9")));
        assert!(!one.contains(ip("192.0.2.10")));
        assert_eq!(one.to_string(), "192.0.2.9");
        let v6: AddressRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12:3456::1")));
        assert!(!v6.contains(ip("2001:db8::1")));
        // Host bits are dropped; a mapped range is IPv4.
        assert_eq!(
            "10.1.2.3/8".parse::<AddressRange>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        let mapped: AddressRange = "::ffff:127.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("127.0.0.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "nginx",
            "10.0.0/8",
            "1.2.3.4/x",
            "fd00::/129",
        ] {
            let err = bad.parse::<AddressRange>().unwrap_err();
            assert!(err.contains("expected"), "{bad}: {err}");
        }
    }

    fn load(vars: &[(&str, &str)]) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::load_with_env(
            None,
            &crate::config::FlagOverrides::default(),
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn the_configuration_takes_ranges_and_explains_bad_ones() {
        let config = load(&[
            (
                "SPORTELLO_LIMITS__TRUSTED_PROXIES",
                r#"["127.0.0.1/32", "fd00::/8"]"#,
            ),
            (
                "SPORTELLO_LIMITS__EXEMPT_ADDRESSES",
                r#"["192.0.2.9", "10.20.0.0/16"]"#,
            ),
        ])
        .unwrap();
        assert_eq!(
            config.limits.trusted_proxies,
            ranges(&["127.0.0.1/32", "fd00::/8"])
        );
        assert!(in_ranges(&config.limits.exempt_addresses, ip("10.20.3.4")));
        assert!(in_ranges(&config.limits.exempt_addresses, ip("192.0.2.9")));
        assert!(load(&[]).unwrap().limits.trusted_proxies.is_empty());

        let err = load(&[("SPORTELLO_LIMITS__TRUSTED_PROXIES", r#"["nginx"]"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nginx\" is not an address"), "{err}");
        let err = load(&[("SPORTELLO_LIMITS__EXEMPT_ADDRESSES", r#"["10.0.0.0/40"]"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an address range"), "{err}");
        let err = load(&[("SPORTELLO_LIMITS__TRUSTED_PROXIES", r#"["0.0.0.0/0"]"#)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.trusted_proxies: 0.0.0.0/0"), "{err}");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            walk("203.0.113.7", &[], &["198.51.100.1"]),
            (ip("203.0.113.7"), None)
        );
        assert_eq!(
            walk("203.0.113.7", &["127.0.0.1/32"], &["198.51.100.1"]),
            (ip("203.0.113.7"), None)
        );
        // Not even a malformed header is looked at.
        assert_eq!(
            walk("203.0.113.7", &["127.0.0.1/32"], &["junk"]),
            (ip("203.0.113.7"), None)
        );
    }

    #[test]
    fn a_trusted_peer_gives_the_rightmost_untrusted_entry() {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8"];
        // nginx appended the client.
        assert_eq!(
            walk("127.0.0.1", &trusted, &["198.51.100.1"]),
            (ip("198.51.100.1"), None)
        );
        // A client's own (spoofed) entries left of it are never read, even junk.
        assert_eq!(
            walk("127.0.0.1", &trusted, &["1.1.1.1, junk, 198.51.100.1"]),
            (ip("198.51.100.1"), None)
        );
        // Trusted hops are skipped.
        assert_eq!(
            walk("127.0.0.1", &trusted, &["198.51.100.1, 10.1.1.1,10.2.2.2"]),
            (ip("198.51.100.1"), None)
        );
        // Several header lines are one list, in order.
        assert_eq!(
            walk(
                "127.0.0.1",
                &trusted,
                &["198.51.100.1, 10.1.1.1", "10.2.2.2"]
            ),
            (ip("198.51.100.1"), None)
        );
        assert_eq!(
            walk("127.0.0.1", &trusted, &["10.1.1.1", "198.51.100.2"]),
            (ip("198.51.100.2"), None)
        );
        // Ports, brackets and mapped addresses.
        assert_eq!(
            walk("127.0.0.1", &trusted, &["198.51.100.1:4711"]),
            (ip("198.51.100.1"), None)
        );
        assert_eq!(
            walk("127.0.0.1", &trusted, &["[2001:db8::1]:4711"]),
            (ip("2001:db8::1"), None)
        );
        assert_eq!(
            walk("127.0.0.1", &trusted, &["[2001:db8::2]"]),
            (ip("2001:db8::2"), None)
        );
        assert_eq!(
            walk("127.0.0.1", &trusted, &["2001:db8::3"]),
            (ip("2001:db8::3"), None)
        );
        assert_eq!(
            walk("::ffff:127.0.0.1", &trusted, &["::ffff:198.51.100.1"]),
            (ip("198.51.100.1"), None)
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost_and_no_header_the_peer() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            walk("10.0.0.1", &trusted, &["10.9.9.9, 10.1.1.1"]),
            (ip("10.9.9.9"), None)
        );
        assert_eq!(walk("10.0.0.1", &trusted, &[]), (ip("10.0.0.1"), None));
        assert_eq!(walk("10.0.0.1", &trusted, &[""]), (ip("10.0.0.1"), None));
        assert_eq!(walk("10.0.0.1", &trusted, &[" , "]), (ip("10.0.0.1"), None));
    }

    #[test]
    fn a_malformed_entry_on_the_walk_keeps_the_peer() {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8"];
        for header in [
            "unknown",
            "198.51.100.1, 10.0.0.1 extra",
            "198.51.100.1, 300.1.1.1",
            "_hidden",
            "198.51.100.1;proto=https",
        ] {
            let (client, malformed) = walk("127.0.0.1", &trusted, &[header]);
            assert_eq!(client, ip("127.0.0.1"), "{header}");
            assert!(malformed.is_some(), "{header}");
        }
        let (client, malformed) = resolve(ip("127.0.0.1"), &ranges(&trusted), [&b"\xff\xfe"[..]]);
        assert_eq!(client, ip("127.0.0.1"));
        assert!(malformed.unwrap().0.contains("not text"));
        // A very long chain of trusted hops is refused, not walked.
        let long = vec!["10.0.0.1"; MAX_HOPS + 1].join(",");
        let (client, malformed) = walk("127.0.0.1", &trusted, &[&long]);
        assert_eq!(client, ip("127.0.0.1"));
        assert!(malformed.is_some());
        let fine = "198.51.100.1,".to_owned() + &vec!["10.0.0.1"; MAX_HOPS - 1].join(",");
        assert_eq!(walk("127.0.0.1", &trusted, &[&fine]).0, ip("198.51.100.1"));
    }
}

//! Where a load program may point: loopback, or the project's own test hosts.
//!
//! A load run opens hundreds of sessions and media streams; pointed at a production server it
//! would be an attack. The programs therefore refuse any server whose host is not a loopback
//! address (`127.0.0.0/8`, `::1`, `localhost`), unless the address is private (RFC 1918 or
//! `fc00::/7`, the veth pairs of network namespaces a test made for itself) **and** the caller says
//! so with `--test-hosts`.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};

/// Checks that `url`'s host may be loaded. `test_hosts` allows private addresses too.
pub fn check(url: &str, test_hosts: bool) -> Result<()> {
    let host = host_of(url).with_context(|| format!("cannot read the host of {url:?}"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let ip: IpAddr = host.parse().map_err(|_| {
        anyhow::anyhow!(
            "{url}: a load run targets only loopback or the project's own test hosts by address \
             (a name other than localhost is refused)"
        )
    })?;
    if ip.is_loopback() {
        return Ok(());
    }
    if is_private(ip) {
        if test_hosts {
            return Ok(());
        }
        bail!("{url}: {ip} is not loopback; add --test-hosts if it is one of the project's own test hosts (a network namespace this run made)");
    }
    bail!("{url}: {ip} is neither loopback nor a private test address; a load run refuses it")
}

/// The host of a `scheme://host[:port]/…` URL, without IPv6 brackets.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    let host = authority.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_localhost_pass() {
        for url in [
            "http://127.0.0.1:8080",
            "ws://127.0.0.2:1/api/v1/ws",
            "https://localhost:9",
            "http://[::1]:80/x",
            "127.0.0.1:7",
        ] {
            check(url, false).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn private_needs_test_hosts_and_public_never_passes() {
        assert!(check("http://10.200.0.2:8080", false).is_err());
        check("http://10.200.0.2:8080", true).unwrap();
        check("http://[fd00::2]:8080", true).unwrap();
        for url in [
            "http://8.8.8.8",
            "https://comune.example.it",
            "http://[2001:db8::1]:80",
            "http://",
        ] {
            assert!(check(url, true).is_err(), "{url}");
        }
    }
}

//! Readiness checks: each one says whether a dependency is usable now, and what it found.
//!
//! A node is ready when every *required* check passes. *Informational* checks are reported in
//! the body and never make the node unready: a signalling node's view of the media pool is one,
//! because every signalling node shares the same pool, so taking one out of a load balancer's
//! rotation when the media nodes are down or full would only make the pages and logins fail too
//! (`docs/cluster.md`, "Readiness").

use serde::Serialize;
use serde_json::{json, Value};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What it found.
    pub detail: String,
}

/// A signalling node's view of the media pool: `with_room` of `nodes` live media nodes take
/// calls. Informational: `ok` says whether a call can be placed now.
pub fn media_pool(nodes: usize, with_room: usize) -> Check {
    Check {
        name: "media",
        ok: with_room > 0,
        detail: format!("{with_room} of {nodes} media nodes take calls"),
    }
}

/// The `/readyz` verdict and body: ready when every check of `required` passes; `informational`
/// checks are listed under `"info"` and do not count. An unready body carries `"reason"`, the
/// failed required checks.
pub fn report(required: &[Check], informational: &[Check]) -> (bool, Value) {
    let ready = required.iter().all(|c| c.ok);
    let mut body = json!({"ready": ready, "checks": required});
    if !informational.is_empty() {
        body["info"] = json!(informational);
    }
    if !ready {
        let reason = required
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ");
        body["reason"] = json!(reason);
    }
    (ready, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, ok: bool) -> Check {
        Check {
            name,
            ok,
            detail: if ok { "fine" } else { "down" }.into(),
        }
    }

    #[test]
    fn only_required_checks_decide() {
        let (ready, body) = report(
            &[check("lifecycle", true), check("store", true)],
            &[media_pool(2, 0)],
        );
        assert!(ready);
        assert_eq!(body["ready"], true);
        assert!(body.get("reason").is_none());
        assert_eq!(body["info"][0]["name"], "media");
        assert_eq!(body["info"][0]["ok"], false);
        assert_eq!(body["info"][0]["detail"], "0 of 2 media nodes take calls");

        let (ready, body) = report(
            &[check("lifecycle", false), check("store", false)],
            &[media_pool(1, 1)],
        );
        assert!(!ready);
        assert_eq!(body["reason"], "lifecycle: down; store: down");
        assert_eq!(body["info"][0]["ok"], true);

        let (ready, body) = report(&[check("media", false)], &[]);
        assert!(!ready);
        assert!(body.get("info").is_none());
        assert_eq!(body["reason"], "media: down");
    }
}

//! What the bots rely on in a demo deployment: a living resident of the embedded demo registry
//! (the server's default registry), and the certificate they issue to that citizen.

use anyhow::{Context, Result};
use protocol::incall::{CertificateIssue, Usage};
use protocol::Request;

/// The fiscal code of a living resident of the embedded demo registry.
pub fn resident() -> Result<String> {
    let registry = certificates::registry::demo::DemoRegistry::embedded()
        .map_err(|e| anyhow::anyhow!("the demo registry: {e}"))?;
    let today = time::OffsetDateTime::now_utc().date();
    registry
        .data()
        .people
        .iter()
        .find(|p| p.death.is_none() && p.residence_on(today).is_some())
        .map(|p| p.fiscal_code.to_string())
        .context("no resident in the demo registry")
}

/// `certificate.issue` of a `residenza` (with bollo) for the citizen identified in `call_id`.
pub fn issue_residenza(call_id: &str) -> Request {
    Request::CertificateIssue(CertificateIssue {
        call_id: call_id.to_owned(),
        kind: "residenza".into(),
        fiscal_code: None,
        as_of: None,
        usage: Usage::Bollo { bollo: true },
        reason: None,
        marca: None,
        parts: vec![],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_registry_has_a_resident() {
        let cf = super::resident().unwrap();
        assert_eq!(cf.len(), 16, "{cf}");
    }
}

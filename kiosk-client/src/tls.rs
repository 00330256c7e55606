//! TLS configuration for `wss://` and `https://`: the Mozilla roots, plus any extra CA certificates
//! the caller trusts (a municipality's internal CA, a test server's self-signed certificate).
//!
//! The configuration names its crypto provider (ring) explicitly, so nothing depends on a
//! process-wide default provider being installed.

use std::sync::Arc;

use tokio_tungstenite::Connector;

use crate::ClientError;

/// Parses the PEM certificates in `pem`; at least one is required.
pub(crate) fn parse_pem_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ClientError> {
    let mut reader = pem;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Config(format!("cannot read the CA certificates: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Config(
            "the CA file holds no PEM certificate".into(),
        ));
    }
    Ok(certs)
}

/// The WebSocket TLS connector: Mozilla roots plus the extra CA certificates in `extra_ca_pem`.
pub(crate) fn connector(extra_ca_pem: Option<&[u8]>) -> Result<Connector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        for cert in parse_pem_certs(pem)? {
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("unusable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// An HTTP client that also trusts the extra CA certificates in `extra_ca_pem`.
pub(crate) fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = extra_ca_pem {
        // Validate the file the same way as for WebSocket, then hand it to reqwest.
        parse_pem_certs(pem)?;
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Config(format!("unusable CA certificate: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_ca_files_are_refused() {
        assert!(matches!(
            parse_pem_certs(b"nothing here"),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(connector(Some(b"")), Err(ClientError::Config(_))));
        assert!(connector(None).is_ok());
    }
}

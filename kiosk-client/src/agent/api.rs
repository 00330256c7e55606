//! The server's HTTP API as the agent uses it, with the device token as bearer: download a print
//! job's PDF, upload a document scan.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::scanner::Scan;
use crate::ClientError;

/// The largest PDF the agent downloads.
pub const MAX_PDF_BYTES: usize = 50 * 1024 * 1024;

/// The server's HTTP API.
#[derive(Clone)]
pub struct ServerApi {
    base: Url,
    token: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for ServerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApi")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ScanCreated {
    scan_id: String,
}

/// A short description of an HTTP error answer: status and the protocol `code`/`message` if any.
async fn describe_failure(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<protocol::ErrorBody>(&body)
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_else(|_| body.chars().take(200).collect());
    format!("HTTP {status} {detail}")
}

impl ServerApi {
    /// The API of the server at `server` (its base URL), with `token`, trusting the extra CA
    /// certificates in `extra_ca_pem` for `https`.
    pub fn new(
        server: &str,
        token: String,
        extra_ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let base = crate::http_base_url(server)?;
        let base = Url::parse(&format!("{base}/"))
            .map_err(|e| ClientError::InvalidUrl(format!("{server:?}: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(pem) = extra_ca_pem {
            crate::tls::parse_pem_certs(pem)?;
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("unusable CA certificate: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(ServerApi {
            base,
            token,
            client,
        })
    }

    /// The URL of a server path such as `/api/v1/documents/d.pdf` (under the base URL's prefix).
    /// An absolute URL is accepted only on the server's own origin, so the token never goes
    /// elsewhere.
    pub fn resolve(&self, path: &str) -> Result<Url, String> {
        if path.starts_with("http://") || path.starts_with("https://") {
            let url = Url::parse(path).map_err(|e| format!("{path:?}: {e}"))?;
            if url.origin() != self.base.origin() {
                return Err(format!("{path:?} is not on the server's origin"));
            }
            return Ok(url);
        }
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| format!("{path:?}: {e}"))
    }

    /// Downloads a print job's PDF (`pdf_url` from `print.job`).
    pub async fn download_pdf(&self, pdf_url: &str) -> Result<Vec<u8>, String> {
        let url = self.resolve(pdf_url)?;
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", describe_failure(response).await));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_PDF_BYTES as u64)
        {
            return Err(format!("GET {url}: the PDF is over {MAX_PDF_BYTES} bytes"));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if bytes.len() > MAX_PDF_BYTES {
            return Err(format!("GET {url}: the PDF is over {MAX_PDF_BYTES} bytes"));
        }
        if !bytes.starts_with(b"%PDF-") {
            return Err(format!("GET {url}: the answer is not a PDF"));
        }
        Ok(bytes.to_vec())
    }

    /// Uploads a scan for `call_id` (`POST /api/v1/calls/{call_id}/scans`); returns its `scan_id`.
    pub async fn upload_scan(&self, call_id: &str, scan: &Scan) -> Result<String, String> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| "the server URL cannot carry a path".to_owned())?
            .pop_if_empty()
            .extend(["api", "v1", "calls", call_id, "scans"]);
        let response = self
            .client
            .post(url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, scan.content_type)
            .body(scan.bytes.clone())
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("POST {url}: {}", describe_failure(response).await));
        }
        let created: ScanCreated = response
            .json()
            .await
            .map_err(|e| format!("POST {url}: unexpected answer: {e}"))?;
        Ok(created.scan_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_base_and_other_origins_are_refused() {
        let api = ServerApi::new("https://h.example/prefix/", "t".into(), None).unwrap();
        assert_eq!(
            api.resolve("/api/v1/documents/d.pdf").unwrap().as_str(),
            "https://h.example/prefix/api/v1/documents/d.pdf"
        );
        assert!(api.resolve("https://h.example/x.pdf").is_ok());
        assert!(api.resolve("https://evil.example/x.pdf").is_err());
        assert!(!format!("{api:?}").contains("\"t\""));
    }
}

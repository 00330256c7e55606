//! The client of a timestamp authority (RFC 3161 over HTTP, section 3.4): it POSTs a DER
//! `TimeStampReq` as `application/timestamp-query` and checks the `application/timestamp-reply`
//! with [`crate::timestamp`].
//!
//! Issuing is synchronous and the server runs it in `spawn_blocking`, so the request is blocking.
//! As in [`crate::registry::http`], it runs on a worker thread that owns a `reqwest` blocking
//! client: that client must never be created, used or dropped inside an async runtime, and a
//! thread of its own makes this client safe to create, call and drop from anywhere (start-up in
//! `spawn_blocking`, the CLI, tests under `#[tokio::test]`). A TSA that does not answer within the
//! timeout, answers an HTTP error or a reply that does not check is a [`CertError::Timestamp`].

use std::sync::mpsc;
use std::time::Duration;

use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::Certificate;

use crate::error::CertError;
use crate::seal::Timestamper;
use crate::timestamp::{Timestamp, TimestampRequest};

type Reply = Result<Vec<u8>, String>;
type Job = (Vec<u8>, mpsc::Sender<Reply>);

/// Largest accepted reply: a token with a certificate chain is a few kilobytes.
const MAX_REPLY: usize = 1024 * 1024;

/// A timestamp authority reached over HTTP.
#[derive(Debug)]
pub struct TsaClient {
    url: String,
    policy: Option<ObjectIdentifier>,
    trust: Option<Vec<Certificate>>,
    jobs: mpsc::Sender<Job>,
}

impl TsaClient {
    /// A client of the TSA at `url` (`http://` or `https://`), asking for `policy` when given,
    /// trusting the TSA certificates that chain to `trust` when given (else any TSA certificate
    /// for time stamping), waiting at most `timeout` for each reply.
    pub fn new(
        url: &str,
        policy: Option<ObjectIdentifier>,
        trust: Option<Vec<Certificate>>,
        timeout: Duration,
    ) -> Result<Self, CertError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CertError::Timestamp(format!(
                "URL della TSA non valido (http:// o https://): {url}"
            )));
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        let target = url.to_owned();
        std::thread::Builder::new()
            .name("tsa-http".into())
            .spawn(move || worker(&target, rx, timeout))
            .map_err(|e| CertError::Timestamp(format!("thread HTTP: {e}")))?;
        Ok(TsaClient {
            url: url.to_owned(),
            policy,
            trust,
            jobs,
        })
    }

    /// The TSA's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the TSA to stamp `imprint` (a SHA-256) and checks its reply.
    pub fn stamp(&self, imprint: &[u8]) -> Result<Timestamp, CertError> {
        // A positive nonce of 63 random bits.
        let nonce = rand::random::<u64>() >> 1;
        let request = TimestampRequest::new(imprint, nonce, self.policy)?;
        let (tx, rx) = mpsc::channel();
        let gone = || CertError::Timestamp("client HTTP della TSA terminato".into());
        self.jobs
            .send((request.der().to_vec(), tx))
            .map_err(|_| gone())?;
        let reply = rx
            .recv()
            .map_err(|_| gone())?
            .map_err(|e| CertError::Timestamp(format!("{}: {e}", self.url)))?;
        request
            .check_reply(&reply, self.trust.as_deref())
            .map_err(|e| match e {
                CertError::Timestamp(m) => CertError::Timestamp(format!("{}: {m}", self.url)),
                other => other,
            })
    }
}

impl Timestamper for TsaClient {
    fn timestamp(&self, imprint: &[u8]) -> Result<Vec<u8>, CertError> {
        self.stamp(imprint).map(|t| t.token)
    }
}

fn worker(url: &str, rx: mpsc::Receiver<Job>, timeout: Duration) {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!(
            "sportello-certificates/",
            env!("CARGO_PKG_VERSION")
        ))
        .build();
    for (body, reply) in rx {
        let result = match &client {
            Err(e) => Err(e.to_string()),
            Ok(client) => post(client, url, body),
        };
        // The caller may have gone away; nothing to do then.
        let _ = reply.send(result);
    }
}

fn post(client: &reqwest::blocking::Client, url: &str, body: Vec<u8>) -> Reply {
    let response = client
        .post(url)
        .header("content-type", "application/timestamp-query")
        .header("accept", "application/timestamp-reply")
        .body(body)
        .send()
        .map_err(|e| {
            if e.is_timeout() {
                "nessuna risposta entro il tempo massimo".to_owned()
            } else if e.is_connect() {
                format!("TSA non raggiungibile ({e})")
            } else {
                e.to_string()
            }
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("stato HTTP {}", status.as_u16()));
    }
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !kind.starts_with("application/timestamp-reply") {
        return Err(format!(
            "risposta di tipo {kind:?} invece di application/timestamp-reply"
        ));
    }
    let bytes = response.bytes().map_err(|e| e.to_string())?;
    if bytes.len() > MAX_REPLY {
        return Err("risposta troppo grande".into());
    }
    Ok(bytes.to_vec())
}

//! The HTTP adapter to an existing front-office registry system.
//!
//! The wire format is documented in `certificates/docs/registry-http.md`: four `GET` endpoints under a
//! configurable base URL returning the JSON of this crate's registry types ([`Comune`], [`PersonSummary`],
//! [`Person`]). All history queries stay in this crate, so the front office only serves records.
//!
//! Requests run on a worker thread that owns a `reqwest` blocking client. The blocking client must never be
//! created, used or dropped inside an async runtime; keeping it on its own thread makes this adapter safe
//! to call from anywhere (the server still calls issuing from `spawn_blocking`, as issuing is CPU work).

use std::sync::mpsc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Comune, Person, PersonSummary, Registry};
use crate::error::CertError;
use crate::fiscal_code::FiscalCode;

type Reply = Result<(u16, Vec<u8>), String>;
type Job = (String, mpsc::Sender<Reply>);

/// A registry reached over HTTP.
#[derive(Debug)]
pub struct HttpRegistry {
    base_url: String,
    jobs: mpsc::Sender<Job>,
}

/// Longest accepted response body; a whole registry listing of a large comune fits well within it.
const MAX_BODY: usize = 64 * 1024 * 1024;

impl HttpRegistry {
    /// Connects lazily to `base_url` (e.g. `https://frontoffice.example/api/anagrafe/v1`) with a per-request
    /// timeout.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, CertError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(CertError::Registry(format!(
                "URL dell'anagrafe non valido: {base_url}"
            )));
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("registry-http".into())
            .spawn(move || worker(rx, timeout))
            .map_err(|e| CertError::Registry(format!("thread HTTP: {e}")))?;
        Ok(HttpRegistry { base_url, jobs })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, CertError> {
        let url = format!("{}{}", self.base_url, path);
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send((url.clone(), tx))
            .map_err(|_| CertError::Registry("client HTTP terminato".into()))?;
        let (status, body) = rx
            .recv()
            .map_err(|_| CertError::Registry("client HTTP terminato".into()))?
            .map_err(|e| CertError::Registry(format!("{url}: {e}")))?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| CertError::InvalidData {
                    path: url,
                    reason: e.to_string(),
                }),
            404 => Ok(None),
            other => Err(CertError::Registry(format!("{url}: stato HTTP {other}"))),
        }
    }
}

fn worker(rx: mpsc::Receiver<Job>, timeout: Duration) {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .user_agent(concat!(
            "sportello-certificates/",
            env!("CARGO_PKG_VERSION")
        ))
        .build();
    for (url, reply) in rx {
        let result = match &client {
            Err(e) => Err(e.to_string()),
            Ok(client) => client
                .get(&url)
                .header("accept", "application/json")
                .send()
                .and_then(|r| {
                    let status = r.status().as_u16();
                    r.bytes().map(|b| (status, b.to_vec()))
                })
                .map_err(|e| e.to_string())
                .and_then(|(s, b)| {
                    if b.len() > MAX_BODY {
                        Err("risposta troppo grande".to_string())
                    } else {
                        Ok((s, b))
                    }
                }),
        };
        // The caller may have gone away; nothing to do then.
        let _ = reply.send(result);
    }
}

/// Percent-encodes a path segment (family ids come from registry data and may hold any character).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Registry for HttpRegistry {
    fn comune(&self) -> Result<Comune, CertError> {
        self.get("/comune")?
            .ok_or_else(|| CertError::Registry("comune non trovato".into()))
    }

    fn list(&self) -> Result<Vec<PersonSummary>, CertError> {
        Ok(self.get("/people")?.unwrap_or_default())
    }

    fn person(&self, fiscal_code: &FiscalCode) -> Result<Person, CertError> {
        let person: Person = self
            .get(&format!("/people/{}", fiscal_code.as_str()))?
            .ok_or_else(|| CertError::PersonNotFound(fiscal_code.to_string()))?;
        if &person.fiscal_code != fiscal_code {
            return Err(CertError::Registry(
                "il sistema ha restituito un'altra persona".into(),
            ));
        }
        Ok(person)
    }

    fn family_members(&self, family_id: &str) -> Result<Vec<Person>, CertError> {
        Ok(self
            .get(&format!("/families/{}/members", segment(family_id)))?
            .unwrap_or_default())
    }
}

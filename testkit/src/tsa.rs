//! A timestamp authority for tests: a small HTTP server on loopback that answers each RFC 3161
//! query (`POST`, `application/timestamp-query`) by running `openssl ts -reply` with a private TSA
//! it creates, so the tokens are OpenSSL's, not ours.
//!
//! [`Tsa::start`] makes, with `openssl`, a P-256 root CA and a TSA certificate it issues with
//! `extendedKeyUsage = critical,timeStamping` (the extension RFC 3161 requires), writes the
//! `[tsa]` section `openssl ts` reads (SHA-256 signer digest, ESS certificate id v2, the TSA's name
//! and certificate in each token), and serves on a free port from a thread. Queries are answered
//! one at a time: `openssl ts -reply` keeps its serial number in a file. [`Tsa::ca_file`] is the
//! root to give as `tsa_ca_file` (or to `openssl ts -verify -CAfile`).
//!
//! [`Behaviour`] makes it misbehave for the client's checks: answer with a token for another
//! query (wrong imprint and nonce), with HTTP 503, or not at all (for the client's timeout). A TSA that is down is a port nobody listens
//! on ([`crate::free_port`]), or a [`Tsa`] after [`Tsa::stop`].
//!
//! Needs `openssl` (the command line tool); a missing one fails the test.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// The policy the test TSA stamps under when the query names none.
pub const DEFAULT_POLICY: &str = "1.3.6.1.4.1.99999.20.1";
/// Another policy the test TSA accepts.
pub const OTHER_POLICY: &str = "1.3.6.1.4.1.99999.20.2";
/// The test TSA certificate's common name.
pub const TSA_NAME: &str = "Sportello test TSA";

/// How the TSA answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// As a TSA should.
    Honest,
    /// With a granted token for another query (another imprint, another nonce).
    AnswersAnotherQuery,
    /// With HTTP 503 and no reply.
    Unavailable,
    /// Not at all: it reads the query and keeps the connection open without a word (until
    /// stopped, at most a minute), for the client's timeout.
    Silent,
}

/// A running test TSA; stopped when dropped.
pub struct Tsa {
    dir: tempfile::TempDir,
    url: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl: install it with `apt-get install -y openssl`")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

const TSA_CNF: &str = "\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = .
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/ca.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.20.1
other_policies = 1.3.6.1.4.1.99999.20.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256

[ tsa_cert ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ca_cert ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

impl Tsa {
    /// Creates the TSA's keys and certificates and starts serving honestly.
    pub fn start() -> anyhow::Result<Tsa> {
        Self::start_with(Behaviour::Honest)
    }

    /// [`Tsa::start`], answering as `behaviour` says.
    pub fn start_with(behaviour: Behaviour) -> anyhow::Result<Tsa> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-tsa-")
            .tempdir()
            .context("temporary TSA folder")?;
        let d = dir.path();
        std::fs::write(d.join("tsa.cnf"), TSA_CNF)?;
        std::fs::write(d.join("tsaserial"), "01\n")?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut root = vec!["req", "-x509"];
        root.extend(ec);
        root.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/C=IT/O=Sportello test/CN=Sportello test TSA root",
            "-config",
            "tsa.cnf",
            "-extensions",
            "ca_cert",
        ]);
        openssl(d, &root)?;
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "tsa.key",
            "-out",
            "tsa.csr",
            "-subj",
            "/C=IT/O=Sportello test/CN=Sportello test TSA",
        ]);
        openssl(d, &csr)?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                "tsa.pem",
                "-extfile",
                "tsa.cnf",
                "-extensions",
                "tsa_cert",
            ],
        )?;
        if behaviour == Behaviour::AnswersAnotherQuery {
            std::fs::write(d.join("other.txt"), "another document")?;
            openssl(
                d,
                &[
                    "ts",
                    "-query",
                    "-data",
                    "other.txt",
                    "-sha256",
                    "-cert",
                    "-out",
                    "other.tsq",
                ],
            )?;
        }

        let listener = TcpListener::bind("127.0.0.1:0").context("TSA listener")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2, path) = (stop.clone(), served.clone(), d.to_owned());
        let thread = std::thread::Builder::new()
            .name("testkit-tsa".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if answer(conn, &path, behaviour, &stop2).is_ok() {
                        served2.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .context("TSA thread")?;
        Ok(Tsa {
            dir,
            url: format!("http://127.0.0.1:{port}/tsa"),
            stop,
            served,
            port,
            thread: Some(thread),
        })
    }

    /// The URL to POST queries to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The root CA certificate (PEM): the `tsa_ca_file` that trusts this TSA.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The TSA's own certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("tsa.pem")
    }

    /// How many queries it answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops serving: the port refuses connections from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tsa {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one HTTP request and answers it.
fn answer(
    conn: TcpStream,
    dir: &Path,
    behaviour: Behaviour,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut kind = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed in the headers");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => kind = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length.min(64 * 1024)];
    reader.read_exact(&mut body)?;
    let mut conn = conn;
    let respond = |conn: &mut TcpStream, status: &str, kind: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())
            .and_then(|_| conn.write_all(body))
            .and_then(|_| conn.flush())
    };
    if !request_line.starts_with("POST ") || kind != "application/timestamp-query" {
        respond(&mut conn, "400 Bad Request", "text/plain", b"not a query")?;
        return Ok(());
    }
    if behaviour == Behaviour::Silent {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("silent");
    }
    if behaviour == Behaviour::Unavailable {
        respond(
            &mut conn,
            "503 Service Unavailable",
            "text/plain",
            b"unavailable",
        )?;
        return Ok(());
    }
    std::fs::write(dir.join("query.tsq"), &body)?;
    let query = match behaviour {
        Behaviour::AnswersAnotherQuery => "other.tsq",
        _ => "query.tsq",
    };
    match openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            query,
            "-out",
            "reply.tsr",
        ],
    ) {
        Ok(_) => {
            let reply = std::fs::read(dir.join("reply.tsr"))?;
            respond(&mut conn, "200 OK", "application/timestamp-reply", &reply)?;
        }
        Err(e) => {
            respond(
                &mut conn,
                "500 Internal Server Error",
                "text/plain",
                e.to_string().as_bytes(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_a_query_that_openssl_verifies() {
        let tsa = Tsa::start().unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("data.txt"), "hello").unwrap();
        openssl(
            d.path(),
            &[
                "ts", "-query", "-data", "data.txt", "-sha256", "-cert", "-out", "q.tsq",
            ],
        )
        .unwrap();
        let query = std::fs::read(d.path().join("q.tsq")).unwrap();
        let reply = reqwest::Client::new()
            .post(tsa.url())
            .header("content-type", "application/timestamp-query")
            .body(query)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        std::fs::write(d.path().join("r.tsr"), reply.bytes().await.unwrap()).unwrap();
        let ca = tsa.ca_file();
        let out = openssl(
            d.path(),
            &[
                "ts",
                "-verify",
                "-in",
                "r.tsr",
                "-queryfile",
                "q.tsq",
                "-CAfile",
                ca.to_str().unwrap(),
            ],
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("OK"));
        assert_eq!(tsa.served(), 1);
    }
}

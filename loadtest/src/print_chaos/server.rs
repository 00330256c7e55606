//! The print chaos run's server side: a `sportello` process of its own (memory store, demo
//! accounts, loopback ports, its log in the work folder), and the call every print job belongs
//! to, set up as a citizen and an operator would (identification by document, one `residenza`
//! issued). Also `--calibrate`: the printer alone, through `lp`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kiosk_client::{HeadlessKiosk, OperatorBot, Policy, Session};
use protocol::incall::{IdentityConfirm, IdentityMethod, IdentityRequest, IdentityScan};
use protocol::{CallRef, Event, PresenceSet, PresenceState, Request};
use serde_json::{json, Value};
use testkit::cups::PdfPrinter;
use testkit::loadavg;

use super::{say, T};
use crate::server::{ws_url, Credentials};

/// The demo operator who answers: skill `anagrafe`, capacity 1 (one call at a time).
pub const OPERATOR: &str = "laura.verdi";
/// The demo kiosk that calls and prints (its screen and its agent share its token).
pub const KIOSK: &str = "municipio";

/// A `sportello` process with a data directory of its own in the work folder, listening on
/// loopback ports; its standard output (the banner) and error (the log) go to `server.log`.
/// Killed when dropped.
pub struct Server {
    child: Child,
    /// The public base URL, `http://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
    /// The demo operator's password.
    pub operator_password: String,
    /// The demo kiosk's device token.
    pub kiosk_token: String,
    log: PathBuf,
}

impl Server {
    /// Writes `work/sportello.toml` (data in `work/data`, demo accounts, loopback ports), starts
    /// `bin --config` on it and waits for the banner's `listening on` line.
    pub fn start(bin: &Path, work: &Path) -> anyhow::Result<Server> {
        let data = work.join("data");
        std::fs::create_dir_all(&data)?;
        let config = work.join("sportello.toml");
        // RUST_LOG, when set, wins over the level (as for the in-process server of old).
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 \n[log]\nlevel = \"info,sfu=warn\"\n\n[demo]\nenabled = true\n\n\
                 [media]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n"
            ),
        )?;
        let log = work.join("server.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let mut server = Server {
            child,
            base: String::new(),
            operator_password: String::new(),
            kiosk_token: String::new(),
            log,
        };
        server.base = server.wait_banner(Duration::from_secs(30))?;
        let credentials = Credentials::read(&data.join("demo-credentials.json"))?;
        server.operator_password = credentials
            .operators
            .into_iter()
            .find(|l| l.username == OPERATOR)
            .map(|l| l.password)
            .with_context(|| format!("no demo operator {OPERATOR}"))?;
        server.kiosk_token = credentials
            .kiosks
            .into_iter()
            .find(|k| k.id == KIOSK)
            .map(|k| k.token)
            .with_context(|| format!("no demo kiosk {KIOSK}"))?;
        Ok(server)
    }

    /// The public URL from the banner's `listening on http://…/` line.
    fn wait_banner(&mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if let Some(url) = log
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("listening on"))
            {
                return Ok(url.trim().trim_end_matches('/').to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sportello exited ({status}) before its banner:\n{}",
                    testkit::agent::tail(&log, 30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "no banner from sportello within {within:?}:\n{}",
                    testkit::agent::tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the first event matching `pred` on `s`.
async fn event(
    s: &mut Session,
    what: &str,
    pred: impl FnMut(&Event) -> bool,
) -> anyhow::Result<Event> {
    s.wait_for(T, pred)
        .await
        .map_err(|e| anyhow::anyhow!("no {what} within {T:?}: {e:?}"))
}

async fn ok(s: &Session, r: Request) -> anyhow::Result<Value> {
    let kind = r.kind();
    s.request(&r)
        .await
        .map_err(|e| anyhow::anyhow!("{kind} refused: {e:?}"))
}

/// The call every print job belongs to: in conversation, the citizen identified by document and
/// one residenza issued.
pub struct Call {
    pub op: OperatorBot,
    pub kiosk: HeadlessKiosk,
    pub call_id: String,
    pub document_id: String,
    pub operator_token: String,
}

/// Logs the operator in, places the kiosk's call, answers it, identifies the citizen by a scanned
/// document (uploaded with the kiosk's token, as the agent would) and issues one residenza.
pub async fn open_call(server: &Server, start: Instant) -> anyhow::Result<Call> {
    let ws = ws_url(&server.base);
    let base = &server.base;
    let operator_token = OperatorBot::login(base, OPERATOR, &server.operator_password)
        .await
        .map_err(|e| anyhow::anyhow!("login of {OPERATOR} refused: {e:?}"))?;
    let mut op = OperatorBot::connect(&ws, &operator_token, Policy::Manual).await?;
    event(op.session(), "state.sync", |e| {
        matches!(e, Event::StateSync(_))
    })
    .await?;
    ok(
        op.session(),
        Request::PresenceSet(PresenceSet {
            state: PresenceState::Available,
            reason: None,
        }),
    )
    .await?;

    let mut kiosk = HeadlessKiosk::connect(&ws, &server.kiosk_token, vec![]).await?;
    let call_id = kiosk.request_call("anagrafe", "it", None).await?;
    let id = call_id.clone();
    event(
        op.session(),
        "call.offered",
        |e| matches!(e, Event::CallOffered(o) if o.call_id == id),
    )
    .await?;
    let call = || CallRef {
        call_id: call_id.clone(),
    };
    ok(op.session(), Request::CallAccept(call())).await?;
    let id = call_id.clone();
    event(
        kiosk.session(),
        "call.assigned",
        |e| matches!(e, Event::CallAssigned(a) if a.call_id == id),
    )
    .await?;
    say(start, format!("call {call_id} answered"));

    // Identification by paper document: the scan is uploaded as the agent would.
    ok(
        op.session(),
        Request::IdentityRequest(IdentityRequest {
            call_id: call_id.clone(),
            method: IdentityMethod::Document,
        }),
    )
    .await?;
    let uploaded = reqwest::Client::new()
        .post(format!("{base}/api/v1/calls/{call_id}/scans"))
        .bearer_auth(&server.kiosk_token)
        .header("content-type", "image/png")
        .body(testkit::images::scan_png())
        .send()
        .await?;
    let status = uploaded.status();
    let body: Value = uploaded.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        bail!("scan upload answered {status}: {body}");
    }
    let scan_id = body["scan_id"]
        .as_str()
        .context("no scan_id in the upload answer")?
        .to_owned();
    ok(
        kiosk.session(),
        Request::IdentityScan(IdentityScan {
            call_id: call_id.clone(),
            scan_id,
        }),
    )
    .await?;
    let id = call_id.clone();
    event(
        op.session(),
        "identity.progress scan_received",
        |e| matches!(e, Event::IdentityProgress(p) if p.call_id == id && p.step == "scan_received"),
    )
    .await?;
    let fiscal_code = crate::demo::resident()?;
    ok(
        op.session(),
        Request::IdentityConfirm(IdentityConfirm {
            call_id: call_id.clone(),
            fiscal_code: fiscal_code.clone(),
            document_type: "carta_identita".into(),
            document_number: "CA12345AB".into(),
        }),
    )
    .await?;
    let id = call_id.clone();
    event(
        op.session(),
        "identity.verified",
        |e| matches!(e, Event::IdentityVerified(v) if v.call_id == id),
    )
    .await?;
    say(
        start,
        format!("citizen {fiscal_code} identified by document"),
    );

    let issued = ok(op.session(), crate::demo::issue_residenza(&call_id)).await?;
    let document_id = issued["document_id"]
        .as_str()
        .context("no document_id")?
        .to_owned();
    say(start, format!("residenza issued: document {document_id}"));
    Ok(Call {
        op,
        kiosk,
        call_id,
        document_id,
        operator_token,
    })
}

/// `--calibrate N`: the printer alone, through `lp`, on a fresh queue. Prints its figures, the
/// last line one JSON object.
pub async fn calibrate(
    server: &Server,
    call: &Call,
    work: &Path,
    n: usize,
    start: Instant,
) -> anyhow::Result<()> {
    let pdf = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/documents/{}.pdf",
            server.base, call.document_id
        ))
        .bearer_auth(&call.operator_token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let file = work.join("certificate.pdf");
    std::fs::write(&file, &pdf)?;
    let printer = PdfPrinter::create()?;
    say(
        start,
        format!(
            "calibration on {} ({} bytes PDF)",
            printer.name(),
            pdf.len()
        ),
    );
    // One job alone: the latency of one print.
    let t0 = Instant::now();
    printer.print(&file, "calibration-single")?;
    printer
        .wait_printed_async(1, Duration::from_secs(120))
        .await?;
    let single = t0.elapsed();
    // N back to back: the throughput.
    let t1 = Instant::now();
    for i in 0..n {
        printer.print(&file, &format!("calibration-{i}"))?;
    }
    let submitted = t1.elapsed();
    printer
        .wait_printed_async(n + 1, Duration::from_secs(60 + 10 * n as u64))
        .await?;
    let all = t1.elapsed();
    let rate = n as f64 / all.as_secs_f64();
    println!(
        "calibration: one job alone {:.0} ms; {n} jobs back to back: submitted in {:.0} ms, \
         all printed in {:.1} s = {rate:.2} jobs/s ({:.0} ms per job); load average {}",
        single.as_secs_f64() * 1000.0,
        submitted.as_secs_f64() * 1000.0,
        all.as_secs_f64(),
        all.as_secs_f64() * 1000.0 / n as f64,
        loadavg()
    );
    println!(
        "{}",
        json!({"calibration": {"jobs": n, "single_ms": single.as_millis() as u64,
            "seconds": all.as_secs_f64(), "jobs_per_s": rate, "pdf_bytes": pdf.len()}})
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

//! The agent binary printing on a real CUPS queue (a private cupsd, PDF printer) for a scripted server: statuses in
//! order, a re-sent job never printed again, a stopped printer reported with its reason, and the
//! crash windows of the print path (the `exit_after_print` fault, and a job `lp` had submitted
//! before a crash) printing exactly once.

mod agent_common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent_common::{minimal_pdf, spawn_agent, write_config, AgentProcess, FakeServer, TestPrinter};
use kiosk_client::agent::cups::Cups;
use kiosk_client::agent::journal::JobRecord;
use kiosk_client::agent::store::JournalStore;
use protocol::incall::PrintJob;
use serde_json::{json, Value};
use testkit::free_port;

const TOKEN: &str = "agent-print-test-token";
const LONG: Duration = Duration::from_secs(60);

fn print_job(job_id: &str) -> Value {
    json!({
        "type": "print.job", "job_id": job_id, "document_id": "doc-1",
        "pdf_url": "/api/v1/documents/doc-1.pdf", "copies": 1, "call_id": "call-1",
    })
}

struct Setup {
    server: FakeServer,
    printer: TestPrinter,
    dir: tempfile::TempDir,
    config: PathBuf,
    local: String,
}

impl Setup {
    async fn new() -> Setup {
        Setup::with_printer(TestPrinter::create()).await
    }

    async fn with_printer(printer: TestPrinter) -> Setup {
        let server = FakeServer::start(TOKEN).await;
        server.add_pdf("doc-1", minimal_pdf());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(
            dir.path(),
            &server.url(),
            TOKEN,
            &format!(
                "printer = \"{}\"\ncups_server = \"{}\"\njournal_dir = \"{}\"\n\
                 local_listen = \"127.0.0.1:{port}\"",
                printer.name(),
                printer.server(),
                dir.path().join("journal").display()
            ),
        );
        Setup {
            server,
            printer,
            dir,
            config,
            local: format!("http://127.0.0.1:{port}"),
        }
    }

    fn spawn(&self, run: &str, env: &[(&str, &str)]) -> AgentProcess {
        spawn_agent(
            &self.config,
            env,
            &self.dir.path().join(format!("{run}.log")),
        )
    }

    fn journal(&self) -> JournalStore {
        JournalStore::open(&self.dir.path().join("journal")).unwrap()
    }

    /// How many CUPS jobs of the queue carry `title`.
    async fn cups_jobs_titled(&self, title: &str) -> usize {
        let jobs = self.printer.cups().jobs().await.unwrap();
        jobs.iter().filter(|job| job.title == title).count()
    }

    /// The agent's `GET /v1/status`.
    async fn status(&self) -> Value {
        reqwest::get(format!("{}/v1/status", self.local))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn states(&self, job_id: &str) -> Vec<String> {
        self.server
            .print_statuses(job_id)
            .into_iter()
            .map(|(state, _)| state)
            .collect()
    }
}

#[tokio::test]
async fn prints_once_in_order_and_never_reprints_a_re_sent_job() {
    let setup = Setup::new().await;
    let agent = setup.spawn("agent", &[]);
    let auths = setup.server.wait_auths(1, LONG).await;
    assert_eq!(auths[0]["capabilities"], json!(["printer"]));

    // A second agent on the same journal refuses to start.
    let mut second = setup.spawn("second", &[]);
    assert_eq!(second.wait_exit(LONG).await.unwrap().code(), Some(1));
    assert!(
        second
            .log()
            .contains("another sportello-kiosk-agent uses the journal"),
        "{}",
        second.log()
    );

    setup.server.send(print_job("job-once"));
    for state in ["received", "printing", "printed"] {
        setup.server.wait_status("job-once", state, LONG).await;
    }
    assert_eq!(
        setup.states("job-once"),
        ["received", "printing", "printed"]
    );
    assert_eq!(setup.printer.wait_printed(1, LONG).await.len(), 1);

    // The server sends the job again (it may, until it saw `received`): the agent answers with the
    // journaled state and prints nothing.
    setup.server.send(print_job("job-once"));
    setup.server.wait_status("job-once", "printed", LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.printer.printed().len(), 1);
    assert_eq!(setup.cups_jobs_titled("job-once").await, 1);

    // A network cut: the agent reconnects and resumes its session.
    setup.server.cut();
    let auths = setup.server.wait_auths(2, LONG).await;
    assert_eq!(auths[1]["resume"], "session-1");

    let status = setup.status().await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["printer"]["name"], setup.printer.name());
    assert_eq!(status["printer"]["printer"]["problem"], Value::Null);
    assert_eq!(status["printer"]["pending_jobs"], json!([]));

    let log = agent.stop().await.unwrap();
    assert!(log.contains("print job: submitted to CUPS"), "{log}");
    assert!(log.contains("already journaled"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged");
}

/// A status the server cannot take now (`rate_limited`) is kept and sent again, never dropped.
#[tokio::test]
async fn a_rate_limited_status_is_sent_again() {
    let setup = Setup::new().await;
    let _agent = setup.spawn("agent", &[]);
    setup.server.wait_auths(1, LONG).await;
    setup.server.refuse_statuses(2);
    setup.server.send(print_job("job-limited"));
    setup
        .server
        .wait_status("job-limited", "printed", LONG)
        .await;
    let states = setup.states("job-limited");
    assert_eq!(
        &states[..3],
        ["received", "received", "received"],
        "refused twice, then taken: {states:?}"
    );
    assert_eq!(states.last().map(String::as_str), Some("printed"));
    assert_eq!(setup.printer.wait_printed(1, LONG).await.len(), 1);
}

#[tokio::test]
async fn a_crash_after_cups_printed_neither_reprints_nor_forgets() {
    let setup = Setup::new().await;
    let mut agent = setup.spawn("crash", &[("SPORTELLO_AGENT_FAULT", "exit_after_print")]);
    setup.server.wait_auths(1, LONG).await;
    setup.server.send(print_job("job-crash"));
    let code = agent.wait_exit(LONG).await.unwrap().code();
    assert_eq!(code, Some(3), "log:\n{}", agent.log());
    assert!(agent.log().contains("FAULT INJECTION"));
    assert_eq!(setup.printer.wait_printed(1, LONG).await.len(), 1);
    assert!(
        !setup.states("job-crash").contains(&"printed".to_owned()),
        "printed was not reported before the crash"
    );

    // The restarted agent finds the job submitted, asks CUPS, and reports it printed.
    let agent = setup.spawn("restart", &[]);
    setup.server.wait_auths(2, LONG).await;
    setup.server.wait_status("job-crash", "printed", LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.printer.printed().len(), 1, "printed once");
    assert_eq!(
        setup.cups_jobs_titled("job-crash").await,
        1,
        "submitted once"
    );
    let log = agent.stop().await.unwrap();
    assert!(log.contains("resuming after a restart"), "{log}");
}

#[tokio::test]
async fn a_stopped_printer_reports_its_reason_and_prints_when_back() {
    let setup = Setup::new().await;
    setup.printer.stop("media-empty");
    let agent = setup.spawn("agent", &[]);
    setup.server.wait_auths(1, LONG).await;
    setup.server.send(print_job("job-paper"));
    setup
        .server
        .wait_status("job-paper", "received", LONG)
        .await;
    let failed = setup.server.wait_status("job-paper", "failed", LONG).await;
    assert_eq!(failed["detail"], "media-empty");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(setup.printer.printed().is_empty());
    assert_eq!(
        setup.cups_jobs_titled("job-paper").await,
        0,
        "not submitted while stopped"
    );

    let status = setup.status().await;
    assert_eq!(status["printer"]["printer"]["problem"], "media-empty");
    assert_eq!(status["printer"]["pending_jobs"][0]["state"], "failed");

    setup.printer.start();
    setup.server.wait_status("job-paper", "printed", LONG).await;
    assert_eq!(
        setup.server.print_statuses("job-paper"),
        [
            ("received".to_owned(), None),
            ("failed".to_owned(), Some("media-empty".to_owned())),
            ("printing".to_owned(), None),
            ("printed".to_owned(), None),
        ]
    );
    assert_eq!(setup.printer.wait_printed(1, LONG).await.len(), 1);
    agent.stop().await.unwrap();
}

/// A network printer that takes a job and holds the connection (the job stays `processing` in CUPS)
/// until released: a raw CUPS queue on `socket://127.0.0.1:<port>`.
struct HeldPrinter {
    cupsd: Arc<testkit::cups::Cupsd>,
    name: String,
    release: Arc<tokio::sync::Notify>,
    received: Arc<AtomicUsize>,
}

impl HeldPrinter {
    async fn create() -> HeldPrinter {
        let cupsd = agent_common::cupsd();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let release = Arc::new(tokio::sync::Notify::new());
        let received = Arc::new(AtomicUsize::new(0));
        let (held, count) = (release.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (held, count) = (held.clone(), count.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut data = Vec::new();
                    let _ = stream.read_to_end(&mut data).await;
                    if !data.is_empty() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    held.notified().await;
                });
            }
        });
        let name = format!("agent-test-{}-held-{port}", std::process::id());
        cupsd
            .tool(
                "lpadmin",
                &[
                    "-p",
                    &name,
                    "-E",
                    "-v",
                    &format!("socket://127.0.0.1:{port}"),
                    "-m",
                    "raw",
                ],
            )
            .unwrap();
        HeldPrinter {
            cupsd,
            name,
            release,
            received,
        }
    }
}

impl Drop for HeldPrinter {
    fn drop(&mut self) {
        let _ = self.cupsd.tool("lpadmin", &["-x", &self.name]);
    }
}

#[tokio::test]
async fn a_submitted_job_that_stalls_on_a_stopped_printer_is_failed_then_printed() {
    let printer = HeldPrinter::create().await;
    let server = FakeServer::start(TOKEN).await;
    server.add_pdf("doc-1", minimal_pdf());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &server.url(),
        TOKEN,
        &format!(
            "printer = \"{}\"\ncups_server = \"{}\"\njournal_dir = \"{}\"\n\
             local_listen = \"127.0.0.1:{}\"",
            printer.name,
            printer.cupsd.server().display(),
            dir.path().join("journal").display(),
            free_port()
        ),
    );
    let agent = spawn_agent(&config, &[], &dir.path().join("agent.log"));
    server.wait_auths(1, LONG).await;
    server.send(print_job("job-stall"));
    server.wait_status("job-stall", "printing", LONG).await;
    // The printer has the data and has not finished; then it stops (out of paper).
    let deadline = std::time::Instant::now() + LONG;
    while printer.received.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the printer got no data"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    printer
        .cupsd
        .tool("cupsdisable", &["-r", "media-empty", &printer.name])
        .unwrap();
    // Stopping a queue with an active job clears its state message (`lpstat`: "reason unknown"),
    // so what CUPS tells is only that the printer is stopped.
    let failed = server.wait_status("job-stall", "failed", LONG).await;
    assert_eq!(failed["detail"], "stopped");

    // Paper loaded: CUPS sends the job again and the printer finishes it.
    printer.cupsd.tool("cupsenable", &[&printer.name]).unwrap();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        printer.release.notify_waiters();
        if server
            .print_statuses("job-stall")
            .iter()
            .any(|(state, _)| state == "printed")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            server.frames()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let states: Vec<String> = server
        .print_statuses("job-stall")
        .into_iter()
        .map(|(state, _)| state)
        .collect();
    assert_eq!(
        states,
        ["received", "printing", "failed", "printing", "printed"]
    );
    let server = printer.cupsd.server().display().to_string();
    let jobs = Cups::new(&printer.name, Some(&server))
        .jobs()
        .await
        .unwrap();
    assert_eq!(jobs.iter().filter(|j| j.title == "job-stall").count(), 1);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_caught_between_journal_and_lp_prints_exactly_once() {
    let setup = Setup::new().await;
    // Two jobs journaled as `submitting` by an agent that then died: `lp` had run for the first
    // (CUPS has a job with its title), not for the second.
    let journal = setup.journal();
    for job_id in ["job-ran", "job-not-ran"] {
        let job = PrintJob {
            job_id: job_id.into(),
            document_id: "doc-1".into(),
            pdf_url: "/api/v1/documents/doc-1.pdf".into(),
            copies: 1,
            call_id: "call-1".into(),
        };
        let file = journal.save_pdf(job_id, &minimal_pdf()).unwrap();
        let mut record = JobRecord::new(&job, file, 1);
        record.mark_submitting(2);
        journal.save(&record).unwrap();
    }
    let pdf = journal.pdf_path("job-ran");
    setup.printer.tool(
        "lp",
        &[
            "-d",
            setup.printer.name(),
            "-t",
            "job-ran",
            pdf.to_str().unwrap(),
        ],
    );

    let agent = setup.spawn("recover", &[]);
    setup.server.wait_auths(1, LONG).await;
    setup.server.wait_status("job-ran", "printed", LONG).await;
    setup
        .server
        .wait_status("job-not-ran", "printed", LONG)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(setup.printer.wait_printed(2, LONG).await.len(), 2);
    assert_eq!(setup.printer.printed().len(), 2);
    assert_eq!(
        setup.cups_jobs_titled("job-ran").await,
        1,
        "adopted, not resubmitted"
    );
    assert_eq!(
        setup.cups_jobs_titled("job-not-ran").await,
        1,
        "submitted once"
    );
    assert_eq!(setup.states("job-ran"), ["received", "printing", "printed"]);
    let log = agent.stop().await.unwrap();
    assert!(log.contains("found in CUPS by its title"), "{log}");
    assert!(log.contains("no CUPS job has its title"), "{log}");
    // Printed PDFs are deleted from the journal.
    assert!(!journal.pdf_path("job-ran").exists());
}

#[tokio::test]
async fn check_validates_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "http://127.0.0.1:9", "t", "printer = \"Kiosk\"");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sportello-kiosk-agent"))
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "server = \"ftp://x\"\nlocal_listen = \"0.0.0.0:7480\"\nprinterr = \"x\"\n",
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sportello-kiosk-agent"))
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("printerr"));
}

/// The kiosk's cupsd crashes in the middle of a print (as Debian's 2.4.2-3+deb12u10 does on some
/// jobs): the operator sees the print service down for every pending job, the jobs stay in the
/// journal, and once cupsd is back each one prints exactly once: the interrupted one is finished
/// by CUPS (never submitted again by the agent), the one that arrived meanwhile is submitted then.
#[tokio::test]
async fn a_cupsd_crash_mid_print_loses_nothing_and_prints_nothing_twice() {
    // A daemon of this test's own: the crash must not hit the other tests' printers.
    let cupsd = testkit::cups::Cupsd::start().unwrap();
    let setup = Setup::with_printer(TestPrinter::create_on(&cupsd)).await;
    let printer = setup.printer.inner();
    printer.stall(true).unwrap();
    let agent = setup.spawn("agent", &[]);
    setup.server.wait_auths(1, LONG).await;
    setup.server.send(print_job("job-mid"));
    setup.server.wait_status("job-mid", "printing", LONG).await;
    let deadline = std::time::Instant::now() + LONG;
    while printer.in_progress().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never reached the printer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cupsd.crash().unwrap();
    setup.server.send(print_job("job-during"));
    for job_id in ["job-mid", "job-during"] {
        let failed = setup.server.wait_status(job_id, "failed", LONG).await;
        assert_eq!(failed["detail"], "cups-unavailable", "{job_id}");
    }
    let status = setup.status().await;
    assert_eq!(status["printer"]["printer"]["state"], "unknown", "{status}");
    assert_eq!(
        status["printer"]["pending_jobs"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    // Kept in the journal while cupsd is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let records = setup.journal().load_all().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| !r.is_finished()), "{records:?}");
    assert!(printer.printed().is_empty());

    printer.stall(false).unwrap();
    cupsd.restart().unwrap();
    for job_id in ["job-mid", "job-during"] {
        setup.server.wait_status(job_id, "printed", LONG).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Exactly once: one complete run of the printer per job, one CUPS job per job, two PDFs.
    let mut titles: Vec<String> = printer
        .completions()
        .into_iter()
        .map(|(_, title)| title)
        .collect();
    titles.sort();
    assert_eq!(titles, ["job-during", "job-mid"]);
    assert_eq!(printer.printed().len(), 2);
    assert_eq!(setup.cups_jobs_titled("job-mid").await, 1);
    assert_eq!(setup.cups_jobs_titled("job-during").await, 1);
    assert_eq!(
        setup.states("job-mid"),
        ["received", "printing", "failed", "printing", "printed"]
    );
    let log = agent.stop().await.unwrap();
    assert!(log.contains("cups-unavailable"), "{log}");
}

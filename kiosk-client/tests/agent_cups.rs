//! The agent's CUPS module against a real CUPS (the test process's private `cupsd`) with a PDF
//! queue of the test's own: print a PDF and see it completed, find it by title, and read the
//! reason of a stopped printer.

mod agent_common;

use std::time::{Duration, Instant};

use agent_common::{minimal_pdf, TestPrinter};
use kiosk_client::agent::cups::{Cups, CupsError};
use kiosk_client::agent::journal::CupsJobState;

async fn wait_state(cups: &Cups, id: u32, want: CupsJobState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let job = cups.job(id).await.unwrap();
        if job.as_ref().map(|j| j.state) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CUPS job {id} is {job:?}, not {want:?}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn print_find_by_title_and_see_the_stopped_printer() {
    let printer = TestPrinter::create();
    let cups = printer.cups();
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("doc.pdf");
    std::fs::write(&pdf, minimal_pdf()).unwrap();

    let status = cups.printer_status().await.unwrap();
    assert_eq!(status.problem(), None, "{status:?}");
    assert!(status.accepting);

    // Submitted held: nothing prints, and the job is found by its title (the crash window between
    // `lp` and journaling its id); released, it completes.
    let title = format!("agent-cups-{}", std::process::id());
    let id = cups.submit(&pdf, 1, &title).await.unwrap();
    let found = cups
        .find_by_title(&title)
        .await
        .unwrap()
        .expect("found by title");
    assert_eq!(found.id, id);
    assert_eq!(found.state, CupsJobState::PendingHeld);
    assert_eq!(found.title, title);
    assert!(cups.find_by_title("no-such-title").await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(printer.printed().is_empty(), "a held job does not print");
    cups.release(id).await.unwrap();
    wait_state(&cups, id, CupsJobState::Completed, Duration::from_secs(60)).await;
    assert!(cups.jobs().await.unwrap().iter().any(|j| j.id == id));
    assert_eq!(
        printer.wait_printed(1, Duration::from_secs(30)).await.len(),
        1
    );
    // A job CUPS does not know is None, not an error.
    assert_eq!(cups.job(999_999).await.unwrap(), None);

    // Out of paper (simulated): the printer's reason is the problem; a job waits.
    printer.stop("media-empty");
    let status = cups.printer_status().await.unwrap();
    assert_eq!(status.state, "stopped");
    assert_eq!(
        status.problem().as_deref(),
        Some("media-empty"),
        "{status:?}"
    );
    let waiting = cups.submit(&pdf, 2, &format!("{title}-2")).await.unwrap();
    cups.release(waiting).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = cups.job(waiting).await.unwrap().unwrap();
    assert!(
        matches!(
            job.state,
            CupsJobState::Pending | CupsJobState::ProcessingStopped
        ),
        "{job:?}"
    );
    printer.start();
    assert_eq!(cups.printer_status().await.unwrap().problem(), None);
    wait_state(
        &cups,
        waiting,
        CupsJobState::Completed,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        printer.wait_printed(2, Duration::from_secs(30)).await.len(),
        2
    );
}

#[tokio::test]
async fn a_missing_queue_or_scheduler_is_an_error() {
    let cupsd = agent_common::cupsd();
    let server = cupsd.server().display().to_string();
    let cups = Cups::new("agent-test-no-such-queue", Some(&server));
    assert!(matches!(
        cups.printer_status().await,
        Err(CupsError::Failed { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("doc.pdf");
    std::fs::write(&pdf, minimal_pdf()).unwrap();
    assert!(cups.submit(&pdf, 1, "x").await.is_err());

    let nowhere = Cups::new("Kiosk", Some("/nonexistent/cups.sock"));
    assert!(nowhere.printer_status().await.is_err());
}

/// `deploy/kiosk-agent/cups-kiosk-setup.sh` on Debian's stock `cupsd.conf`: loopback listeners
/// only, no browsing or web interface, `DirtyCleanInterval 0`, a configuration `cupsd -t` accepts,
/// the original kept, and the same result when run again.
#[test]
fn the_kiosk_cups_setup_script_makes_a_loopback_only_crash_safe_configuration() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kiosk-agent/cups-kiosk-setup.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("cupsd.conf");
    let stock = std::fs::read_to_string("/usr/share/cups/cupsd.conf.default")
        .expect("Debian's stock cupsd.conf (apt-get install cups)");
    assert!(stock.contains("Listen localhost:631"));
    std::fs::write(&conf, &stock).unwrap();
    let run = || {
        let out = std::process::Command::new("sh")
            .arg(script)
            .arg(&conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(&conf).unwrap()
    };
    let once = run();
    let directives: Vec<&str> = once
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let listen: Vec<&&str> = directives
        .iter()
        .filter(|l| l.starts_with("Listen") || l.starts_with("Port"))
        .collect();
    assert_eq!(
        listen,
        [&"Listen 127.0.0.1:631", &"Listen /run/cups/cups.sock"]
    );
    for wanted in [
        "Browsing No",
        "BrowseLocalProtocols none",
        "WebInterface No",
        "DirtyCleanInterval 0",
    ] {
        assert_eq!(
            directives.iter().filter(|l| **l == wanted).count(),
            1,
            "{wanted}"
        );
    }
    // The policies are Debian's own, untouched.
    assert!(once.contains("<Policy default>"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cupsd.conf.before-sportello")).unwrap(),
        stock
    );
    assert_eq!(run(), once, "running it again changes nothing");
}

//! Tests of the private `cupsd` and its PDF queues (they need CUPS, cups-pdf and Ghostscript).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

const WAIT: Duration = Duration::from_secs(90);

fn text_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("doc.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn prints_into_its_own_folder_with_the_title_in_the_name() {
    let docs = tempfile::tempdir().unwrap();
    let a = PdfPrinter::create().expect("printer a");
    let b = PdfPrinter::create().expect("printer b");
    assert_ne!(a.name(), b.name());
    assert_ne!(a.out_dir(), b.out_dir());
    let doc = text_file(docs.path(), "Ricevuta: Mario Rossi, sportello 3\n");
    // Dots survive; spaces and slashes do not.
    let id = a.print(&doc, "ticket-A123.v2").unwrap();
    b.print(&doc, "other b/x").unwrap();

    let printed = a.wait_printed(1, WAIT).unwrap();
    assert_eq!(printed.len(), 1);
    let file = printed[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(file, format!("ticket-A123.v2-job_{id}.pdf"));
    assert!(printed[0].starts_with(a.out_dir()));
    let pdf = std::fs::read(&printed[0]).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"));
    assert!(a.jobs_completed() >= 1);
    assert!(a.jobs_pending().unwrap().is_empty());
    assert_eq!(a.completions(), vec![(id, "ticket-A123.v2".to_owned())]);

    let printed_b = b.wait_printed(1, WAIT).unwrap();
    assert!(printed_b[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("otherbx-job_"));
    assert_eq!(a.printed().len(), 1, "b's job must not land in a's folder");
}

#[test]
fn parallel_printers_do_not_mix() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let docs = tempfile::tempdir().unwrap();
                let p = PdfPrinter::create().expect("printer");
                let doc = text_file(docs.path(), &format!("documento {i}\n"));
                p.print(&doc, &format!("par-{i}")).unwrap();
                let printed = p.wait_printed(1, WAIT).unwrap();
                assert_eq!(printed.len(), 1);
                let name = printed[0].file_name().unwrap().to_str().unwrap().to_owned();
                assert!(name.starts_with(&format!("par-{i}-job_")), "{name}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn stopped_printer_holds_jobs_until_started() {
    let docs = tempfile::tempdir().unwrap();
    let p = PdfPrinter::create().unwrap();
    p.stop("media-empty").unwrap();
    let state = p.state().unwrap();
    assert!(
        state.contains("disabled") && state.contains("media-empty"),
        "{state}"
    );
    let id = p
        .print(&text_file(docs.path(), "in attesa\n"), "held")
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(p.jobs_pending().unwrap(), vec![id]);
    assert!(p.printed().is_empty());
    p.start().unwrap();
    assert!(p.state().unwrap().contains("enabled"));
    let printed = p.wait_printed(1, WAIT).unwrap();
    assert_eq!(printed.len(), 1);
}

// Jobs from users the system does not know (`lp -U nosuchuser`) are not tested here, on
// purpose: the product never sends them (the kiosk agent submits under its own local user,
// docs/kiosk-agent.md), and Debian's cupsd 2.4.2-3+deb12u10 with its stock policy segfaults
// on them. What such a crash must look like to a test is checked below instead.

#[tokio::test]
async fn a_dead_cupsd_is_reported_at_once_with_the_last_request() {
    let cupsd = Cupsd::start().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let p = PdfPrinter::create_on(&cupsd).unwrap();
    p.stop("media-empty").unwrap();
    p.print(&text_file(docs.path(), "x\n"), "before-the-crash")
        .unwrap();
    let pid = cupsd.pid().unwrap();
    // Not Cupsd::crash: a death testkit did not ask for, as a segfault would be.
    unsafe { libc::kill(pid as i32, libc::SIGSEGV) };
    let started = Instant::now();
    let err = p.wait_printed_async(1, WAIT).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        started.elapsed()
    );
    assert!(err.contains("killed by signal 11 (SIGSEGV"), "{err}");
    assert!(
        err.contains("a_dead_cupsd_is_reported_at_once_with_the_last_request"),
        "{err}"
    );
    assert!(err.contains("lp -d"), "{err}");
    // Every later call fails the same way, at once.
    let err = p.state().unwrap_err().to_string();
    assert!(err.contains("SIGSEGV"), "{err}");
    assert!(!Path::new(&format!("/proc/{pid}/stat")).exists());
}

#[test]
fn a_crashed_cupsd_restarts_with_its_queues_and_jobs() {
    let cupsd = Cupsd::start().unwrap();
    let docs = tempfile::tempdir().unwrap();
    let p = PdfPrinter::create_on(&cupsd).unwrap();
    p.stall(true).unwrap();
    let id = p
        .print(&text_file(docs.path(), "a metà stampa\n"), "mid-print")
        .unwrap();
    // Wait until the backend holds the converted job: the middle of a print.
    let deadline = Instant::now() + WAIT;
    while p.in_progress() != vec![id] {
        assert!(
            Instant::now() < deadline,
            "the job never reached the backend"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cupsd.crash().unwrap();
    assert!(p.state().is_err());
    p.stall(false).unwrap();
    cupsd.restart().unwrap();
    // The queue and the interrupted job are still there; the job prints once, in full.
    let printed = p.wait_printed(1, WAIT).unwrap();
    assert_eq!(printed.len(), 1);
    assert_eq!(p.completions(), vec![(id, "mid-print".to_owned())]);
}

/// What the system's print system is made of: `/etc/cups` and the spool (names, sizes, times),
/// whether its socket exists, and the `cupsd` processes that are not testkit's.
fn system_cups_snapshot() -> (Vec<String>, bool, Vec<u32>) {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let path = e.path();
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                out.push(format!(
                    "{} {} {:?}",
                    path.display(),
                    meta.len(),
                    meta.modified().ok()
                ));
                if meta.is_dir() {
                    walk(&path, out);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new("/etc/cups"), &mut files);
    walk(Path::new("/var/spool/cups"), &mut files);
    files.sort();
    let others = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "cupsd")
                        && !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                            .unwrap_or_default()
                            .contains("testkit-cupsd-")
                })
                .collect()
        })
        .unwrap_or_default();
    (files, Path::new("/run/cups/cups.sock").exists(), others)
}

#[test]
fn the_system_cupsd_is_neither_started_nor_touched() {
    let before = system_cups_snapshot();
    let cupsd = Cupsd::start().unwrap();
    assert!(cupsd.server().starts_with(cupsd.dir()));
    let docs = tempfile::tempdir().unwrap();
    let p = PdfPrinter::create_on(&cupsd).unwrap();
    p.print(&text_file(docs.path(), "privato\n"), "private")
        .unwrap();
    p.wait_printed(1, WAIT).unwrap();
    // The job went through the private daemon's own spool and logs.
    let log = std::fs::read_to_string(cupsd.dir().join("log/error_log")).unwrap();
    assert!(log.contains(BACKEND), "{log}");
    let dir = cupsd.dir().to_owned();
    drop(p);
    drop(cupsd);
    assert!(
        !dir.exists(),
        "the private folder is removed with the daemon"
    );
    assert_eq!(system_cups_snapshot(), before);
}

#[test]
fn drop_removes_queue_and_folder() {
    let cupsd = Cupsd::start().unwrap();
    let p = PdfPrinter::create_on(&cupsd).unwrap();
    let name = p.name().to_owned();
    let out = p.out_dir().to_owned();
    assert!(cupsd.tool("lpstat", &["-p", &name]).is_ok());
    drop(p);
    assert!(!out.exists());
    assert!(cupsd.tool("lpstat", &["-p", &name]).is_err());
    // The daemon outlives its queues while somebody holds it.
    cupsd.check().unwrap();
}

//! A real printer for tests: a private `cupsd` and PDF queues on it whose printed jobs land as PDF
//! files in each queue's own temporary folder.
//!
//! **The machine's own print system is never used or touched.** [`Cupsd`] is a scheduler of the
//! test process's own: its `ServerRoot`, spool, cache, state, logs and `ServerBin` live in a
//! temporary folder; it listens on a domain socket there and on a free loopback port; it runs in
//! the foreground as a child of testkit, in a process group of its own, and is stopped (with its
//! filters and backends) when the last [`PdfPrinter`] using it is dropped. Its `cupsd.conf` is
//! Debian's stock one (`/usr/share/cups/cupsd.conf.default`, the policy a kiosk runs) with the
//! listeners, browsing and logging replaced, and `DirtyCleanInterval 0` so that jobs survive a
//! crash of the daemon (see `deploy/kiosk-agent/README.md`). Client tools reach it through
//! `CUPS_SERVER` = [`Cupsd::server`].
//!
//! **A daemon that dies is noticed at once.** A watcher thread waits on the child. When it exits
//! unasked, it kills what is left of its process group (as systemd does with a crashed unit),
//! prints a report naming the signal, the last requests sent to it and the test threads that sent
//! them, and the tail of its error log; from then on every call on it (and every wait for a
//! printed PDF) fails with that report instead of timing out. [`Cupsd::crash`] and
//! [`Cupsd::restart`] let a test kill the daemon and bring it back on the same folder, socket and
//! port, with the queues and jobs it had written.
//!
//! **The PDF printer.** The cups-pdf backend reads its configuration only from `/etc/cups`, which a
//! private scheduler must not touch, so each queue uses a small backend installed in the private
//! `ServerBin` (`testkit-pdf`) that does what cups-pdf does: it turns the PostScript the CUPS
//! filter chain produces (from cups-pdf's own PPD, [`PPD`]) into PDF with Ghostscript. It writes
//! `<title>-job_<id>.pdf` into [`PdfPrinter::out_dir`], keeping only letters, digits, `-`, `_`
//! and `.` of the title, truncated to 64 characters, as cups-pdf does with `TitlePref=1` and
//! `Label=2`. The file appears by rename once complete, and each completed job is appended to a
//! log ([`PdfPrinter::completions`]), so a test can tell a job printed twice from one printed
//! once. [`PdfPrinter::stall`] holds the backend before it writes, to catch a job in the middle
//! of printing.
//!
//! The daemon's start-up and client tools are in `scheduler`, its watcher and crash reports in
//! `watch`, its configuration and backend in `conf`, and the PDF queues in `printer`.

mod conf;
mod printer;
mod scheduler;
#[cfg(test)]
mod tests;
mod watch;

pub use printer::PdfPrinter;
pub use scheduler::Cupsd;

/// The cups-pdf PPD shipped by `printer-driver-cups-pdf` (a PostScript printer).
pub const PPD: &str = "/usr/share/ppd/cups-pdf/CUPS-PDF_opt.ppd";
/// Debian's stock `cupsd.conf`, the base of the private one.
const STOCK_CONF: &str = "/usr/share/cups/cupsd.conf.default";
/// The system's CUPS programs (filters, backends, CGI), linked into the private `ServerBin`.
const SYSTEM_SERVER_BIN: &str = "/usr/lib/cups";
const BACKEND: &str = "testkit-pdf";
const INSTALL: &str =
    "install them with `apt-get install -y cups printer-driver-cups-pdf cups-ipp-utils`";

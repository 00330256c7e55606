//! The kiosk's printer through CUPS, with the CUPS command-line tools: `lp` submits, `ipptool`
//! asks the scheduler over IPP for the printer's state and for jobs (by id, or all of the queue's
//! to find one by title).
//!
//! Every tool talks to the same scheduler: the configured `cups_server`, else `CUPS_SERVER`, else
//! the local domain socket (`/run/cups/cups.sock`), else `localhost:631`. Commands run with
//! `LC_ALL=C` (stable output), a timeout, and are killed if the agent drops them.
//!
//! Job titles (`job-name`) are private to their owner in the default CUPS policy; the agent asks
//! with `requesting-user-name` set to its own user, which is the owner of the jobs it submitted.
//! Jobs are submitted under that user by name ([`local_user`], `lp -U`): a job from a user the
//! system does not know crashes Debian's cupsd 2.4.2-3+deb12u10, so the agent never sends one.
//!
//! Whether the scheduler is up at all is asked by connecting to it ([`Cups::reachable`]), not by
//! reading tool messages: while it is down, the printer's problem is [`UNAVAILABLE`].

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::journal::{pick_titled, CupsJob, CupsJobState};

/// How long one CUPS command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// IPP Get-Printer-Attributes: state, reasons, message, accepting.
const GET_PRINTER: &str = r#"{
	OPERATION Get-Printer-Attributes
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR keyword requested-attributes printer-state,printer-state-reasons,printer-state-message,printer-is-accepting-jobs
	STATUS successful-ok
	DISPLAY printer-state
	DISPLAY printer-state-reasons
	DISPLAY printer-state-message
	DISPLAY printer-is-accepting-jobs
}
"#;

/// IPP Get-Job-Attributes for job `$job`; a job CUPS does not know is not an error.
const GET_JOB: &str = r#"{
	OPERATION Get-Job-Attributes
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR integer job-id $job
	ATTR name requesting-user-name $user
	ATTR keyword requested-attributes job-id,job-state,job-name
	STATUS successful-ok
	STATUS client-error-not-found
	DISPLAY job-id
	DISPLAY job-state
	DISPLAY job-name
}
"#;

/// IPP Get-Jobs: every job of the queue, finished ones included.
const GET_JOBS: &str = r#"{
	OPERATION Get-Jobs
	GROUP operation-attributes-tag
	ATTR charset attributes-charset utf-8
	ATTR naturalLanguage attributes-natural-language en
	ATTR uri printer-uri $uri
	ATTR name requesting-user-name $user
	ATTR keyword which-jobs all
	ATTR keyword requested-attributes job-id,job-state,job-name
	STATUS successful-ok
	DISPLAY job-id
	DISPLAY job-state
	DISPLAY job-name
}
"#;

/// The printer problem reported while the CUPS scheduler cannot be reached (it crashed, or is
/// restarting): the operator sees the kiosk's print service down; jobs stay journaled.
pub const UNAVAILABLE: &str = "cups-unavailable";

/// The name of the user this process runs as, from the user database; an error when the uid has
/// no entry (CUPS must not receive jobs from unknown users).
pub fn local_user() -> Result<String, String> {
    // SAFETY: geteuid never fails; getpwuid_r writes only into the buffers given.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return Err(format!(
            "this process's uid {uid} has no entry in the user database: CUPS must get print jobs \
             from a known local user (Debian's cupsd crashes on unknown ones); run the agent as a \
             system user, e.g. the unit in deploy/kiosk-agent/"
        ));
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Ok(name.to_string_lossy().into_owned())
}

/// A CUPS command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CupsError {
    /// The tool could not run, or timed out.
    #[error("{program}: {message}")]
    Spawn {
        /// `lp` or `ipptool`.
        program: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The tool exited with an error.
    #[error("{program} failed: {message}")]
    Failed {
        /// `lp` or `ipptool`.
        program: &'static str,
        /// Its error output (or exit status).
        message: String,
    },
    /// The tool's output could not be read.
    #[error("unexpected output from {program}: {output:?}")]
    Output {
        /// `lp` or `ipptool`.
        program: &'static str,
        /// The output.
        output: String,
    },
}

/// A printer's state (IPP `printer-state` and friends).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrinterStatus {
    /// `idle`, `processing` or `stopped`.
    pub state: String,
    /// `printer-state-reasons` keywords (`none`, `paused`, `media-empty-error`, …).
    pub reasons: Vec<String>,
    /// `printer-state-message` (for a queue disabled with `cupsdisable -r TEXT`, the text).
    pub message: String,
    /// `printer-is-accepting-jobs`.
    pub accepting: bool,
}

/// Whether a `printer-state-reasons` keyword stops printing.
fn is_blocking_reason(reason: &str) -> bool {
    reason.ends_with("-error") || matches!(reason, "offline" | "offline-report")
}

/// A reason keyword without its severity suffix (`media-empty-error` → `media-empty`).
fn plain_reason(reason: &str) -> &str {
    ["-error", "-warning", "-report"]
        .iter()
        .find_map(|suffix| reason.strip_suffix(suffix))
        .unwrap_or(reason)
}

impl PrinterStatus {
    /// Why the printer cannot print now, or `None` when it can: it is stopped (disabled), it
    /// refuses jobs, or a reason is an error (`…-error`) or `offline`. The text is the most specific
    /// thing known: the blocking reason without its suffix (`media-empty`), another reason, the
    /// state message (`cupsdisable -r media-empty` sets it), or `stopped`.
    pub fn problem(&self) -> Option<String> {
        let blocking = self.reasons.iter().find(|r| is_blocking_reason(r));
        let stopped = self.state == "stopped" || !self.accepting;
        if let Some(reason) = blocking {
            return Some(plain_reason(reason).to_owned());
        }
        if !stopped {
            return None;
        }
        let informative = self
            .reasons
            .iter()
            .find(|r| !matches!(r.as_str(), "none" | "paused" | "") && !r.ends_with("-report"));
        if let Some(reason) = informative {
            return Some(plain_reason(reason).to_owned());
        }
        let message = self.message.trim();
        if !message.is_empty() {
            return Some(message.to_owned());
        }
        Some(
            if self.accepting {
                "stopped"
            } else {
                "not-accepting-jobs"
            }
            .to_owned(),
        )
    }
}

/// The scheduler the CUPS tools use by default: `CUPS_SERVER`, else the local domain socket when it
/// exists, else `localhost:631`.
pub fn default_server() -> String {
    if let Ok(server) = std::env::var("CUPS_SERVER") {
        if !server.trim().is_empty() {
            return server.trim().to_owned();
        }
    }
    for socket in ["/run/cups/cups.sock", "/var/run/cups/cups.sock"] {
        if Path::new(socket).exists() {
            return socket.to_owned();
        }
    }
    "localhost:631".to_owned()
}

/// Whether `name` is usable as a CUPS queue name (what `lpadmin` accepts, minus spaces).
pub fn valid_printer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'#' | b'\\' | b'\'' | b'"'))
}

/// One CUPS queue.
#[derive(Debug, Clone)]
pub struct Cups {
    printer: String,
    server: String,
    /// The local user jobs are submitted as (`None`: unknown; `lp` then uses its own default).
    user: Option<String>,
}

impl Cups {
    /// The queue `printer` on `server` (`host[:port]` or a domain socket path; `None`: the
    /// [`default_server`]).
    pub fn new(printer: &str, server: Option<&str>) -> Self {
        Cups {
            printer: printer.to_owned(),
            server: server.map(str::to_owned).unwrap_or_else(default_server),
            user: local_user().ok(),
        }
    }

    /// Whether the scheduler accepts a connection now (its domain socket, or `host[:port]`, port
    /// 631 by default), within 2 s.
    pub async fn reachable(&self) -> bool {
        let attempt = async {
            if self.server.starts_with('/') {
                tokio::net::UnixStream::connect(&self.server).await.is_ok()
            } else {
                let target =
                    if self.server.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.ends_with(':') && port.parse::<u16>().is_ok()
                    }) {
                        self.server.clone()
                    } else {
                        format!("{}:631", self.server)
                    };
                tokio::net::TcpStream::connect(target).await.is_ok()
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or(false)
    }

    /// The queue name.
    pub fn printer(&self) -> &str {
        &self.printer
    }

    /// The scheduler (`host[:port]` or a socket path).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The queue's IPP URI; a socket path goes in the host part, percent-encoded, as CUPS expects.
    pub fn printer_uri(&self) -> String {
        let host = self.server.replace('%', "%25").replace('/', "%2F");
        format!("ipp://{host}/printers/{}", self.printer)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("CUPS_SERVER", &self.server)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `ipptool` with `test` on stdin and returns its CSV rows as maps.
    async fn ipptool(
        &self,
        test: &str,
        vars: &[(&str, String)],
    ) -> Result<Vec<HashMap<String, String>>, CupsError> {
        const PROGRAM: &str = "ipptool";
        let mut command = self.command(PROGRAM);
        command.arg("-c").arg("-T").arg("10");
        for (name, value) in vars {
            command.arg("-d").arg(format!("{name}={value}"));
        }
        command
            .arg(self.printer_uri())
            .arg("/dev/stdin")
            .stdin(Stdio::piped());
        let mut child = command.spawn().map_err(|e| CupsError::Spawn {
            program: PROGRAM,
            message: e.to_string(),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(test.as_bytes())
                .await
                .map_err(|e| CupsError::Spawn {
                    program: PROGRAM,
                    message: format!("writing the request: {e}"),
                })?;
        }
        let stdout = finished(PROGRAM, child.wait_with_output()).await?;
        Ok(parse_csv_table(&stdout))
    }

    /// The printer's current state.
    pub async fn printer_status(&self) -> Result<PrinterStatus, CupsError> {
        let rows = self.ipptool(GET_PRINTER, &[]).await?;
        let row = rows.into_iter().next().ok_or_else(|| CupsError::Output {
            program: "ipptool",
            output: "no printer attributes".into(),
        })?;
        let get = |key: &str| row.get(key).cloned().unwrap_or_default();
        Ok(PrinterStatus {
            state: get("printer-state"),
            reasons: get("printer-state-reasons")
                .split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect(),
            message: get("printer-state-message"),
            accepting: get("printer-is-accepting-jobs") != "false",
        })
    }

    /// Submits `file` **held** with `lp -d <printer> -n <copies> -t <title> -H hold`; returns the
    /// CUPS job id. Nothing prints until [`Cups::release`]: the caller journals the id first, so a
    /// crash can never leave a printed job whose id the journal lacks (CUPS drops the titles of
    /// finished jobs from its job list within a second, so a finished job cannot be found by title).
    pub async fn submit(&self, file: &Path, copies: u32, title: &str) -> Result<u32, CupsError> {
        const PROGRAM: &str = "lp";
        let mut command = self.command(PROGRAM);
        command
            .arg("-d")
            .arg(&self.printer)
            .arg("-n")
            .arg(copies.to_string())
            .arg("-t")
            .arg(title)
            .arg("-H")
            .arg("hold");
        if let Some(user) = &self.user {
            command.arg("-U").arg(user);
        }
        command.arg(file);
        let stdout = finished(PROGRAM, command.output()).await?;
        parse_lp_output(&stdout).ok_or_else(|| CupsError::Output {
            program: PROGRAM,
            output: stdout.trim().to_owned(),
        })
    }

    /// Releases a held job (`lp -i <id> -H resume`) so it prints.
    pub async fn release(&self, id: u32) -> Result<(), CupsError> {
        const PROGRAM: &str = "lp";
        let mut command = self.command(PROGRAM);
        command
            .arg("-i")
            .arg(id.to_string())
            .arg("-H")
            .arg("resume");
        finished(PROGRAM, command.output()).await.map(|_| ())
    }

    /// CUPS job `id`, or `None` when CUPS does not know it (never existed, or purged from its
    /// history).
    pub async fn job(&self, id: u32) -> Result<Option<CupsJob>, CupsError> {
        let rows = self.ipptool(GET_JOB, &[("job", id.to_string())]).await?;
        Ok(rows
            .iter()
            .filter_map(job_from_row)
            .find(|job| job.id == id))
    }

    /// Every job of the queue that CUPS remembers, finished ones included.
    pub async fn jobs(&self) -> Result<Vec<CupsJob>, CupsError> {
        let rows = self.ipptool(GET_JOBS, &[]).await?;
        Ok(rows.iter().filter_map(job_from_row).collect())
    }

    /// The job submitted with title `title` (see [`pick_titled`]), if CUPS remembers one.
    pub async fn find_by_title(&self, title: &str) -> Result<Option<CupsJob>, CupsError> {
        let jobs = self.jobs().await?;
        Ok(pick_titled(&jobs, title).cloned())
    }
}

/// Waits (at most [`COMMAND_TIMEOUT`]) for a CUPS tool to end; its standard output when it
/// succeeded, else the first line of its standard error.
async fn finished(
    program: &'static str,
    run: impl std::future::Future<Output = std::io::Result<std::process::Output>>,
) -> Result<String, CupsError> {
    let output = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| CupsError::Spawn {
            program,
            message: "timed out".into(),
        })?
        .map_err(|e| CupsError::Spawn {
            program,
            message: e.to_string(),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(CupsError::Failed {
            program,
            message: first_line(&stderr).unwrap_or_else(|| output.status.to_string()),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

fn job_from_row(row: &HashMap<String, String>) -> Option<CupsJob> {
    Some(CupsJob {
        id: row.get("job-id")?.trim().parse().ok()?,
        state: CupsJobState::parse(row.get("job-state")?)?,
        title: row.get("job-name").cloned().unwrap_or_default(),
    })
}

/// The CUPS job id in `lp`'s answer (`request id is Kiosk-12 (1 file(s))`).
pub fn parse_lp_output(output: &str) -> Option<u32> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("request id is ")?;
        let id = rest.split_whitespace().next()?;
        id.rsplit_once('-')?.1.parse().ok()
    })
}

/// Splits one CSV line (`,` separated, `"` quoted with `""` for a quote).
pub fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// `ipptool -c` output: a header line, then one line per attribute group; each row maps header
/// names to values.
pub fn parse_csv_table(text: &str) -> Vec<HashMap<String, String>> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names = parse_csv_line(header);
    lines
        .map(|line| names.iter().cloned().zip(parse_csv_line(line)).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lp_answers_are_parsed() {
        assert_eq!(
            parse_lp_output("request id is Kiosk-PDF-12 (1 file(s))\n"),
            Some(12)
        );
        assert_eq!(parse_lp_output("lp: Error - no default destination"), None);
    }

    #[test]
    fn csv_tables_are_parsed() {
        let rows = parse_csv_table(
            "job-id,job-state,job-name\n1,completed,a\n4,pending,\"x,\"\"y\"\"\"\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["job-name"], "x,\"y\"");
        assert_eq!(
            job_from_row(&rows[0]).unwrap().state,
            CupsJobState::Completed
        );
        assert!(parse_csv_table("job-id,job-state\n").is_empty());
    }

    fn status(state: &str, reasons: &[&str], message: &str, accepting: bool) -> PrinterStatus {
        PrinterStatus {
            state: state.into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            message: message.into(),
            accepting,
        }
    }

    #[test]
    fn printer_problems_name_the_reason() {
        assert_eq!(status("idle", &["none"], "", true).problem(), None);
        assert_eq!(
            status("processing", &["media-low-warning"], "", true).problem(),
            None
        );
        assert_eq!(
            status("stopped", &["paused"], "media-empty", true)
                .problem()
                .as_deref(),
            Some("media-empty")
        );
        assert_eq!(
            status("idle", &["media-empty-error"], "", true)
                .problem()
                .as_deref(),
            Some("media-empty")
        );
        assert_eq!(
            status("processing", &["offline-report"], "", true)
                .problem()
                .as_deref(),
            Some("offline")
        );
        assert_eq!(
            status("stopped", &["paused"], "", true)
                .problem()
                .as_deref(),
            Some("stopped")
        );
        assert_eq!(
            status("idle", &["none"], "Rejecting Jobs", false)
                .problem()
                .as_deref(),
            Some("Rejecting Jobs")
        );
    }

    #[test]
    fn socket_servers_go_in_the_uri_host() {
        let cups = Cups::new("Kiosk", Some("/run/cups/cups.sock"));
        assert_eq!(
            cups.printer_uri(),
            "ipp://%2Frun%2Fcups%2Fcups.sock/printers/Kiosk"
        );
        let cups = Cups::new("Kiosk", Some("localhost:631"));
        assert_eq!(cups.printer_uri(), "ipp://localhost:631/printers/Kiosk");
        assert!(valid_printer_name("Kiosk_PDF-1"));
        assert!(!valid_printer_name("a b"));
        assert!(!valid_printer_name("a/b"));
    }
}

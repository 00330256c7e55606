//! An SMTP sink for tests: a small real SMTP server (RFC 5321, plain text, no TLS, no AUTH) on a
//! free loopback port that keeps every message it accepts in memory.
//!
//! It speaks enough SMTP for a real client such as `lettre`: greeting, `EHLO`/`HELO` (advertising
//! `8BITMIME`, `SMTPUTF8` and `SIZE`), `MAIL FROM`, `RCPT TO`, `DATA` with dot-unstuffing, `RSET`,
//! `NOOP`, `VRFY`, `HELP` and `QUIT`, with `500`/`501`/`502`/`503` replies for unknown, malformed,
//! unsupported or out-of-order commands. [`SmtpSink::set_refusing`] turns it into a mail server
//! that is down (`421` at connect, `451` to `MAIL FROM` and at the end of `DATA`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The largest message accepted (advertised with `SIZE`).
pub const MAX_SIZE: usize = 10 * 1024 * 1024;
/// The longest line accepted, in bytes.
const MAX_LINE: usize = 64 * 1024;
const MAX_RECIPIENTS: usize = 100;

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The envelope sender (`MAIL FROM`), without angle brackets; empty for the null sender.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message as received (headers and body, CRLF line ends, dots unstuffed, without the
    /// final `.` line). Bytes that are not UTF-8 are replaced.
    pub data: String,
}

struct Shared {
    messages: Mutex<Vec<Mail>>,
    /// Per message index: whether `wait_for_mail` has returned it already.
    taken: Mutex<Vec<bool>>,
    refusing: AtomicBool,
    count: watch::Sender<usize>,
}

/// A running SMTP sink; it stops (and closes open sessions) when dropped.
pub struct SmtpSink {
    port: u16,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1:<free port>`. It serves from its own thread and runtime, so it
    /// keeps answering whatever the test's runtime does (current-thread, or blocked in a
    /// synchronous call). `async` only for symmetry with the other helpers.
    pub async fn start() -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback SMTP port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            taken: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            count: watch::channel(0).0,
        });
        let (stop, mut stopped) = watch::channel(false);
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name(format!("smtp-sink-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("SMTP sink runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    // Sessions live in the set: leaving this block ends them too.
                    let mut sessions = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => return,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else {
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                };
                                while sessions.try_join_next().is_some() {}
                                let shared = for_thread.clone();
                                sessions.spawn(async move {
                                    let _ = session(stream, shared).await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("spawn SMTP sink thread");
        SmtpSink { port, shared, stop }
    }

    /// The port it listens on (host `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`, for symmetry with [`SmtpSink::port`].
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        self.shared.messages.lock().expect("lock").clone()
    }

    /// Makes the sink behave like a mail server that is down (`true`) or up again (`false`):
    /// new connections get `421` and close, sessions already open get `451` to `MAIL FROM` and
    /// at the end of `DATA`. Nothing is stored while refusing.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Waits for a message with recipient `to` (compared case-insensitively) and returns the
    /// oldest such message that no earlier `wait_for_mail` call returned, so waiting twice for the
    /// same address yields the first and then the second message. Fails after `timeout`.
    pub async fn wait_for_mail(&self, to: &str, timeout: Duration) -> anyhow::Result<Mail> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before looking, so a message stored in between wakes us up.
        let mut changes = self.shared.count.subscribe();
        loop {
            {
                let messages = self.shared.messages.lock().expect("lock");
                let mut taken = self.shared.taken.lock().expect("lock");
                taken.resize(messages.len(), false);
                let found = messages
                    .iter()
                    .enumerate()
                    .find(|(i, m)| !taken[*i] && m.to.iter().any(|r| r.eq_ignore_ascii_case(to)));
                if let Some((i, mail)) = found {
                    taken[i] = true;
                    return Ok(mail.clone());
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let seen: Vec<Vec<String>> = self.messages().into_iter().map(|m| m.to).collect();
                bail!("no new mail to {to} within {timeout:?}; recipients so far: {seen:?}");
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Also when the sender drops; saying it makes the intent plain.
        let _ = self.stop.send(true);
    }
}

/// Where a session is in the mail transaction.
enum State {
    Connected,
    Greeted,
    Mail { from: String },
    Rcpt { from: String, to: Vec<String> },
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if shared.refusing.load(Ordering::SeqCst) {
        write
            .write_all(b"421 4.3.2 testkit sink: service not available, closing channel\r\n")
            .await?;
        return Ok(());
    }
    write
        .write_all(b"220 testkit-smtp-sink ESMTP ready\r\n")
        .await?;
    let mut state = State::Connected;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut read)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            // Too long: skip the rest of the line.
            loop {
                line.clear();
                let n = (&mut read)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                    .await?;
                if n == 0 || line.ends_with(b"\n") {
                    break;
                }
            }
            write.write_all(b"500 5.5.6 Line too long\r\n").await?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => "501 5.5.4 Domain name required".into(),
            "EHLO" => {
                state = State::Greeted;
                format!(
                    "250-testkit-smtp-sink greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE {MAX_SIZE}\r\n250 HELP"
                )
            }
            "HELO" => {
                state = State::Greeted;
                format!("250 testkit-smtp-sink greets {arg}")
            }
            "MAIL" => match state {
                State::Connected => "503 5.5.1 Send EHLO or HELO first".into(),
                State::Mail { .. } | State::Rcpt { .. } => "503 5.5.1 Nested MAIL command".into(),
                State::Greeted => match parse_path(arg, "FROM:") {
                    Err(reply) => reply,
                    Ok(_) if shared.refusing.load(Ordering::SeqCst) => {
                        "451 4.3.0 testkit sink: mail service temporarily unavailable".into()
                    }
                    Ok((from, params)) => match check_mail_params(&params) {
                        Err(reply) => reply,
                        Ok(()) => {
                            state = State::Mail { from };
                            "250 2.1.0 Sender OK".into()
                        }
                    },
                },
            },
            "RCPT" => match std::mem::replace(&mut state, State::Connected) {
                State::Mail { from } => match parse_path(arg, "TO:") {
                    Ok((to, _)) if !to.is_empty() => {
                        state = State::Rcpt { from, to: vec![to] };
                        "250 2.1.5 Recipient OK".into()
                    }
                    Ok(_) => {
                        state = State::Mail { from };
                        "501 5.1.3 Empty recipient".into()
                    }
                    Err(reply) => {
                        state = State::Mail { from };
                        reply
                    }
                },
                State::Rcpt { from, mut to } => {
                    let reply = match parse_path(arg, "TO:") {
                        Ok((_, _)) if to.len() >= MAX_RECIPIENTS => {
                            "452 4.5.3 Too many recipients".into()
                        }
                        Ok((rcpt, _)) if !rcpt.is_empty() => {
                            to.push(rcpt);
                            "250 2.1.5 Recipient OK".into()
                        }
                        Ok(_) => "501 5.1.3 Empty recipient".into(),
                        Err(reply) => reply,
                    };
                    state = State::Rcpt { from, to };
                    reply
                }
                other => {
                    state = other;
                    "503 5.5.1 Need MAIL before RCPT".into()
                }
            },
            "DATA" if !arg.is_empty() => "501 5.5.4 DATA takes no argument".into(),
            "DATA" => match std::mem::replace(&mut state, State::Greeted) {
                State::Rcpt { from, to } => {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let Some(data) = read_data(&mut read).await? else {
                        return Ok(());
                    };
                    if data.len() > MAX_SIZE {
                        "552 5.3.4 Message too big".into()
                    } else if shared.refusing.load(Ordering::SeqCst) {
                        "451 4.3.0 testkit sink: mail service temporarily unavailable".into()
                    } else {
                        let id = store(
                            &shared,
                            Mail {
                                from,
                                to,
                                data: String::from_utf8_lossy(&data).into_owned(),
                            },
                        );
                        format!("250 2.0.0 Ok: queued as {id}")
                    }
                }
                other => {
                    let reply = match other {
                        State::Connected => "503 5.5.1 Send EHLO or HELO first",
                        State::Mail { .. } => "503 5.5.1 Need RCPT before DATA",
                        _ => "503 5.5.1 Need MAIL before DATA",
                    };
                    state = other;
                    reply.into()
                }
            },
            "RSET" => {
                if !matches!(state, State::Connected) {
                    state = State::Greeted;
                }
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "VRFY" => "252 2.1.5 Cannot VRFY user, but will accept message".into(),
            "HELP" => "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "STARTTLS" | "AUTH" | "BDAT" | "EXPN" | "ETRN" | "TURN" | "SEND" | "SOML" | "SAML" => {
                "502 5.5.1 Command not implemented".into()
            }
            _ => "500 5.5.2 Command not recognized".into(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}

/// Parses `FROM:<path> PARAMS` or `TO:<path> PARAMS` into the path without brackets and the
/// parameters, or a `501` reply.
fn parse_path(arg: &str, keyword: &str) -> Result<(String, Vec<String>), String> {
    let syntax = || format!("501 5.5.4 Syntax: {keyword}<address>");
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    let rest = arg[keyword.len()..].trim_start();
    let Some(rest) = rest.strip_prefix('<') else {
        return Err(syntax());
    };
    let Some((path, params)) = rest.split_once('>') else {
        return Err(syntax());
    };
    if path.contains(['<', ' ']) {
        return Err(syntax());
    }
    // A source route (`@a,@b:user@host`) is allowed but ignored (RFC 5321 §4.1.2).
    let path = path.rsplit_once(':').map_or(path, |(_, p)| p);
    Ok((
        path.to_owned(),
        params.split_whitespace().map(str::to_owned).collect(),
    ))
}

/// Accepts the `MAIL FROM` parameters of the advertised extensions.
fn check_mail_params(params: &[String]) -> Result<(), String> {
    for p in params {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        match key.to_ascii_uppercase().as_str() {
            "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
            "SMTPUTF8" if value.is_empty() => {}
            "SIZE" => match value.parse::<usize>() {
                Ok(n) if n <= MAX_SIZE => {}
                Ok(_) => return Err("552 5.3.4 Message size exceeds fixed limit".into()),
                Err(_) => return Err("501 5.5.4 Bad SIZE value".into()),
            },
            _ => return Err(format!("555 5.5.4 Unsupported parameter {p}")),
        }
    }
    Ok(())
}

/// Reads message lines up to `<CRLF>.<CRLF>`, unstuffing leading dots. `None` if the client went
/// away. Stops storing (but keeps reading) past `MAX_SIZE + 1` bytes.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = read.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(&line);
        if content == b"." {
            return Ok(Some(data));
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if data.len() <= MAX_SIZE {
            data.extend_from_slice(content);
            data.extend_from_slice(b"\r\n");
        }
    }
}

fn store(shared: &Shared, mail: Mail) -> usize {
    let mut messages = shared.messages.lock().expect("lock");
    messages.push(mail);
    let n = messages.len();
    drop(messages);
    shared.count.send_replace(n);
    n
}

impl Mail {
    /// The header fields, unfolded, in order (names as sent).
    pub fn headers(&self) -> Vec<(String, String)> {
        parse_headers(split_message(&self.data).0)
    }

    /// The first header field called `name` (case-insensitive), unfolded, undecoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The `Subject`, with RFC 2047 encoded words (`=?UTF-8?B?…?=`, `=?UTF-8?Q?…?=`) decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|s| decode_words(&s))
    }

    /// The text of the message: the body of a single-part message, or of the first `text/plain`
    /// part of a multipart one, decoded from `quoted-printable` or `base64` if so marked (7bit and
    /// 8bit are taken as is), read as UTF-8 (or ISO-8859-1 if so declared), with CRLF turned into
    /// LF. The line break that ends the SMTP data (the first CRLF of `<CRLF>.<CRLF>`) is not part
    /// of the text, so a body sent as `"code\n"` or `"code"` comes back as sent.
    pub fn body_text(&self) -> String {
        let (head, body) = split_message(&self.data);
        let body = body
            .strip_suffix("\r\n")
            .or_else(|| body.strip_suffix('\n'))
            .unwrap_or(body);
        text_of(&parse_headers(head), body).unwrap_or_default()
    }
}

/// Splits a message (or MIME part) into its header block and its body.
fn split_message(data: &str) -> (&str, &str) {
    if let Some(i) = data.find("\r\n\r\n") {
        (&data[..i], &data[i + 4..])
    } else if let Some(i) = data.find("\n\n") {
        (&data[..i], &data[i + 2..])
    } else if data.starts_with("\r\n") || data.starts_with('\n') {
        ("", data.trim_start_matches(['\r', '\n']))
    } else {
        (data, "")
    }
}

fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The value of `param` in a header such as `text/plain; charset=utf-8`.
fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn text_of(headers: &[(String, String)], body: &str) -> Option<String> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let content_type = get("Content-Type").unwrap_or("text/plain");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let boundary = header_param(content_type, "boundary")?;
        let delimiter = format!("--{boundary}");
        let mut parts = body.split(delimiter.as_str()).skip(1);
        return parts.find_map(|part| {
            if part.starts_with("--") {
                return None;
            }
            let part = part.strip_prefix("\r\n").unwrap_or(part);
            let part = part.strip_suffix("\r\n").unwrap_or(part);
            let (head, body) = split_message(part);
            text_of(&parse_headers(head), body)
        });
    }
    if mime != "text/plain" {
        return None;
    }
    let encoding = get("Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|_| body.as_bytes().to_vec())
        }
        "quoted-printable" => decode_qp(body.as_bytes(), false),
        _ => body.as_bytes().to_vec(),
    };
    let charset = header_param(content_type, "charset").unwrap_or_default();
    Some(decode_charset(&bytes, &charset).replace("\r\n", "\n"))
}

/// Decodes quoted-printable (`q_encoding`: the RFC 2047 "Q" variant, where `_` is a space).
fn decode_qp(input: &[u8], q_encoding: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' if input[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if input[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b'_' if q_encoding => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_charset(bytes: &[u8], charset: &str) -> String {
    match charset.to_ascii_lowercase().as_str() {
        "iso-8859-1" | "latin1" | "iso8859-1" => bytes.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Decodes RFC 2047 encoded words in a header value; whitespace between two encoded words is
/// dropped.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_space = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, len)) = rest.starts_with("=?").then(|| encoded_word(rest)).flatten() {
            if !last_was_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[len..];
            last_was_word = true;
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        rest = &rest[c.len_utf8()..];
        if c.is_whitespace() {
            pending_space.push(c);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
            last_was_word = false;
        }
    }
    out.push_str(&pending_space);
    out
}

/// Decodes one `=?charset?B|Q?text?=` at the start of `s`: the text and the length consumed.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = &s[2..];
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding.to_ascii_uppercase().as_str() {
        "B" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "Q" => decode_qp(text.as_bytes(), true),
        _ => return None,
    };
    let len = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    // RFC 2231 allows a language after the charset: `utf-8*it`.
    let charset = charset.split('*').next().unwrap_or(charset);
    Some((decode_charset(&bytes, charset), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::{ContentTransferEncoding, ContentType};
    use lettre::message::{Mailbox, MultiPart, SinglePart};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(sink.host())
            .port(sink.port())
            .timeout(Some(Duration::from_secs(5)))
            .build()
    }

    const BODY: &str = "Gentile cittadino,\nil suo codice di verifica è 482913.\nPerché è già scaduto? Più tardi riceverà un'altra e-mail.\n.Una riga che inizia con un punto.\n";

    #[tokio::test]
    async fn lettre_mail_with_italian_text_arrives_intact() {
        let sink = SmtpSink::start().await;
        let message = Message::builder()
            .from(
                "Sportello <noreply@comune.example.it>"
                    .parse::<Mailbox>()
                    .unwrap(),
            )
            .to("mario.rossi@pec.example.it".parse().unwrap())
            .subject("Codice di verifica: è già arrivato — perché sì")
            .header(ContentType::TEXT_PLAIN)
            .body(BODY.to_owned())
            .unwrap();
        transport(&sink).send(message).await.expect("sent");

        let mail = sink
            .wait_for_mail("Mario.Rossi@pec.example.it", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(mail.from, "noreply@comune.example.it");
        assert_eq!(mail.to, vec!["mario.rossi@pec.example.it".to_owned()]);
        assert_eq!(
            mail.subject().as_deref(),
            Some("Codice di verifica: è già arrivato — perché sì")
        );
        assert_eq!(mail.body_text(), BODY);
        assert_eq!(sink.messages().len(), 1);
        assert!(mail.data.ends_with("\r\n"));
    }

    #[tokio::test]
    async fn multipart_alternative_and_several_recipients() {
        let sink = SmtpSink::start().await;
        let message = Message::builder()
            .from("noreply@comune.example.it".parse::<Mailbox>().unwrap())
            .to("a@example.it".parse().unwrap())
            .cc("b@example.it".parse().unwrap())
            .subject("Prenotazione confermata")
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::Base64)
                            .body("Città: Forlì\nOra: 10:30".to_owned()),
                    )
                    .singlepart(SinglePart::html("<p>Città: Forlì</p>".to_owned())),
            )
            .unwrap();
        transport(&sink).send(message).await.unwrap();
        let mail = sink
            .wait_for_mail("b@example.it", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(mail.to, vec!["a@example.it", "b@example.it"]);
        assert!(mail.data.contains("Content-Transfer-Encoding: base64"));
        assert_eq!(mail.body_text(), "Città: Forlì\nOra: 10:30");
        assert_eq!(mail.subject().as_deref(), Some("Prenotazione confermata"));
    }

    #[tokio::test]
    async fn wait_for_mail_hands_out_each_message_once_and_times_out() {
        let sink = SmtpSink::start().await;
        let t = transport(&sink);
        let waiter = {
            let sink_port = sink.port();
            tokio::spawn(async move {
                // Sent after the waiter has started.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                    .port(sink_port)
                    .build();
                for code in ["111111", "222222"] {
                    let m = Message::builder()
                        .from("x@example.it".parse::<Mailbox>().unwrap())
                        .to("c@example.it".parse().unwrap())
                        .subject(code)
                        .body(code.to_owned())
                        .unwrap();
                    t.send(m).await.unwrap();
                }
            })
        };
        let first = sink
            .wait_for_mail("c@example.it", Duration::from_secs(5))
            .await
            .unwrap();
        let second = sink
            .wait_for_mail("c@example.it", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(first.body_text(), "111111");
        assert_eq!(second.body_text(), "222222");
        waiter.await.unwrap();
        let err = sink
            .wait_for_mail("c@example.it", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no new mail"), "{err}");
        drop(t);
    }

    #[tokio::test]
    async fn refusing_sink_makes_sending_fail_then_recovers() {
        let sink = SmtpSink::start().await;
        sink.set_refusing(true);
        let message = || {
            Message::builder()
                .from("x@example.it".parse::<Mailbox>().unwrap())
                .to("d@example.it".parse().unwrap())
                .subject("s")
                .body("b".to_owned())
                .unwrap()
        };
        let err = transport(&sink).send(message()).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(sink.messages().is_empty());
        sink.set_refusing(false);
        transport(&sink).send(message()).await.unwrap();
        assert_eq!(sink.messages().len(), 1);
    }

    /// A raw session: replies to out-of-order and unknown commands, dot-unstuffing, RSET.
    #[tokio::test]
    async fn raw_smtp_dialogue() {
        let sink = SmtpSink::start().await;
        let stream = TcpStream::connect(("127.0.0.1", sink.port()))
            .await
            .unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        async fn reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                all.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return all;
                }
            }
        }
        assert!(reply(&mut r).await.starts_with("220 "));
        macro_rules! say {
            ($cmd:expr) => {{
                w.write_all($cmd.as_bytes()).await.unwrap();
                reply(&mut r).await
            }};
        }
        assert!(say!("MAIL FROM:<a@b.it>\r\n").starts_with("503"));
        assert!(say!("FOO\r\n").starts_with("500"));
        assert!(say!("STARTTLS\r\n").starts_with("502"));
        let ehlo = say!("EHLO client.example\r\n");
        assert!(ehlo.starts_with("250-"), "{ehlo}");
        assert!(ehlo.contains("8BITMIME") && ehlo.contains("SMTPUTF8") && ehlo.contains("SIZE"));
        assert!(!ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"));
        assert!(say!("RCPT TO:<x@y.it>\r\n").starts_with("503"));
        assert!(say!("DATA\r\n").starts_with("503"));
        assert!(say!("MAIL FROM:<a@b.it> BODY=8BITMIME SIZE=100\r\n").starts_with("250"));
        assert!(say!("MAIL FROM:<a@b.it>\r\n").starts_with("503"));
        assert!(say!("DATA\r\n").starts_with("503"));
        assert!(say!("RCPT TO:nobrackets\r\n").starts_with("501"));
        assert!(say!("RSET\r\n").starts_with("250"));
        assert!(say!("RCPT TO:<x@y.it>\r\n").starts_with("503"));
        assert!(say!("mail from:<>\r\n").starts_with("250"));
        assert!(say!("rcpt to:<x@y.it>\r\n").starts_with("250"));
        assert!(say!("NOOP\r\n").starts_with("250"));
        assert!(say!("DATA\r\n").starts_with("354"));
        let queued = say!("Subject: hi\r\n\r\n..leading dot\r\n.\r\n");
        assert!(queued.starts_with("250"), "{queued}");
        assert!(say!("QUIT\r\n").starts_with("221"));
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        let mail = sink.messages().pop().unwrap();
        assert_eq!(mail.from, "");
        assert_eq!(mail.to, vec!["x@y.it"]);
        assert_eq!(mail.data, "Subject: hi\r\n\r\n.leading dot\r\n");
        assert_eq!(mail.body_text(), ".leading dot");
    }

    /// The sink answers while the test's (current-thread) runtime is blocked, and stops on drop.
    #[tokio::test]
    async fn serves_while_the_caller_blocks_and_stops_on_drop() {
        use std::io::{BufRead as _, Write as _};
        let sink = SmtpSink::start().await;
        let stream = std::net::TcpStream::connect(("127.0.0.1", sink.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("220 "), "{line}");
        (&stream).write_all(b"HELO me\r\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("250 "), "{line}");

        let port = sink.port();
        drop(sink);
        // The open session is closed and the port no longer accepts.
        line.clear();
        assert_eq!(reader.read_line(&mut line).unwrap_or(0), 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "still listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn decoders() {
        assert_eq!(
            decode_words("=?utf-8?q?Citt=C3=A0_di?= =?UTF-8?B?Rm9ybMOs?= ok"),
            "Città diForlì ok"
        );
        assert_eq!(decode_words("plain =?x"), "plain =?x");
        assert_eq!(
            String::from_utf8(decode_qp(b"perch=C3=A9 =\r\ns=C3=AC", false)).unwrap(),
            "perché sì"
        );
    }
}

//! Outgoing mail: the PEC one-time codes, over SMTP with `lettre` (a maintained, async SMTP
//! client with STARTTLS/TLS on rustls).
//!
//! The server is named by a URL: `smtp://host:25` (plain, for a relay on the same network or a
//! test sink), `smtp://host:587?tls=required` (STARTTLS) or `smtps://host:465` (TLS), with
//! optional `user:password@`. The message is Italian first, English beside it, and states that the
//! code is valid for five minutes and that nobody from the comune will ask for it.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends PEC codes.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    municipality: String,
}

impl std::fmt::Debug for Mailer {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `smtp_url`, sending as `from` on behalf of `municipality`.
    pub fn new(smtp_url: &str, from: &str, municipality: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("mail.smtp_url: {e}"))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("mail.from {from:?}: {e}"))?;
        Ok(Mailer {
            transport,
            from,
            municipality: municipality.to_owned(),
        })
    }

    /// Mails `code` to `address` (the citizen's registered PEC), greeting `name`.
    pub async fn send_code(&self, address: &str, name: &str, code: &str) -> Result<(), String> {
        let to = address
            .parse::<Mailbox>()
            .map_err(|e| format!("registered address is not valid: {e}"))?;
        let body = format!(
            "Gentile {name},\n\n\
             il codice per identificarsi allo sportello virtuale del {m} è:\n\n    {code}\n\n\
             Il codice vale 5 minuti. Lo digiti sullo schermo del chiosco. Nessun operatore del \
             Comune le chiederà mai questo codice per telefono o per posta.\n\n\
             ---\n\n\
             Dear {name},\n\n\
             your identification code for the {m} virtual desk is {code}. It is valid for 5 \
             minutes; type it on the kiosk's screen. Nobody from the municipality will ever ask \
             you for it by phone or mail.\n",
            m = self.municipality
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "{}: codice di identificazione / identification code",
                self.municipality
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

//! The page a citizen sees when signing in fails or is cancelled: what happened, in plain words,
//! Italian first with English beside it, and a way back. Rendered by the server (the sign-in
//! callback is a navigation, not an API call), in the portal's look.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::web::oidc::SignInError;

/// Why signing in did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No provider is configured.
    NotConfigured,
    /// The citizen cancelled, or the provider refused.
    Cancelled,
    /// The provider or the store cannot be reached.
    Unavailable,
    /// The answer failed the checks.
    Rejected,
    /// The sign-in expired, was already used, or came back to another browser.
    Expired,
    /// A link without what it needs (no `state`, no `code`), or an unknown provider.
    BadLink,
}

impl From<&SignInError> for Failure {
    fn from(e: &SignInError) -> Self {
        match e {
            SignInError::Cancelled(_) => Failure::Cancelled,
            SignInError::Unavailable(_) => Failure::Unavailable,
            SignInError::Rejected(_) => Failure::Rejected,
            SignInError::UnknownProvider(_) => Failure::BadLink,
        }
    }
}

/// One message in each language: (title, explanation).
struct Text {
    it: (&'static str, &'static str),
    en: (&'static str, &'static str),
}

/// The catalogue of the failure page (one entry per [`Failure`]).
fn text(f: Failure) -> Text {
    match f {
        Failure::NotConfigured => Text {
            it: (
                "Accesso non disponibile",
                "L'accesso con SPID o CIE non è attivo su questo sito. Puoi chiedere i certificati \
                 allo sportello o a un chiosco del Comune.",
            ),
            en: (
                "Sign-in not available",
                "Signing in with SPID or CIE is not enabled on this site. You can ask for \
                 certificates at the office or at one of the comune's kiosks.",
            ),
        },
        Failure::Cancelled => Text {
            it: (
                "Accesso annullato",
                "L'accesso è stato annullato, da te o dal gestore della tua identità digitale. \
                 Non sei entrato e nessun dato è stato trasmesso.",
            ),
            en: (
                "Sign-in cancelled",
                "The sign-in was cancelled, by you or by your digital identity provider. You are \
                 not signed in and no data was sent.",
            ),
        },
        Failure::Unavailable => Text {
            it: (
                "Servizio momentaneamente non raggiungibile",
                "Il servizio di accesso non risponde. Riprova tra qualche minuto.",
            ),
            en: (
                "Service temporarily unreachable",
                "The sign-in service is not answering. Please try again in a few minutes.",
            ),
        },
        Failure::Rejected => Text {
            it: (
                "Non è stato possibile verificare l'accesso",
                "La risposta del gestore dell'identità non ha superato i controlli di sicurezza, \
                 quindi non sei entrato. Riprova dall'inizio; se succede ancora, contatta il \
                 Comune.",
            ),
            en: (
                "We could not verify the sign-in",
                "The identity provider's answer did not pass the security checks, so you are not \
                 signed in. Please start again; if it happens again, contact the comune.",
            ),
        },
        Failure::Expired => Text {
            it: (
                "Accesso scaduto",
                "Il collegamento di accesso è scaduto, è già stato usato o è stato aperto in un \
                 altro browser. Riprova dall'inizio.",
            ),
            en: (
                "Sign-in expired",
                "The sign-in link expired, was already used or was opened in another browser. \
                 Please start again.",
            ),
        },
        Failure::BadLink => Text {
            it: (
                "Collegamento non valido",
                "Il collegamento di accesso è incompleto o non valido. Riprova dall'inizio.",
            ),
            en: (
                "Invalid link",
                "The sign-in link is incomplete or not valid. Please start again.",
            ),
        },
    }
}

fn status(f: Failure) -> StatusCode {
    match f {
        Failure::NotConfigured | Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Cancelled | Failure::Rejected => StatusCode::UNAUTHORIZED,
        Failure::Expired | Failure::BadLink => StatusCode::BAD_REQUEST,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The failure page.
pub fn failure(f: Failure) -> Response {
    let t = text(f);
    let retry = !matches!(f, Failure::NotConfigured);
    let again = if retry {
        r#"<p><a class="button" href="/servizi/login">Riprova ad accedere <span lang="en">/ Try again</span></a></p>"#
    } else {
        ""
    };
    let html = format!(
        r#"<!doctype html>
<html lang="it">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_it} – Servizi online</title>
<link rel="stylesheet" href="/servizi/servizi.css">
</head>
<body>
<main id="main" class="failure" data-failure="{code:?}">
<h1>{title_it}</h1>
<p>{body_it}</p>
<h2 lang="en">{title_en}</h2>
<p lang="en">{body_en}</p>
{again}
<p><a href="/servizi/">Torna ai servizi online <span lang="en">/ Back to the online services</span></a></p>
</main>
</body>
</html>
"#,
        title_it = escape(t.it.0),
        body_it = escape(t.it.1),
        title_en = escape(t.en.0),
        body_en = escape(t.en.1),
        code = f,
    );
    (status(f), [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_speaks_both_languages_with_its_status() {
        for f in [
            Failure::NotConfigured,
            Failure::Cancelled,
            Failure::Unavailable,
            Failure::Rejected,
            Failure::Expired,
            Failure::BadLink,
        ] {
            let t = text(f);
            assert!(!t.it.0.is_empty() && !t.it.1.is_empty() && !t.en.1.is_empty());
            assert!(status(f).is_client_error() || status(f).is_server_error());
        }
        assert_eq!(
            Failure::from(&SignInError::Cancelled("access_denied".into())),
            Failure::Cancelled
        );
    }
}

//! Browser hardening on every response of both listeners: a strict Content-Security-Policy (one
//! per page, see [`policy_for`]), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, and `Strict-Transport-Security` when the server terminates TLS.
//!
//! The pages of `console-web/` load only their own files: no inline script or style, no `eval`,
//! no other origin. `'self'` in `connect-src` also covers `ws:`/`wss:` of the same host and port
//! (CSP Level 3), which is where the WebSocket goes.

use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The policy of every response that is not the kiosk's or the console's page: only this
/// origin, nothing framed, no plugins, no `<base>`, forms only to this origin. `data:` images are
/// the pages' empty favicon (`<link rel="icon" href="data:,">`).
pub const CSP_DEFAULT: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The kiosk's screen also talks to the kiosk agent on this machine's loopback
/// (`http://127.0.0.1:7480` by default, any port for `#agent=`; see `docs/kiosk-agent.md`).
/// CSP has no syntax for IPv6 literals, so `[::1]` cannot be allowed here.
pub const CSP_KIOSK: &str = "default-src 'self'; img-src 'self' data:; \
     connect-src 'self' http://127.0.0.1:* http://localhost:*; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console shows scans (`<img>`) and issued PDFs (`<iframe>`) from `blob:` URLs, because
/// both are fetched with the operator's bearer token.
pub const CSP_CONSOLE: &str = "default-src 'self'; img-src 'self' data: blob:; \
     frame-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The verification page compiles the QR reader it ships (`verify/vendor/`, ZXing-C++ as
/// WebAssembly) for browsers without `BarcodeDetector`: `'wasm-unsafe-eval'` allows WebAssembly
/// compilation only, never `eval` of script. Photos chosen by the user are read from `blob:`.
pub const CSP_VERIFY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// HSTS under TLS: one year; subdomains are left to the municipality's own policy.
pub const HSTS: &str = "max-age=31536000";

/// The Content-Security-Policy for a request path.
pub fn policy_for(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/kiosk") {
        CSP_KIOSK
    } else if under("/console") {
        CSP_CONSOLE
    } else if under("/verify") {
        CSP_VERIFY
    } else {
        CSP_DEFAULT
    }
}

/// Middleware (`from_fn_with_state(tls, security_headers)`): sets the headers on every response.
/// `tls` is whether the public listener terminates TLS (HSTS is then sent; browsers ignore it on
/// the plain-HTTP admin listener, RFC 6797 §8.1). A handler's own CSP is kept.
pub async fn security_headers(State(tls): State<bool>, request: Request, next: Next) -> Response {
    let policy = policy_for(request.uri().path());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(policy));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if tls {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_gets_its_policy() {
        assert_eq!(policy_for("/kiosk/"), CSP_KIOSK);
        assert_eq!(policy_for("/kiosk"), CSP_KIOSK);
        assert_eq!(policy_for("/kiosk/app.js"), CSP_KIOSK);
        assert_eq!(policy_for("/console/"), CSP_CONSOLE);
        assert_eq!(policy_for("/kioskx"), CSP_DEFAULT);
        assert_eq!(policy_for("/supervisor/"), CSP_DEFAULT);
        assert_eq!(policy_for("/api/v1/login"), CSP_DEFAULT);
        assert_eq!(policy_for("/verify/"), CSP_VERIFY);
        assert_eq!(policy_for("/verify/vendor/zxing_reader.wasm"), CSP_VERIFY);
        assert_eq!(policy_for("/api/v1/verify"), CSP_DEFAULT);
        for csp in [CSP_DEFAULT, CSP_KIOSK, CSP_CONSOLE, CSP_VERIFY] {
            for directive in [
                "default-src 'self'",
                "frame-ancestors 'none'",
                "object-src 'none'",
                "base-uri 'none'",
                "form-action 'self'",
            ] {
                assert!(csp.contains(directive), "{csp} lacks {directive}");
            }
            // Nothing unsafe but WebAssembly compilation on the verification page.
            let rest = csp.replace("'wasm-unsafe-eval'", "");
            assert!(!rest.contains("unsafe"), "{csp}");
            assert_eq!(csp.contains("wasm"), csp == CSP_VERIFY, "{csp}");
            assert!(HeaderValue::from_str(csp).is_ok());
        }
    }
}

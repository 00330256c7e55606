//! The web pages of `console-web/`, embedded in the binary so the run command needs no build step
//! and no files beside the executable. Each served folder is its own embed, so the browser tests
//! under `console-web/tests/` (and their `node_modules/`) never end up in the binary.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use crate::error::AppError;

/// `console-web/verify/`: the stamp-verification page.
#[derive(RustEmbed)]
#[folder = "../console-web/verify/"]
struct VerifyAssets;

/// `console-web/servizi/`: the citizens' portal.
#[derive(RustEmbed)]
#[folder = "../console-web/servizi/"]
struct ServiziAssets;

/// `console-web/lib/`: the ES modules shared by the pages (the protocol client).
#[derive(RustEmbed)]
#[folder = "../console-web/lib/"]
struct LibAssets;

/// `console-web/media-test/`: the media diagnostics page.
#[derive(RustEmbed)]
#[folder = "../console-web/media-test/"]
struct MediaTestAssets;

/// `console-web/kiosk/`: the kiosk's touch screen.
#[derive(RustEmbed)]
#[folder = "../console-web/kiosk/"]
struct KioskAssets;

/// `console-web/console/`: the operator's console.
#[derive(RustEmbed)]
#[folder = "../console-web/console/"]
struct ConsoleAssets;

/// `console-web/supervisor/`: the supervisor's wallboard.
#[derive(RustEmbed)]
#[folder = "../console-web/supervisor/"]
struct SupervisorAssets;

/// `GET /verify` → `/verify/`.
pub async fn verify_root() -> Redirect {
    Redirect::permanent("/verify/")
}

/// `GET /verify/` and `GET /verify/{*file}`.
pub async fn verify(file: Option<Path<String>>) -> Response {
    serve::<VerifyAssets>(file)
}

/// `GET /servizi` → `/servizi/`.
pub async fn servizi_root() -> Redirect {
    Redirect::permanent("/servizi/")
}

/// `GET /servizi/` and `GET /servizi/{*file}`: the citizens' portal (its sign-in, callback and
/// logout are the web channel's own, more specific routes).
pub async fn servizi(file: Option<Path<String>>) -> Response {
    serve::<ServiziAssets>(file)
}

/// `GET /lib/{*file}`: the shared ES modules.
pub async fn lib(file: Path<String>) -> Response {
    serve::<LibAssets>(Some(file))
}

/// `GET /media-test` → `/media-test/`.
pub async fn media_test_root() -> Redirect {
    Redirect::permanent("/media-test/")
}

/// `GET /media-test/` and `GET /media-test/{*file}`: the media diagnostics page.
pub async fn media_test(file: Option<Path<String>>) -> Response {
    serve::<MediaTestAssets>(file)
}

/// `GET /kiosk` → `/kiosk/`.
pub async fn kiosk_root() -> Redirect {
    Redirect::permanent("/kiosk/")
}

/// `GET /kiosk/` and `GET /kiosk/{*file}`: the kiosk's touch screen.
pub async fn kiosk(file: Option<Path<String>>) -> Response {
    serve::<KioskAssets>(file)
}

/// `GET /console` → `/console/`.
pub async fn console_root() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/` and `GET /console/{*file}`: the operator's console.
pub async fn console(file: Option<Path<String>>) -> Response {
    serve::<ConsoleAssets>(file)
}

/// `GET /supervisor` → `/supervisor/`.
pub async fn supervisor_root() -> Redirect {
    Redirect::permanent("/supervisor/")
}

/// `GET /supervisor/reports` → `/supervisor/reports/` (the reports page).
pub async fn supervisor_reports_root() -> Redirect {
    Redirect::permanent("/supervisor/reports/")
}

/// `GET /supervisor/` and `GET /supervisor/{*file}`: the supervisor's wallboard.
pub async fn supervisor(file: Option<Path<String>>) -> Response {
    serve::<SupervisorAssets>(file)
}

/// Serves `file` of the embedded folder `A` (`index.html` for a folder).
fn serve<A: RustEmbed>(file: Option<Path<String>>) -> Response {
    let path = file.map(|Path(f)| f).unwrap_or_default();
    let path = if path.ends_with('/') || path.is_empty() {
        format!("{path}index.html")
    } else {
        path
    };
    if path.split('/').any(|seg| seg == "..") {
        return AppError::not_found("no such page").into_response();
    }
    match A::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&mime) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // Pages change with the binary; the service worker keeps the verifier usable offline.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => AppError::not_found("no such page").into_response(),
    }
}

//! The web pages of `console-web/`, embedded in the binary so the run command needs no build step
//! and no files beside the executable.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::AppError;

#[derive(rust_embed::RustEmbed)]
#[folder = "../console-web/"]
struct Assets;

/// `GET /verify` → `/verify/`.
pub async fn verify_root() -> Redirect {
    Redirect::permanent("/verify/")
}

/// `GET /verify/` and `GET /verify/{*file}`.
pub async fn verify(file: Option<Path<String>>) -> Response {
    let file = file.map(|Path(f)| f).unwrap_or_default();
    serve(&format!("verify/{file}"))
}

fn serve(path: &str) -> Response {
    let path = if path.ends_with('/') || path.is_empty() {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    if path.split('/').any(|seg| seg == "..") {
        return AppError::not_found("no such page").into_response();
    }
    match Assets::get(&path) {
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

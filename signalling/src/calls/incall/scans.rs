//! Scans of identity documents over HTTP: the kiosk uploads (`POST /api/v1/calls/{call}/scans`)
//! while a document identification is pending, the call's operator downloads. An image is kept
//! only if it decodes whole within pixel and memory limits; it is stored in the shared state
//! (any node serves it), at most [`super::core::MAX_SCANS_PER_CALL`] per call, and deleted when
//! the call ends.

use protocol::incall::IdentityMethod;
use protocol::{ErrorCode, Role};
use queue::CallId;

use super::common::own_call;
use super::core::{is_party, Parties};
use super::store::Scan;
use crate::accounts::Principal;
use crate::calls::media::view;
use crate::calls::{call_id, Refusal, SessionCtx};
use crate::state::AppState;

/// The largest scan accepted, in bytes.
pub const MAX_SCAN_BYTES: usize = 10 * 1024 * 1024;

/// The largest scan side in pixels: an A4 page at 600 dpi is 4,961 × 7,016.
pub const MAX_SCAN_SIDE: u32 = 10_000;

/// Decodes a whole scan with pixel and memory limits: only an image that decodes completely is
/// kept (a PNG or JPEG header in front of other data, a truncated file or a 60000 × 60000
/// "image" is refused before its pixels are allocated). Returns its size.
pub fn decode_scan(bytes: &[u8], format: image::ImageFormat) -> Result<(u32, u32), String> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SCAN_SIDE);
    limits.max_image_height = Some(MAX_SCAN_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| format!("the scan is not a whole image: {e}"))?;
    Ok((decoded.width(), decoded.height()))
}

/// `POST /api/v1/calls/{call_id}/scans` by the call's kiosk, while a document identification is
/// pending: stores the image for the call once it decodes.
pub async fn upload_scan(
    state: &AppState,
    who: &Principal,
    raw_call: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<String, Refusal> {
    if who.role != Role::Kiosk {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only the call's kiosk uploads scans",
        ));
    }
    let ctx = SessionCtx {
        principal: who.clone(),
        socket: 0,
    };
    let call = own_call(state, &ctx, raw_call, Role::Kiosk).await?;
    let ct = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let sniffed = if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if body.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            "the scan must be a JPEG or PNG image",
        ));
    };
    if !ct.is_empty() && ct != sniffed {
        return Err(Refusal::new(
            ErrorCode::Invalid,
            format!("content type {ct} does not match the image ({sniffed})"),
        ));
    }
    if body.len() > MAX_SCAN_BYTES {
        return Err(Refusal::new(ErrorCode::Invalid, "the scan is over 10 MiB"));
    }
    let pending = state
        .incall
        .store
        .call(raw_call)
        .await?
        .and_then(|c| c.pending());
    if pending != Some(IdentityMethod::Document) {
        return Err(Refusal::new(
            ErrorCode::Conflict,
            "no document identification is pending: the operator asks for one first",
        ));
    }
    let image = body.to_vec();
    let format = if sniffed == "image/png" {
        image::ImageFormat::Png
    } else {
        image::ImageFormat::Jpeg
    };
    let (width, height) = tokio::task::spawn_blocking(move || decode_scan(&image, format))
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| Refusal::new(ErrorCode::Invalid, e))?;
    let scan_id = format!("scan-{}", uuid::Uuid::new_v4().simple());
    let scan = Scan {
        content_type: sniffed.into(),
        bytes: body.to_vec(),
    };
    state
        .incall
        .store
        .add_scan(raw_call, &call.kiosk, &scan_id, &scan)
        .await?;
    tracing::info!(call = raw_call, scan = %scan_id, bytes = body.len(), width, height, "scan uploaded");
    Ok(scan_id)
}

/// `GET /api/v1/calls/{call_id}/scans/{scan_id}` by the call's operator.
pub async fn get_scan(
    state: &AppState,
    who: &Principal,
    raw_call: &str,
    scan_id: &str,
) -> Result<Scan, Refusal> {
    let id: CallId = call_id(raw_call)?;
    let call = view(state, &id).await?;
    let allowed = who.role == Role::Operator
        && is_party(
            who,
            &Parties {
                call: raw_call,
                kiosk: &call.kiosk,
                operator: call.operator.as_deref(),
                in_conversation: call.in_call,
            },
        );
    if !allowed {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only the call's operator sees its scans",
        ));
    }
    state
        .incall
        .store
        .scan(raw_call, scan_id)
        .await?
        .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no scan {scan_id}")))
}

//! Finding the stamp in a file: a PDF we issued, a scan or photo (PNG, JPEG), a PDF of a scan, or text.
//!
//! A PDF from this crate carries the stamp text in its Info dictionary (`/SportelloStamp`), so it is read
//! without rendering. Any other PDF (a scanned paper) is rendered at 300 dpi with poppler's `pdftoppm`
//! and the pages are searched for a QR code. Images are decoded with `rqrr`, a pure-Rust QR reader.

use std::path::Path;
use std::process::Command;

use time::OffsetDateTime;

use crate::error::CertError;
use crate::signer::TrustList;
use crate::stamp::{verify_text, VerifiedStamp, PREFIX};

/// Largest input file accepted (a scanned multi-page PDF fits well within it).
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// Reads a stamp from a file and verifies it (for `sportello verify <file>`).
pub fn verify_file(
    path: &Path,
    trust_list: &TrustList,
    now: OffsetDateTime,
) -> Result<VerifiedStamp, CertError> {
    let stamp = extract_stamp(path)?;
    verify_text(&stamp, trust_list, now)
}

/// Returns the stamp text found in the file at `path`.
pub fn extract_stamp(path: &Path) -> Result<String, CertError> {
    let meta = std::fs::metadata(path).map_err(|e| CertError::io(path, e))?;
    if meta.len() > MAX_FILE {
        return Err(CertError::NoStampFound("file troppo grande".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| CertError::io(path, e))?;
    if bytes.starts_with(b"%PDF") {
        if let Some(s) = stamp_from_pdf_info(&bytes) {
            return Ok(s);
        }
        return stamp_from_rendered_pdf(path);
    }
    if bytes.starts_with(b"\x89PNG") || bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_qr_image(&bytes);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| CertError::NoStampFound("formato non riconosciuto".into()))?;
    let trimmed = text.trim();
    if trimmed.starts_with(PREFIX) {
        Ok(trimmed.to_owned())
    } else {
        Err(CertError::NoStampFound(format!(
            "il testo non inizia con {PREFIX}"
        )))
    }
}

/// Reads `/SportelloStamp (…)` from the (uncompressed) Info dictionary.
fn stamp_from_pdf_info(bytes: &[u8]) -> Option<String> {
    let key = b"/SportelloStamp (";
    let start = bytes.windows(key.len()).rposition(|w| w == key)? + key.len();
    let len = bytes[start..].iter().position(|&b| b == b')')?;
    let s = std::str::from_utf8(&bytes[start..start + len]).ok()?;
    s.starts_with(PREFIX).then(|| s.to_owned())
}

/// Resolutions a scanned PDF is rendered at, in turn, until a page yields the stamp: rqrr misses
/// a code now and then at one module size and reads it at another (as a phone moves closer).
const RENDER_DPI: [&str; 3] = ["300", "200", "400"];

fn stamp_from_rendered_pdf(path: &Path) -> Result<String, CertError> {
    let dir = std::env::temp_dir().join(format!("sportello-verify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| CertError::io(&dir, e))?;
    let result = (|| {
        for dpi in RENDER_DPI {
            let prefix = dir.join(format!("page-{dpi}"));
            let out = Command::new("pdftoppm")
                .args(["-r", dpi, "-gray", "-png"])
                .arg(path)
                .arg(&prefix)
                .output()
                .map_err(|e| {
                    CertError::NoStampFound(format!(
                        "il PDF non contiene il testo del contrassegno e pdftoppm (pacchetto poppler-utils) non è eseguibile: {e}"
                    ))
                })?;
            if !out.status.success() {
                return Err(CertError::NoStampFound(format!(
                    "pdftoppm non ha potuto leggere il PDF: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let mut pages: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| CertError::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("page-{dpi}")))
                })
                .collect();
            pages.sort();
            for page in pages.iter().rev() {
                let bytes = std::fs::read(page).map_err(|e| CertError::io(page, e))?;
                if let Ok(s) = decode_qr_image(&bytes) {
                    return Ok(s);
                }
            }
        }
        Err(CertError::NoStampFound(
            "nessun codice QR leggibile nelle pagine del PDF".into(),
        ))
    })();
    // Best effort: a leftover temporary folder is harmless.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Decodes the first QR code holding a stamp from PNG or JPEG bytes.
///
/// rqrr misses some codes at some sizes (module edges blurred by anti-aliasing, finder patterns found
/// at the wrong scale), depending on the content. The image is therefore tried at its own size and then
/// at a few smaller scales, which is what a phone camera does by moving closer or farther.
pub fn decode_qr_image(bytes: &[u8]) -> Result<String, CertError> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| CertError::NoStampFound(format!("immagine non leggibile: {e}")))?
        .to_luma8();
    for scale in [1.0f32, 0.5, 0.75, 0.35, 0.6] {
        let scaled;
        let view = if scale == 1.0 {
            &img
        } else {
            let w = ((img.width() as f32) * scale).round().max(21.0) as u32;
            let h = ((img.height() as f32) * scale).round().max(21.0) as u32;
            scaled = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            &scaled
        };
        if let Some(content) = decode_grey(view) {
            return Ok(content);
        }
    }
    Err(CertError::NoStampFound(
        "nessun codice QR con un contrassegno".into(),
    ))
}

fn decode_grey(img: &image::GrayImage) -> Option<String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        img.get_pixel(x as u32, y as u32).0[0]
    });
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok())
        .map(|(_, content)| content)
        .find(|content| content.starts_with(PREFIX))
}

//! The document scanner: `scanimage` (SANE) writing the image to its standard output, or a fixed
//! image file for tests and demos. The image goes to the server as it is (PNG or JPEG).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::config::ScanFormat;

/// The largest scan the server accepts.
pub const MAX_SCAN_BYTES: usize = 10 * 1024 * 1024;

/// How long one scan may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(180);

/// Where scans come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanSource {
    /// `scanimage -d <device> --format=<format> --resolution <dpi>`.
    Sane {
        /// The SANE device name.
        device: String,
        /// The image format.
        format: ScanFormat,
        /// Resolution in dpi.
        resolution: u32,
    },
    /// An image file read instead of scanning.
    File(PathBuf),
}

/// A scanned image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The image.
    pub bytes: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub content_type: &'static str,
}

/// The image's type from its first bytes (`image/png`, `image/jpeg`).
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else {
        None
    }
}

impl ScanSource {
    /// A short description for logs (`sane:<device>` or `file:<path>`).
    pub fn describe(&self) -> String {
        match self {
            ScanSource::Sane { device, .. } => format!("sane:{device}"),
            ScanSource::File(path) => format!("file:{}", path.display()),
        }
    }

    /// Scans (or reads the file) and checks that the result is a PNG or JPEG image of at most
    /// [`MAX_SCAN_BYTES`].
    pub async fn scan(&self) -> Result<Scan, String> {
        let bytes = match self {
            ScanSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read scan_file {}: {e}", path.display()))?,
            ScanSource::Sane {
                device,
                format,
                resolution,
            } => scan_with_sane(device, *format, *resolution).await?,
        };
        let content_type = sniff_image(&bytes)
            .ok_or_else(|| format!("{}: not a PNG or JPEG image", self.describe()))?;
        if bytes.len() > MAX_SCAN_BYTES {
            return Err(format!(
                "the scan is {} bytes, over the server's limit of {MAX_SCAN_BYTES}; use \
                 scan_format = \"jpeg\" or a lower scan_resolution",
                bytes.len()
            ));
        }
        Ok(Scan {
            bytes,
            content_type,
        })
    }
}

async fn scan_with_sane(
    device: &str,
    format: ScanFormat,
    resolution: u32,
) -> Result<Vec<u8>, String> {
    let mut command = Command::new("scanimage");
    command
        .arg("-d")
        .arg(device)
        .arg(format!("--format={}", format.as_str()))
        .arg("--resolution")
        .arg(resolution.to_string())
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCAN_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("scanimage -d {device}: no image within {SCAN_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run scanimage: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .unwrap_or("no error output")
            .to_owned();
        return Err(format!(
            "scanimage -d {device} failed ({}): {message}",
            output.status
        ));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
    }
}

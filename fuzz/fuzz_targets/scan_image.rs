//! Scan images as the server decodes them: `signalling::calls::incall::decode_scan`, PNG when the
//! first byte is PNG's (0x89), JPEG otherwise. Bad images are errors, never panics, and the size
//! limits hold.
#![no_main]

use signalling::calls::incall::{decode_scan, MAX_SCAN_SIDE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let format = match data.first() {
        Some(0x89) => image::ImageFormat::Png,
        _ => image::ImageFormat::Jpeg,
    };
    if let Ok((width, height)) = decode_scan(data, format) {
        assert!(width <= MAX_SCAN_SIDE && height <= MAX_SCAN_SIDE);
    }
});

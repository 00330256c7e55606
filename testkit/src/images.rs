//! The test images: a scanned identity document, the smallest valid PNG, and the malformed images
//! a scan upload must refuse (a PNG whose header promises a huge picture, a truncated JPEG).

use std::path::{Path, PathBuf};

/// A PNG of `img`.
fn encode_png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("a PNG encodes into memory");
    out.into_inner()
}

/// The 320×200 gradient standing in for a scanned identity document.
fn scan() -> image::RgbImage {
    image::RgbImage::from_fn(320, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    })
}

/// A PNG standing in for a scanned identity document (320×200).
pub fn scan_png() -> Vec<u8> {
    encode_png(&scan())
}

/// [`scan_png`] written to `dir/documento.png` (the agent's `scan_file`); its path.
pub fn scan_file(dir: &Path) -> PathBuf {
    let path = dir.join("documento.png");
    std::fs::write(&path, scan_png()).expect("the scan file is written");
    path
}

/// A valid 1×1 PNG.
pub fn png_1x1() -> Vec<u8> {
    encode_png(&image::RgbImage::new(1, 1))
}

/// The start of a JPEG (SOI and an APP0 marker) padded with zeros to 20 bytes: not a picture.
pub fn jpeg_truncated() -> Vec<u8> {
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
    jpeg.resize(20, 0);
    jpeg
}

/// A PNG whose header claims `width` × `height` pixels, with one tiny compressed row: decoding
/// it would allocate the whole image.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib of nothing: a stored empty block.
    chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A phone photo of a printed page, made from the page rendered as an image (`page`, e.g. a PNG
/// from `pdftoppm -r 150`): turned by `degrees` around its centre (bilinear), under light that
/// falls off towards one corner, softened by a 3×3 blur, with a little deterministic noise, and
/// encoded as a JPEG of quality 80. What a reader of printed certificates really gets, without
/// a camera.
pub fn photo_of_page(page: &[u8], degrees: f32) -> Vec<u8> {
    let src = image::load_from_memory(page)
        .expect("the page image decodes")
        .to_luma8();
    let (w, h) = src.dimensions();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let sample = |x: f32, y: f32| -> f32 {
        if x < 0.0 || y < 0.0 || x >= (w - 1) as f32 || y >= (h - 1) as f32 {
            return 90.0; // the table under the paper
        }
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |x, y| f32::from(src.get_pixel(x, y).0[0]);
        let top = p(x0, y0) * (1.0 - fx) + p(x0 + 1, y0) * fx;
        let bottom = p(x0, y0 + 1) * (1.0 - fx) + p(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut seed: u32 = 0x9e37_79b9;
    let turned = image::GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let v = sample(cx + dx * cos + dy * sin, cy - dx * sin + dy * cos);
        // Light: full at the top left, 70% at the far corner.
        let light = 1.0 - 0.3 * (x as f32 / w as f32 + y as f32 / h as f32) / 2.0;
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 17) as f32 - 8.0;
        image::Luma([(v * light + noise).clamp(0.0, 255.0) as u8])
    });
    let blurred = image::GrayImage::from_fn(w, h, |x, y| {
        let mut sum = 0u32;
        let mut n = 0u32;
        for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                sum += u32::from(turned.get_pixel(xx, yy).0[0]);
                n += 1;
            }
        }
        image::Luma([(sum / n) as u8])
    });
    let rgb = image::DynamicImage::ImageLuma8(blurred).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&rgb)
        .expect("a JPEG encodes into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_valid_images_decode_and_the_others_do_not() {
        let scan = image::load_from_memory(&scan_png()).unwrap();
        assert_eq!((scan.width(), scan.height()), (320, 200));
        let one = image::load_from_memory(&png_1x1()).unwrap();
        assert_eq!((one.width(), one.height()), (1, 1));
        assert!(image::load_from_memory(&jpeg_truncated()).is_err());
        let huge = png_header_only(60_000, 60_000);
        let reader = image::ImageReader::new(std::io::Cursor::new(&huge))
            .with_guessed_format()
            .unwrap();
        assert_eq!(reader.into_dimensions().unwrap(), (60_000, 60_000));
    }
}

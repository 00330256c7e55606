//! A minimal sRGB ICC profile (version 2.1, display class, matrix/TRC), built in code.
//!
//! PDF/A needs an OutputIntent with an embedded ICC profile. Building the standard sRGB matrix profile
//! here (D50-adapted primaries and the sRGB tone curve sampled at 1024 points) avoids shipping a binary
//! profile file whose licence would have to be tracked.

/// D50 illuminant, the PCS white.
const D50: [f64; 3] = [0.9642, 1.0, 0.8249];
/// sRGB primaries adapted to D50 (Bradford), as in the reference sRGB profiles.
const RED: [f64; 3] = [0.4361, 0.2225, 0.0139];
const GREEN: [f64; 3] = [0.3851, 0.7169, 0.0971];
const BLUE: [f64; 3] = [0.1431, 0.0606, 0.7141];

fn s15f16(v: f64) -> [u8; 4] {
    ((v * 65536.0).round() as i32).to_be_bytes()
}

fn xyz_tag(v: [f64; 3]) -> Vec<u8> {
    let mut t = b"XYZ \0\0\0\0".to_vec();
    for c in v {
        t.extend(s15f16(c));
    }
    t
}

fn text_tag(s: &str) -> Vec<u8> {
    let mut t = b"text\0\0\0\0".to_vec();
    t.extend(s.as_bytes());
    t.push(0);
    t
}

fn desc_tag(s: &str) -> Vec<u8> {
    let mut t = b"desc\0\0\0\0".to_vec();
    t.extend(((s.len() + 1) as u32).to_be_bytes());
    t.extend(s.as_bytes());
    t.push(0);
    // Unicode language and count, ScriptCode code and count, then the 67-byte ScriptCode field.
    t.extend([0u8; 4]);
    t.extend([0u8; 4]);
    t.extend([0u8; 2]);
    t.push(0);
    t.extend([0u8; 67]);
    t
}

fn curve_tag() -> Vec<u8> {
    const N: usize = 1024;
    let mut t = b"curv\0\0\0\0".to_vec();
    t.extend((N as u32).to_be_bytes());
    for i in 0..N {
        let v = i as f64 / (N - 1) as f64;
        let lin = if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        };
        t.extend(((lin * 65535.0).round() as u16).to_be_bytes());
    }
    t
}

/// The profile's bytes.
pub fn srgb_profile() -> Vec<u8> {
    let curve = curve_tag();
    let tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
        (b"desc", desc_tag("sRGB IEC61966-2.1")),
        (b"cprt", text_tag("No copyright, use freely")),
        (b"wtpt", xyz_tag(D50)),
        (b"rXYZ", xyz_tag(RED)),
        (b"gXYZ", xyz_tag(GREEN)),
        (b"bXYZ", xyz_tag(BLUE)),
        (b"rTRC", curve.clone()),
        (b"gTRC", curve.clone()),
        (b"bTRC", curve),
    ];
    let table_len = 4 + 12 * tags.len();
    let mut offset = 128 + table_len;
    let mut table = (tags.len() as u32).to_be_bytes().to_vec();
    let mut data = Vec::new();
    for (sig, bytes) in &tags {
        table.extend(*sig);
        table.extend((offset as u32).to_be_bytes());
        table.extend((bytes.len() as u32).to_be_bytes());
        data.extend(bytes);
        while data.len() % 4 != 0 {
            data.push(0);
        }
        offset = 128 + table_len + data.len();
    }
    let size = 128 + table_len + data.len();
    let mut header = Vec::with_capacity(128);
    header.extend((size as u32).to_be_bytes());
    header.extend([0u8; 4]); // preferred CMM
    header.extend([0x02, 0x10, 0x00, 0x00]); // version 2.1
    header.extend(b"mntr");
    header.extend(b"RGB ");
    header.extend(b"XYZ ");
    for v in [2024u16, 1, 1, 0, 0, 0] {
        header.extend(v.to_be_bytes());
    }
    header.extend(b"acsp");
    header.extend([0u8; 4]); // platform
    header.extend([0u8; 4]); // flags
    header.extend([0u8; 4]); // manufacturer
    header.extend([0u8; 4]); // model
    header.extend([0u8; 8]); // attributes
    header.extend([0u8; 4]); // rendering intent: perceptual
    for c in D50 {
        header.extend(s15f16(c));
    }
    header.extend([0u8; 4]); // creator
    header.resize(128, 0);
    let mut out = header;
    out.extend(table);
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_consistent() {
        let p = super::srgb_profile();
        assert_eq!(
            u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
            p.len()
        );
        assert_eq!(&p[36..40], b"acsp");
        assert_eq!(&p[16..20], b"RGB ");
    }
}

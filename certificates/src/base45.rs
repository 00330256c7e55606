//! Base45 (RFC 9285), the QR-friendly text encoding used by the stamp.
//!
//! Written here rather than taken from a crate because it is twenty lines and the browser page carries
//! the same algorithm; both must agree byte for byte.

use crate::error::CertError;

const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Encodes bytes as Base45 text.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3 / 2 + 2);
    for chunk in data.chunks(2) {
        if let [a, b] = *chunk {
            let mut n = u32::from(a) * 256 + u32::from(b);
            for _ in 0..3 {
                out.push(ALPHABET[(n % 45) as usize] as char);
                n /= 45;
            }
        } else {
            let mut n = u32::from(chunk[0]);
            for _ in 0..2 {
                out.push(ALPHABET[(n % 45) as usize] as char);
                n /= 45;
            }
        }
    }
    out
}

/// Decodes Base45 text; any character outside the alphabet or any out-of-range group is an error.
pub fn decode(text: &str) -> Result<Vec<u8>, CertError> {
    let values: Vec<u32> = text
        .bytes()
        .map(|c| {
            ALPHABET
                .iter()
                .position(|&a| a == c)
                .map(|p| p as u32)
                .ok_or_else(|| CertError::StampFormat("carattere non Base45".into()))
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(values.len() * 2 / 3 + 1);
    for group in values.chunks(3) {
        match *group {
            [c, d, e] => {
                let n = c + d * 45 + e * 45 * 45;
                if n > 0xFFFF {
                    return Err(CertError::StampFormat(
                        "gruppo Base45 fuori intervallo".into(),
                    ));
                }
                out.push((n >> 8) as u8);
                out.push((n & 0xFF) as u8);
            }
            [c, d] => {
                let n = c + d * 45;
                if n > 0xFF {
                    return Err(CertError::StampFormat(
                        "gruppo Base45 fuori intervallo".into(),
                    ));
                }
                out.push(n as u8);
            }
            _ => return Err(CertError::StampFormat("lunghezza Base45 non valida".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(decode("QED8WEX0").unwrap(), b"ietf!");
        assert!(decode("GGW").is_err());
        assert!(decode("a").is_err());
    }
}

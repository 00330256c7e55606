//! Demultiplexing one UDP port (and one TCP port) between connections and forwarding loops.
//!
//! The server chooses every connection's ICE username fragment, and its first two hex digits name
//! the forwarding loop that owns the connection. The first packet from a new address is a STUN
//! Binding request whose USERNAME is `<our ufrag>:<their ufrag>`, so the reader can route it
//! without any shared table; once the connection's ICE agent has answered a valid check from that
//! address, the loop publishes `address → loop` for the fast path. Packets from unknown addresses
//! that are not STUN for a known ufrag are dropped.

use rand::Rng;

/// STUN Binding request message type.
const BINDING_REQUEST: u16 = 0x0001;
/// STUN magic cookie (RFC 5389).
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// USERNAME attribute type.
const ATTR_USERNAME: u16 = 0x0006;

/// Is this datagram a STUN message (RFC 7983 demultiplexing: first byte 0..=3 and the cookie)?
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] < 4
        && u32::from_be_bytes([data[4], data[5], data[6], data[7]]) == MAGIC_COOKIE
}

/// Is this datagram a DTLS record (RFC 7983: first byte 20..=63)?
pub fn is_dtls(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (20..=63).contains(b))
}

/// Our ufrag from a STUN Binding request's USERNAME (`<ours>:<theirs>`), if the packet is one.
pub fn binding_request_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let kind = u16::from_be_bytes([data[0], data[1]]);
    if kind != BINDING_REQUEST {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// A fresh ufrag owned by `loop_index`: two hex digits, then random letters and digits.
/// ICE needs at least 24 bits of randomness in the ufrag; this has about 60.
pub fn new_ufrag(loop_index: usize) -> String {
    format!("{:02x}{}", loop_index & 0xff, random_token(10))
}

/// A fresh ICE password (128 bits or more, RFC 8445 §5.3 asks for at least 128).
pub fn new_pwd() -> String {
    random_token(24)
}

fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The loop that owns a ufrag made by [`new_ufrag`].
pub fn loop_of_ufrag(ufrag: &str) -> Option<usize> {
    let hex = ufrag.get(..2)?;
    usize::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, so the walk has to skip one.
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn the_ufrag_comes_from_the_username() {
        assert_eq!(binding_request_ufrag(&binding("03abc:xyz")), Some("03abc"));
        assert_eq!(binding_request_ufrag(&binding(":xyz")), None);
    }

    #[test]
    fn non_stun_and_truncated_packets_have_no_ufrag() {
        assert_eq!(binding_request_ufrag(&[0x80; 40]), None, "RTP");
        assert_eq!(binding_request_ufrag(&[22; 40]), None, "DTLS");
        let mut short = binding("03abc:xyz");
        short.truncate(30);
        assert_eq!(binding_request_ufrag(&short), None);
        let mut response = binding("03abc:xyz");
        response[1] = 0x01;
        response[0] = 0x01; // 0x0101, a Binding success response
        assert_eq!(binding_request_ufrag(&response), None);
    }

    #[test]
    fn dtls_is_told_apart_from_stun_and_rtp() {
        assert!(is_dtls(&[22, 0xfe, 0xfd]), "a handshake record");
        assert!(is_dtls(&[20]) && is_dtls(&[63]));
        assert!(!is_dtls(&binding("03abc:xyz")), "STUN");
        assert!(!is_dtls(&[0x80; 12]), "RTP");
        assert!(!is_dtls(&[64]) && !is_dtls(&[19]) && !is_dtls(&[]));
    }

    #[test]
    fn ufrags_name_their_loop() {
        for i in [0, 1, 15, 200] {
            let u = new_ufrag(i);
            assert_eq!(loop_of_ufrag(&u), Some(i));
            assert_eq!(u.len(), 12);
        }
        assert_ne!(new_pwd(), new_pwd());
        assert_eq!(loop_of_ufrag("zz"), None);
    }
}

//! The client frame parser, `protocol::parse_client_frame`: any text a socket may send. It must
//! return a typed request or an `invalid` error, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err((Some(id), _)) = protocol::parse_client_frame(text) {
        // An id read back from a refused frame is echoed in the error: it came from the text.
        assert!(text.contains(id.as_str()) || id.is_empty() || text.contains('\\'));
    }
});

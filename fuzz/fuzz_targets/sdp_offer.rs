//! SDP offers as the SFU reads them: `sfu::engine::Engine::offer`, the function that takes the
//! client's untrusted SDP (rtc's parse and unmarshal, the section count check, then the remote
//! description and the answer). One engine is kept across inputs, and each offer's call is left
//! after it, as signalling does.
#![no_main]

use std::cell::RefCell;
use std::time::{Duration, Instant};

use sfu::engine::{Engine, EngineConfig};
use sfu::{MediaRole, Participant};

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(EngineConfig {
        loop_index: 0,
        udp: Some("127.0.0.1:40000".parse().expect("address")),
        tcp: Some("127.0.0.1:40000".parse().expect("address")),
        grace: Duration::from_secs(10),
    }));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    ENGINE.with(|engine| {
        let mut engine = engine.borrow_mut();
        let who = Participant {
            principal: "kiosk:fuzz".into(),
            role: MediaRole::Kiosk,
        };
        let now = Instant::now();
        if engine
            .offer(now, "fuzz-call", who, sdp.to_owned(), false)
            .is_ok()
        {
            engine.handle_timeout(now);
        }
        engine.leave("fuzz-call", None);
        engine.drain_transmits().for_each(drop);
        engine.drain_learned().for_each(drop);
        engine.drain_events().for_each(drop);
        assert_eq!(engine.peer_count(), 0, "a left call keeps no connection");
    });
});

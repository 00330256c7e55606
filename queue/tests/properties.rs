//! Property tests of the pure core: random command sequences on a fake clock keep the invariants, an
//! error never changes the state, and every call that leaves the queue ends exactly once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use queue::{
    CallId, Command, Effect, KioskId, Language, NewCall, NodeId, OperatorId, OperatorLogin,
    Presence, QueueConfig, Service, TenantState, Time, TransferTarget,
};

fn op(i: u8) -> OperatorId {
    OperatorId::new(format!("op{}", i % 4)).unwrap()
}

fn call(i: u8) -> CallId {
    CallId::new(format!("c{}", i % 24)).unwrap()
}

fn kiosk(i: u8) -> KioskId {
    KioskId::new(format!("k{}", i % 24)).unwrap()
}

fn service(i: u8) -> Service {
    Service::new(["anagrafe", "stato_civile", "tributi"][usize::from(i % 3)]).unwrap()
}

fn command(kind: u8, a: u8, b: u8) -> Command {
    match kind % 14 {
        0..=2 => Command::Enqueue(NewCall {
            call_id: call(a),
            kiosk_id: kiosk(a),
            kiosk_node: NodeId::new(format!("n{}", b % 2)).unwrap(),
            service: service(b),
            language: Language::new(if b % 5 == 0 { "de" } else { "it" }).unwrap(),
            priority: b % 10,
        }),
        3 => Command::Cancel {
            kiosk_id: kiosk(a),
            call_id: call(a),
        },
        4 => {
            let mut skills = BTreeMap::new();
            skills.insert(service(b), 1 + b % 10);
            skills.insert(service(b.wrapping_add(1)), 5);
            Command::OperatorOnline(OperatorLogin {
                operator_id: op(a),
                skills,
                languages: vec![Language::new("it").unwrap(), Language::new("de").unwrap()],
                capacity: 1 + b % 3,
                node: NodeId::new(format!("n{}", a % 2)).unwrap(),
                presence: Presence::Available,
            })
        }
        5 => Command::SetPresence {
            operator_id: op(a),
            presence: match b % 3 {
                0 => Presence::Available,
                1 => Presence::Paused("break".into()),
                _ => Presence::Offline,
            },
        },
        6 | 7 => Command::Accept {
            operator_id: op(a),
            call_id: call(b),
        },
        8 => Command::Reject {
            operator_id: op(a),
            call_id: call(b),
        },
        9 => Command::End {
            operator_id: op(a),
            call_id: call(b),
        },
        10 => Command::WrapupDone {
            operator_id: op(a),
            call_id: call(b),
        },
        11 => Command::Transfer {
            operator_id: op(a),
            call_id: call(b),
            target: if b % 2 == 0 {
                TransferTarget::Service(service(b))
            } else {
                TransferTarget::Operator(op(b))
            },
        },
        12 => Command::OperatorLost {
            operator_id: op(a),
            node: NodeId::new(format!("n{}", b % 2)).unwrap(),
        },
        _ => Command::Heartbeat {
            node: NodeId::new(format!("n{}", a % 2)).unwrap(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(steps in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 0u16..20_000), 1..150)) {
        let cfg = QueueConfig {
            offer_lease: Duration::from_secs(5),
            wrapup: Duration::from_secs(3),
            node_lease: Duration::from_secs(20),
            resume_grace: Duration::from_secs(10),
            aging_step: Some(Duration::from_secs(30)),
            ..QueueConfig::default()
        };
        let mut s = TenantState::default();
        let mut now = Time::from_secs(1_700_000_000);
        let mut ends: HashMap<CallId, u32> = HashMap::new();
        let mut entered: HashMap<CallId, u32> = HashMap::new();
        for (kind, a, b, dt) in steps {
            now = now.plus(Duration::from_millis(u64::from(dt)));
            let before = s.clone();
            let cmd = command(kind, a, b);
            match s.apply(&cfg, now, cmd.clone()) {
                Ok(fx) => {
                    // A new call shows as an `offered` metric; a retried enqueue of a live call does not.
                    if let Command::Enqueue(c) = &cmd {
                        if fx.iter().any(|e| matches!(e, Effect::Metric(queue::MetricEvent::Offered { .. }))) {
                            *entered.entry(c.call_id.clone()).or_default() += 1;
                        }
                    }
                    for e in fx {
                        if let Effect::CallEnded { call_id, .. } = e {
                            *ends.entry(call_id).or_default() += 1;
                        }
                    }
                }
                Err(e) => prop_assert_eq!(&before, &s, "error {} changed the state", e),
            }
            s.take_dirty();
            if let Err(e) = s.check_invariants() {
                prop_assert!(false, "after {:?}: {}", cmd, e);
            }
        }
        // A call id may be reused after its call ended; each life ends at most once and, if it left the
        // queue, exactly once.
        for (id, n) in &entered {
            let e = ends.get(id).copied().unwrap_or(0);
            let still = u32::from(s.calls.contains_key(id));
            prop_assert!(e <= *n && *n - e <= 1, "{} entered {} times, ended {} times", id, n, e);
            if still == 0 {
                // Ended, or left through wrap-up (which follows an end) — either way it ended.
                prop_assert_eq!(e, *n, "{} left the queue without ending", id);
            }
        }
    }
}

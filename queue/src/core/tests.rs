//! The call state machine, tested exactly: commands in, effects and state out.

use super::*;
use crate::model::{KioskId, NewCall, NodeId, OperatorLogin};

fn cfg() -> QueueConfig {
    QueueConfig {
        default_aht: Duration::from_secs(120),
        // A node lease longer than the scenario, so no step finds the node dead.
        node_lease: Duration::from_secs(3600),
        ..QueueConfig::default()
    }
}

fn run(st: &mut TenantState, s: u64, cmd: Command) -> Vec<Effect> {
    st.apply(&cfg(), Time::from_secs(s), cmd).unwrap()
}

fn online(st: &mut TenantState, s: u64, op: &str) {
    let login = OperatorLogin {
        operator_id: OperatorId::new(op).unwrap(),
        skills: [(Service::new("s").unwrap(), 5)].into(),
        languages: vec![Language::new("it").unwrap()],
        capacity: 1,
        node: NodeId::new("n1").unwrap(),
        presence: Presence::Available,
    };
    run(st, s, Command::OperatorOnline(login));
}

fn enqueue(st: &mut TenantState, s: u64, id: &str) -> Vec<Effect> {
    let call = NewCall {
        call_id: CallId::new(id).unwrap(),
        kiosk_id: KioskId::new(id).unwrap(),
        kiosk_node: NodeId::new("n1").unwrap(),
        service: Service::new("s").unwrap(),
        language: Language::new("it").unwrap(),
        priority: 0,
    };
    run(st, s, Command::Enqueue(call))
}

fn op_cmd(st: &mut TenantState, s: u64, op: &str, id: &str, end: bool) {
    let (operator_id, call_id) = (OperatorId::new(op).unwrap(), CallId::new(id).unwrap());
    let cmd = if end {
        Command::End {
            operator_id,
            call_id,
        }
    } else {
        Command::Accept {
            operator_id,
            call_id,
        }
    };
    run(st, s, cmd);
}

/// The estimates (whole seconds) in a batch's queue updates, by call.
fn told(fx: &[Effect]) -> Vec<(String, Option<u64>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::QueueUpdate {
                call_id,
                estimated_wait,
                ..
            } => Some((
                call_id.as_str().to_string(),
                estimated_wait.map(|d| d.as_secs()),
            )),
            _ => None,
        })
        .collect()
}

fn place(
    st: &mut TenantState,
    s: u64,
    node: &str,
    replacing: Option<&str>,
) -> Result<Vec<Effect>, Error> {
    st.apply(
        &cfg(),
        Time::from_secs(s),
        Command::PlaceMedia {
            call_id: CallId::new("c1").unwrap(),
            node: node.into(),
            replacing: replacing.map(str::to_owned),
            reason: if replacing.is_some() { "node_lost" } else { "" }.into(),
        },
    )
}

#[test]
fn media_is_placed_once_and_moved_only_from_where_it_is() {
    let mut st = TenantState::default();
    enqueue(&mut st, 0, "c1");
    // Not in conversation yet.
    assert!(matches!(
        place(&mut st, 1, "m1", None),
        Err(Error::Conflict(_))
    ));
    online(&mut st, 1, "a");
    op_cmd(&mut st, 2, "a", "c1", false);
    let fx = place(&mut st, 3, "m1", None).unwrap();
    let placed: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::MediaPlaced {
                node,
                previous,
                operator_id,
                ..
            } => Some((node.clone(), previous.clone(), operator_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        placed,
        [("m1".into(), None, Some(OperatorId::new("a").unwrap()))]
    );
    // A second first placement (another node racing) loses.
    assert!(matches!(
        place(&mut st, 3, "m2", None),
        Err(Error::Conflict(_))
    ));
    // A move from the wrong node loses; from the right one it wins and says where from.
    assert!(matches!(
        place(&mut st, 4, "m3", Some("m2")),
        Err(Error::Conflict(_))
    ));
    let fx = place(&mut st, 4, "m2", Some("m1")).unwrap();
    assert!(fx.iter().any(
        |e| matches!(e, Effect::MediaPlaced { previous: Some(p), reason, .. }
        if p == "m1" && reason == "node_lost")
    ));
    assert_eq!(
        st.calls[&CallId::new("c1").unwrap()].media_node.as_deref(),
        Some("m2")
    );
    assert!(matches!(
        place(&mut st, 5, "", Some("m2")),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn estimates_project_when_each_slot_frees() {
    let mut st = TenantState::default();
    // Nobody online: unknown.
    assert_eq!(told(&enqueue(&mut st, 0, "c1")), [("c1".into(), None)]);
    // `a` is offered c1 at 0 and accepts at 5 (an answer takes 5 s): free at 5 + 120 = 125 s.
    online(&mut st, 0, "a");
    op_cmd(&mut st, 5, "a", "c1", false);
    // `b` comes online at 10 and is offered c2 at once: an offer counts as an answer and an AHT.
    online(&mut st, 10, "b");
    assert!(told(&enqueue(&mut st, 10, "c2")).is_empty());
    // c3 at 20: `a` frees first, at 125 s, and c3 is answered 5 s later → 110 s.
    assert_eq!(
        told(&enqueue(&mut st, 20, "c3")),
        [("c3".into(), Some(110))]
    );
    // c4 at 21: `a` is refilled by c3 until 250 s, so c4 waits for `b`: the offer is 11 s old,
    // longer than any answer seen, so 3/10 of one (1.5 s), then an AHT and an answer: 147.5 s.
    assert_eq!(
        told(&enqueue(&mut st, 21, "c4")),
        [("c4".into(), Some(127))]
    );
    // `b` accepts at 22 (answers seen: 5 s and 12 s; free at 142 s). At 100: c3 → `a` at 125,
    // c4 → `b` at 142, each plus the median answer of the draws.
    op_cmd(&mut st, 22, "b", "c2", false);
    let fx = run(&mut st, 100, Command::Tick);
    assert_eq!(
        told(&fx),
        [("c3".into(), Some(30)), ("c4".into(), Some(47))]
    );
    // `a` ends c1 at 130 and wraps up until 160 s, blocked (no wrap-up seen yet, so it runs to
    // its timeout); `b` frees at 142 s. At 140 c3 goes to `b` (142 + 5 s) and c4 to `a` after its
    // wrap-up (160 + 12 s: the median draw of the answers lands on the other sample here).
    op_cmd(&mut st, 130, "a", "c1", true);
    let fx = run(&mut st, 140, Command::Tick);
    assert_eq!(told(&fx), [("c3".into(), Some(7)), ("c4".into(), Some(32))]);
}

#[test]
fn a_call_past_its_aht_keeps_a_share_of_an_aht() {
    let mut st = TenantState::default();
    online(&mut st, 0, "a");
    enqueue(&mut st, 0, "c1");
    op_cmd(&mut st, 0, "a", "c1", false);
    // At 200 s c1 has outlived the 120 s AHT: 3/10 of an AHT (36 s) is still expected.
    assert_eq!(
        told(&enqueue(&mut st, 200, "c2")),
        [("c2".into(), Some(36))]
    );
}

fn records(fx: &[Effect]) -> Vec<CallRecord> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Record(r) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_history_records_holds_transfers_and_what_the_metrics_counted() {
    let mut st = TenantState::default();
    online(&mut st, 0, "a");
    online(&mut st, 0, "b");
    enqueue(&mut st, 10, "c1");
    op_cmd(&mut st, 12, "a", "c1", false);
    let (a, b, c1) = (
        OperatorId::new("a").unwrap(),
        OperatorId::new("b").unwrap(),
        CallId::new("c1").unwrap(),
    );
    let hold = |hold: bool| {
        let (operator_id, call_id) = (a.clone(), c1.clone());
        if hold {
            Command::Hold {
                operator_id,
                call_id,
            }
        } else {
            Command::Resume {
                operator_id,
                call_id,
            }
        }
    };
    run(&mut st, 20, hold(true));
    run(&mut st, 25, hold(false));
    run(&mut st, 30, hold(true));
    // Transferred while on hold (7 s more), to operator b, who answers at 50.
    let fx = run(
        &mut st,
        37,
        Command::Transfer {
            operator_id: a.clone(),
            call_id: c1.clone(),
            target: TransferTarget::Operator(b.clone()),
        },
    );
    assert!(records(&fx).is_empty(), "a transfer does not end the call");
    op_cmd(&mut st, 50, "b", "c1", false);
    let fx = {
        let operator_id = b.clone();
        run(
            &mut st,
            80,
            Command::End {
                operator_id,
                call_id: c1.clone(),
            },
        )
    };
    let ended = records(&fx);
    assert_eq!(ended.len(), 1);
    let r = &ended[0];
    assert_eq!(r.reason, EndReason::Completed);
    assert_eq!(
        (r.enqueued_at, r.queued_at),
        (Time::from_secs(10), Time::from_secs(37))
    );
    assert_eq!(r.offered_at, Some(Time::from_secs(10)));
    assert_eq!(r.answered_at, Some(Time::from_secs(12)));
    assert_eq!(r.accepted_at, Some(Time::from_secs(50)));
    assert_eq!(r.operators, vec![a, b.clone()]);
    assert_eq!(r.operator_id, Some(b.clone()));
    assert_eq!(
        (r.holds, r.held, r.transfers),
        (2, Duration::from_secs(12), 1)
    );
    // The wait the metrics counted: from the last queue entry to the last answer.
    assert_eq!(r.wait, Duration::from_secs(13));
    assert_eq!((r.handle, r.wrapup_ended_at), (None, None));
    assert_eq!(
        r.day,
        crate::windows::local_day(Time::from_secs(10), &cfg().time_zone)
    );
    let fx = run(
        &mut st,
        95,
        Command::WrapupDone {
            operator_id: b,
            call_id: c1,
        },
    );
    let done = records(&fx);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].wrapup_ended_at, Some(Time::from_secs(95)));
    assert_eq!(done[0].handle, Some(Duration::from_secs(45)));
    assert_eq!(done[0].ended_at, Time::from_secs(80));

    // An abandon: no operator, the wait to the end, short under 5 s.
    enqueue(&mut st, 100, "c2");
    let fx = run(
        &mut st,
        102,
        Command::Cancel {
            kiosk_id: KioskId::new("c2").unwrap(),
            call_id: CallId::new("c2").unwrap(),
        },
    );
    let r = &records(&fx)[0];
    assert_eq!(
        (r.reason, r.operator_id.as_ref()),
        (EndReason::Abandoned, None)
    );
    assert!(r.short_abandon);
    assert_eq!(r.wait, Duration::from_secs(2));
}

/// The routing pass as it was written before it chose on shared borrows (2026-12-03): it cloned
/// every free operator's id and looked each up again per call. Kept to check that the faster
/// pass makes the same offers, in the same order, with the same state after.
fn route_reference(st: &mut TenantState, cfg: &QueueConfig, now: Time, fx: &mut Vec<Effect>) {
    let mut free: Vec<OperatorId> = st
        .operators
        .values()
        .filter(|o| {
            visible_state(o, cfg) == OperatorState::Available && o.load + o.offers < o.capacity
        })
        .map(|o| o.operator_id.clone())
        .collect();
    if free.is_empty() {
        return;
    }
    let order: Vec<CallId> = st
        .waiting_in_order(cfg, now)
        .into_iter()
        .map(|c| c.call_id.clone())
        .collect();
    for id in order {
        if free.is_empty() {
            break;
        }
        let call = &st.calls[&id];
        let best = free
            .iter()
            .filter_map(|oid| {
                let op = &st.operators[oid];
                let level = eligible_level(op, call)?;
                let declined = call
                    .declined
                    .iter()
                    .position(|d| d == oid)
                    .map_or(0, |p| p + 1);
                Some((
                    (
                        declined,
                        std::cmp::Reverse(level),
                        op.idle_since,
                        op.load + op.offers,
                        oid.clone(),
                    ),
                    oid,
                ))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, oid)| oid.clone());
        let Some(oid) = best else { continue };
        let expires_at = now.plus(cfg.offer_lease);
        let Some(call) = st.call_mut(&id) else {
            continue;
        };
        call.state = CallState::Offered {
            operator: oid.clone(),
            expires_at,
        };
        call.log.offered_at.get_or_insert(now);
        call.since = now;
        call.last_update = None;
        let (kiosk_id, service, language, waited) = (
            call.kiosk_id.clone(),
            call.service.clone(),
            call.language.clone(),
            now.since(call.enqueued_at),
        );
        let node = st.operators[&oid].node.clone();
        fx.push(Effect::Offer {
            call_id: id.clone(),
            kiosk_id,
            operator_id: oid.clone(),
            operator_node: node,
            service,
            language,
            waited,
            expires_at,
        });
        let still_free = st.with_op(cfg, now, &oid, fx, |op| {
            op.offers += 1;
            op.load + op.offers < op.capacity
        });
        if still_free != Some(true) {
            free.retain(|o| o != &oid);
        }
    }
}

/// Operator `op{i}` with random skills in `services` (levels 1–5), some of `languages` (at least
/// the first) and a capacity of 1–3, on node `n1`.
pub(crate) fn random_login(
    rng: &mut impl rand::Rng,
    i: usize,
    services: &[Service],
    languages: &[Language],
    presence: Presence,
) -> OperatorLogin {
    let mut skills = BTreeMap::new();
    for s in services {
        if rng.gen_bool(0.7) {
            skills.insert(s.clone(), rng.gen_range(1..=5));
        }
    }
    let mut langs: Vec<Language> = languages
        .iter()
        .filter(|_| rng.gen_bool(0.6))
        .cloned()
        .collect();
    if langs.is_empty() {
        langs.push(languages[0].clone());
    }
    OperatorLogin {
        operator_id: OperatorId::new(format!("op{i}")).unwrap(),
        skills,
        languages: langs,
        capacity: rng.gen_range(1..=3),
        node: NodeId::new("n1").unwrap(),
        presence,
    }
}

/// Random rooms (operators with mixed skills, languages, capacities, loads, presence and idle
/// times; calls with priorities, aging, head places, declines and pins) routed by both passes.
#[test]
fn routing_offers_what_the_reference_pass_offers_in_random_rooms() {
    use rand::{Rng, SeedableRng};
    let cfg = QueueConfig {
        aging_step: Some(Duration::from_secs(30)),
        ..cfg()
    };
    let services = [Service::new("a").unwrap(), Service::new("b").unwrap()];
    let languages = [Language::new("it").unwrap(), Language::new("de").unwrap()];
    let mut offers = 0;
    for seed in 0..400 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut st = TenantState::default();
        let base = 1_700_000_000_000u64;
        for i in 0..rng.gen_range(1..8) {
            // Paused while the calls arrive, so that they all wait.
            let login = random_login(
                &mut rng,
                i,
                &services,
                &languages,
                Presence::Paused("p".into()),
            );
            st.apply(
                &cfg,
                Time::from_millis(base),
                Command::OperatorOnline(login),
            )
            .unwrap();
        }
        for j in 0..rng.gen_range(0..12u64) {
            let call = NewCall {
                call_id: CallId::new(format!("c{j}")).unwrap(),
                kiosk_id: KioskId::new(format!("k{j}")).unwrap(),
                kiosk_node: NodeId::new("n1").unwrap(),
                service: services[rng.gen_range(0..2)].clone(),
                language: languages[rng.gen_range(0..2)].clone(),
                priority: rng.gen_range(0..3),
            };
            let at = Time::from_millis(base + j * rng.gen_range(0..20_000));
            st.apply(&cfg, at, Command::Enqueue(call)).unwrap();
        }
        let ids: Vec<OperatorId> = st.operators.keys().cloned().collect();
        for op in st.operators.values_mut() {
            if rng.gen_bool(0.8) {
                op.presence = Presence::Available;
            }
            op.load = rng.gen_range(0..=op.capacity);
            op.offers = rng.gen_range(0..=op.capacity - op.load);
            op.wrapups = rng.gen_range(0..2);
            op.idle_since = Time::from_millis(base + rng.gen_range(0..5) * 1_000);
        }
        for call in st.calls.values_mut() {
            call.declined = ids.iter().filter(|_| rng.gen_bool(0.2)).cloned().collect();
            call.head = rng.gen_bool(0.1);
            if rng.gen_bool(0.1) {
                call.pinned = Some(ids[rng.gen_range(0..ids.len())].clone());
            }
        }
        let now = Time::from_millis(base + 300_000 + rng.gen_range(0..300_000));
        let (mut fast, mut reference) = (st.clone(), st);
        let (mut fast_fx, mut reference_fx) = (Vec::new(), Vec::new());
        fast.route(&cfg, now, &mut fast_fx);
        route_reference(&mut reference, &cfg, now, &mut reference_fx);
        assert_eq!(fast_fx, reference_fx, "seed {seed}: the effects");
        assert_eq!(fast, reference, "seed {seed}: the state after");
        offers += fast_fx
            .iter()
            .filter(|e| matches!(e, Effect::Offer { .. }))
            .count();
    }
    assert!(
        offers > 200,
        "the rooms made {offers} offers: too few to compare the passes"
    );
}

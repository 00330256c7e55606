//! The generated authorization matrix: every request type × every role × the object's owner (the
//! actor's own, someone else's, none at all) gets exactly the allowed result, and a refused request
//! leaves the call as it was.
//!
//! The expected results are written out here from `protocol.md` ("a kiosk can never act on another
//! kiosk's call; an operator only on calls offered or assigned to them; a supervisor acts on
//! anything, read-only except `operator.set_state`"), independently of the server's own table.

mod common;

use common::centre::{ok, on_call, Centre, Op};
use kiosk_client::ClientError;
use protocol::incall::*;
use protocol::media::{MediaCandidate, MediaOffer};
use protocol::{
    CallRef, CallRequest, CallTransfer, ErrorCode, OperatorSetState, PresenceSet, PresenceState,
    Request, Role,
};
use queue::{CallId, Tenant};

/// The object a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    /// The actor's own: their kiosk's call, a call offered or assigned to them, themselves.
    Own,
    /// Someone else's.
    Other,
    /// A call id that does not exist.
    Missing,
}

/// The state a call must be in for the request to be valid for its rightful sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Waiting,
    Offered,
    Connected,
    Held,
    WrapUp,
}

fn needs(kind: &str) -> Needs {
    match kind {
        "call.cancel" => Needs::Waiting,
        "call.accept" | "call.reject" => Needs::Offered,
        "call.hold" | "call.transfer" | "call.end" => Needs::Connected,
        "media.offer" | "media.candidate" | "monitor.start" | "monitor.stop" => Needs::Connected,
        "call.resume" => Needs::Held,
        k if in_call(k) && k != "print.status" => Needs::Connected,
        // The kiosk rates its call once it ended (the operator is wrapping up).
        "wrapup.done" | "feedback.submit" => Needs::WrapUp,
        _ => Needs::Nothing,
    }
}

/// The in-call actions (identity, certificate, print).
fn in_call(kind: &str) -> bool {
    kind.starts_with("identity.") || kind.starts_with("certificate.") || kind.starts_with("print.")
}

/// Which objects a request type can name.
fn objects(kind: &str) -> &'static [Object] {
    match kind {
        "call.request" | "presence.set" | "metrics.subscribe" | "metrics.unsubscribe" => {
            &[Object::Own]
        }
        "operator.set_state" => &[Object::Own, Object::Other],
        // A job id, not a call: the kiosk's own job or none.
        "print.status" => &[Object::Own, Object::Missing],
        _ => &[Object::Own, Object::Other, Object::Missing],
    }
}

/// The expected outcome, from the protocol's rules.
fn expected(role: Role, kind: &str, object: Object) -> Result<(), ErrorCode> {
    let mine = match kind {
        "call.request" | "call.cancel" => role == Role::Kiosk,
        "presence.set" | "call.accept" | "call.reject" | "call.hold" | "call.resume"
        | "call.transfer" | "call.end" | "wrapup.done" => role == Role::Operator,
        "metrics.subscribe" | "metrics.unsubscribe" | "operator.set_state" => {
            role == Role::Supervisor
        }
        // Every party of a call negotiates its own media; a supervisor only after monitor.start.
        "media.offer" | "media.candidate" => true,
        "monitor.start" | "monitor.stop" => role == Role::Supervisor,
        // The operator drives identification, issue and print; the kiosk answers.
        "identity.request"
        | "identity.confirm"
        | "identity.reject"
        | "certificate.issue"
        | "certificate.preview"
        | "print.request" => role == Role::Operator,
        "identity.card"
        | "identity.card_error"
        | "identity.pec_start"
        | "identity.pec_code"
        | "identity.scan"
        | "print.status"
        | "feedback.submit" => role == Role::Kiosk,
        other => panic!("no rule for {other}"),
    };
    if !mine {
        return Err(ErrorCode::Forbidden);
    }
    if in_call(kind) && object == Object::Own {
        // The rightful sender on its own call in conversation, with nothing else prepared: asking
        // for identification works; every later step is out of order; there is no such document
        // or job yet.
        return match kind {
            "identity.request" => Ok(()),
            "print.request" | "print.status" => Err(ErrorCode::NotFound),
            _ => Err(ErrorCode::Conflict),
        };
    }
    if kind.starts_with("media.") && role == Role::Supervisor && object != Object::Missing {
        // Not monitoring this call.
        return Err(ErrorCode::Conflict);
    }
    if kind.starts_with("monitor.") && object == Object::Other {
        // A supervisor may watch any call.
        return Ok(());
    }
    match object {
        Object::Own => Ok(()),
        // A supervisor may force any operator's state.
        Object::Other if role == Role::Supervisor => Ok(()),
        Object::Other => Err(ErrorCode::Forbidden),
        Object::Missing => Err(ErrorCode::NotFound),
    }
}

/// A well-formed fiscal code (check character included).
const FISCAL_CODE: &str = "RSSMRA80A01H501U";

/// A well-formed candidate line for `media.candidate`.
const CANDIDATE: &str = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";

fn request(kind: &str, call_id: &str, operator_id: &str, service: &str, sdp: &str) -> Request {
    let call = || CallRef {
        call_id: call_id.into(),
    };
    match kind {
        "call.request" => Request::CallRequest(CallRequest {
            service: service.into(),
            language: "it".into(),
            priority: None,
        }),
        "call.cancel" => Request::CallCancel(call()),
        "presence.set" => Request::PresenceSet(PresenceSet {
            state: PresenceState::Available,
            reason: None,
        }),
        "call.accept" => Request::CallAccept(call()),
        "call.reject" => Request::CallReject(call()),
        "call.hold" => Request::CallHold(call()),
        "call.resume" => Request::CallResume(call()),
        "call.transfer" => Request::CallTransfer(CallTransfer {
            call_id: call_id.into(),
            service: Some(service.into()),
            operator_id: None,
        }),
        "call.end" => Request::CallEnd(call()),
        "wrapup.done" => {
            Request::WrapupDone(protocol::outcome::WrapupDone::with(call_id, "informazioni"))
        }
        "feedback.submit" => Request::FeedbackSubmit(protocol::outcome::FeedbackSubmit {
            call_id: call_id.into(),
            rating: 5,
            comment: None,
        }),
        "metrics.subscribe" => Request::MetricsSubscribe {},
        "metrics.unsubscribe" => Request::MetricsUnsubscribe {},
        "operator.set_state" => Request::OperatorSetState(OperatorSetState {
            operator_id: operator_id.into(),
            state: PresenceState::Paused,
            reason: Some("matrix".into()),
        }),
        "media.offer" => Request::MediaOffer(MediaOffer {
            call_id: call_id.into(),
            sdp: sdp.into(),
            monitor: false,
        }),
        "media.candidate" => Request::MediaCandidate(MediaCandidate {
            call_id: call_id.into(),
            candidate: CANDIDATE.into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }),
        "monitor.start" => Request::MonitorStart(call()),
        "monitor.stop" => Request::MonitorStop(call()),
        "identity.request" => Request::IdentityRequest(IdentityRequest {
            call_id: call_id.into(),
            method: IdentityMethod::Document,
        }),
        "identity.card" => Request::IdentityCard(IdentityCard {
            call_id: call_id.into(),
            certificate_chain: vec!["MIIB".into()],
            signature: "AAAA".into(),
        }),
        "identity.card_error" => Request::IdentityCardError(IdentityCardError {
            call_id: call_id.into(),
            reason: "no_card".into(),
            tries_left: None,
        }),
        "identity.pec_start" => Request::IdentityPecStart(IdentityPecStart {
            call_id: call_id.into(),
            fiscal_code: FISCAL_CODE.into(),
        }),
        "identity.pec_code" => Request::IdentityPecCode(IdentityPecCode {
            call_id: call_id.into(),
            code: "123456".into(),
        }),
        "identity.scan" => Request::IdentityScan(IdentityScan {
            call_id: call_id.into(),
            scan_id: "scan-1".into(),
        }),
        "identity.confirm" => Request::IdentityConfirm(IdentityConfirm {
            call_id: call_id.into(),
            fiscal_code: FISCAL_CODE.into(),
            document_type: "carta_identita".into(),
            document_number: "CA00000AA".into(),
        }),
        "identity.reject" => Request::IdentityReject(IdentityReject {
            call_id: call_id.into(),
            reason: "matrix".into(),
        }),
        "certificate.issue" => Request::CertificateIssue(CertificateIssue {
            call_id: call_id.into(),
            kind: "residenza".into(),
            fiscal_code: None,
            as_of: None,
            usage: Usage::Bollo { bollo: true },
            reason: None,
            marca: None,
            parts: vec![],
        }),
        "certificate.preview" => Request::CertificatePreview(CertificateIssue {
            call_id: call_id.into(),
            kind: "residenza".into(),
            fiscal_code: None,
            as_of: None,
            usage: Usage::Bollo { bollo: true },
            reason: None,
            marca: None,
            parts: vec![],
        }),
        "print.request" => Request::PrintRequest(PrintRequest {
            call_id: call_id.into(),
            document_id: "034027-20260101-AAAAAAAA".into(),
            copies: 1,
        }),
        "print.status" => Request::PrintStatus(PrintStatus {
            job_id: call_id.into(),
            state: PrintState::Received,
            detail: None,
        }),
        other => panic!("no request for {other}"),
    }
}

/// The state name of a call, or `None` once it left the queue.
async fn call_state(c: &Centre, id: &str) -> Option<String> {
    let q = &c.t.server.state.routing.queue;
    let tenant: Tenant = c.t.server.state.routing.tenant.clone();
    let id = CallId::new(id).unwrap();
    q.read(&tenant, |st| {
        st.calls.get(&id).map(|c| c.state.name().to_owned())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_type_by_every_role_on_every_object() {
    let kinds: Vec<&str> = Request::TYPES
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "auth" | "ping"))
        .collect();
    let roles = [Role::Kiosk, Role::Operator, Role::Supervisor];
    let mut cases = Vec::new();
    for kind in &kinds {
        for role in roles {
            for object in objects(kind) {
                cases.push((*kind, role, *object));
            }
        }
    }
    // One kiosk, operator and service per case, so routing in one case never touches another;
    // "someone else" is a separate kiosk and operator.
    let n = cases.len();
    let ids: Vec<String> = (0..n).map(|i| format!("{i}")).collect();
    let mut ops: Vec<Op> = ids
        .iter()
        .map(|i| Op::new(&format!("op-{i}"), &[(&format!("svc-{i}"), 5)], 1))
        .collect();
    ops.push(Op::new("op-x", &[("svc-x", 5)], 1));
    let mut kiosks: Vec<String> = ids.iter().map(|i| format!("k-{i}")).collect();
    kiosks.push("k-x".into());
    let kiosk_refs: Vec<&str> = kiosks.iter().map(String::as_str).collect();
    // The supervisor and the "someone else" sessions send one request per case, faster than
    // the default 20/s with a burst of 40 on a quick machine: the rate limit is not under test here.
    let c = Centre::start_memory(&ops, &kiosk_refs, |cfg| {
        cfg.ws.rate_per_s = 10_000;
        cfg.ws.rate_burst = 100_000;
    })
    .await;

    let mut other_kiosk = c.kiosk("k-x").await;
    let mut other_op = c.operator("op-x").await;
    let supervisor = c.supervisor().await;
    // A real WebRTC offer, so the rightful sender's media.offer succeeds.
    let media = sfu::client::MediaClient::start(sfu::client::ClientOptions::default())
        .await
        .unwrap();
    let sdp = media.offer().to_owned();
    let mut checked = 0;
    for (i, (kind, role, object)) in cases.iter().enumerate() {
        let (kiosk_id, op_id, service) = (format!("k-{i}"), format!("op-{i}"), format!("svc-{i}"));
        let mut kiosk = c.kiosk(&kiosk_id).await;
        let mut op = c.operator(&op_id).await;
        // Bring this case's call to the state the request needs.
        let mut call_id = String::from("no-such-call");
        let need = needs(kind);
        if need != Needs::Nothing {
            call_id = kiosk.request_call(&service, "it", None).await.unwrap();
            if need != Needs::Waiting {
                ok(op.session(), presence(PresenceState::Available)).await;
                on_call(op.session(), "call.offered", &call_id).await;
            }
            let call = CallRef {
                call_id: call_id.clone(),
            };
            if matches!(need, Needs::Connected | Needs::Held | Needs::WrapUp) {
                ok(op.session(), Request::CallAccept(call.clone())).await;
            }
            if need == Needs::Held {
                ok(op.session(), Request::CallHold(call.clone())).await;
            }
            if need == Needs::WrapUp {
                ok(op.session(), Request::CallEnd(call)).await;
            }
        }
        let target_call = if *object == Object::Missing {
            "no-such-call".to_owned()
        } else {
            call_id.clone()
        };
        let target_op = if *object == Object::Other {
            "op-x"
        } else {
            op_id.as_str()
        };
        let req = request(kind, &target_call, target_op, &service, &sdp);
        if *kind == "media.candidate" && *object == Object::Own && *role != Role::Supervisor {
            // A candidate belongs to a connection: negotiate it first.
            let offer = request("media.offer", &call_id, &op_id, &service, &sdp);
            match role {
                Role::Kiosk => ok(kiosk.session(), offer).await,
                _ => ok(op.session(), offer).await,
            };
        }
        let before = call_state(&c, &call_id).await;
        let result = match (role, object) {
            (Role::Kiosk, Object::Other) => other_kiosk.session().request(&req).await,
            (Role::Kiosk, _) => kiosk.session().request(&req).await,
            (Role::Operator, Object::Other) => other_op.session().request(&req).await,
            (Role::Operator, _) => op.session().request(&req).await,
            (Role::Supervisor, _) => supervisor.request(&req).await,
        };
        let got = match result {
            Ok(_) => Ok(()),
            Err(ClientError::Refused { code, .. }) => Err(code),
            Err(e) => panic!("{kind} by {role:?} on {object:?}: {e:?}"),
        };
        assert_eq!(
            got,
            expected(*role, kind, *object),
            "{kind} by {} on {object:?}",
            role.as_str()
        );
        if got.is_err() && need != Needs::Nothing {
            assert_eq!(
                call_state(&c, &call_id).await,
                before,
                "a refused {kind} changed the call"
            );
        }
        // Leave nothing open that a later case could trip over.
        kiosk.close().await;
        op.close().await;
        checked += 1;
    }
    assert_eq!(checked, n);
    // Every type, role and object combination was generated.
    assert!(n >= kinds.len() * roles.len());
}

fn presence(state: PresenceState) -> Request {
    Request::PresenceSet(PresenceSet {
        state,
        reason: None,
    })
}

//! A whole contact centre for end-to-end call tests: a server on port 0 with configured operators,
//! kiosks and a supervisor, on the memory store or a real `redis-server`, and the `kiosk-client`
//! headless kiosk and operator bot as its clients; plus small helpers to wait for events.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use kiosk_client::{ClientError, HeadlessKiosk, OperatorBot, Policy, Session};
use protocol::{CallRef, ErrorCode, Event, PresenceSet, PresenceState, Request, Role};
use serde_json::Value;
use signalling::accounts::{hash_password, hash_token, Principal};
use signalling::config::{Config, KioskAccount, OperatorAccount, SupervisorAccount};

use super::TestServer;

/// How long a scenario waits for any one event.
pub const T: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redis,
}

/// One operator account of a test deployment.
pub struct Op {
    id: String,
    skills: Vec<(String, u8)>,
    capacity: u8,
}

impl Op {
    /// An operator speaking Italian with these skills and capacity.
    pub fn new(id: &str, skills: &[(&str, u8)], capacity: u8) -> Self {
        Op {
            id: id.into(),
            skills: skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
            capacity,
        }
    }
}

pub fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("correct horse battery staple"))
}

pub fn kiosk_token(id: &str) -> String {
    format!("device-token-of-{id}-0123456789abcdef")
}

/// A running contact centre for one scenario.
pub struct Centre {
    pub t: TestServer,
    _redis: Option<testkit::RedisServer>,
}

impl Centre {
    pub async fn start_memory(ops: &[Op], kiosks: &[&str], edit: impl FnOnce(&mut Config)) -> Self {
        Self::start(Kind::Memory, ops, kiosks, edit).await
    }

    pub async fn start(
        kind: Kind,
        ops: &[Op],
        kiosks: &[&str],
        edit: impl FnOnce(&mut Config),
    ) -> Self {
        let redis = match kind {
            Kind::Memory => None,
            Kind::Redis => Some(testkit::RedisServer::start().await),
        };
        let url = redis.as_ref().map(|r| r.url());
        let mut c = Self::on(url, ops, kiosks, edit).await;
        c._redis = redis;
        c
    }

    /// A centre on the store at `redis` (`None`: in memory) that another centre may share: two
    /// nodes of one deployment in this process.
    pub async fn on(
        url: Option<String>,
        ops: &[Op],
        kiosks: &[&str],
        edit: impl FnOnce(&mut Config),
    ) -> Self {
        let operators: Vec<OperatorAccount> = ops
            .iter()
            .map(|o| OperatorAccount {
                username: o.id.clone(),
                display_name: format!("Operatore {}", o.id),
                password_hash: password_hash().into(),
                skills: o
                    .skills
                    .iter()
                    .map(|(s, l)| (s.to_string(), *l))
                    .collect::<BTreeMap<_, _>>(),
                languages: vec!["it".into()],
                capacity: o.capacity,
            })
            .collect();
        let kiosk_accounts: Vec<KioskAccount> = kiosks
            .iter()
            .map(|k| KioskAccount {
                id: k.to_string(),
                name: format!("Chiosco {k}"),
                location: format!("Via {k} 1, Parma"),
                services: vec![],
                token_hash: hash_token(&kiosk_token(k)),
            })
            .collect();
        let t = TestServer::start_with(|cfg| {
            cfg.redis = url;
            cfg.operators = operators;
            cfg.kiosks = kiosk_accounts;
            cfg.supervisors = vec![SupervisorAccount {
                username: "sup".into(),
                display_name: "Supervisora".into(),
                password_hash: password_hash().into(),
            }];
            edit(cfg);
        })
        .await;
        Centre { t, _redis: None }
    }

    pub fn ws(&self) -> String {
        self.t.ws_url()
    }

    pub fn token(&self, role: Role, id: &str) -> String {
        let principal = Principal {
            role,
            id: id.into(),
        };
        self.t
            .server
            .state
            .tokens
            .issue(&principal, signalling::tokens::unix_now())
            .0
    }

    pub async fn kiosk(&self, id: &str) -> HeadlessKiosk {
        HeadlessKiosk::connect(&self.ws(), &kiosk_token(id), vec![])
            .await
            .unwrap()
    }

    /// An operator driven by the test (manual policy), with the first `state.sync` consumed.
    pub async fn operator(&self, id: &str) -> OperatorBot {
        let mut bot =
            OperatorBot::connect(&self.ws(), &self.token(Role::Operator, id), Policy::Manual)
                .await
                .unwrap();
        let sync = event(bot.session(), |e| matches!(e, Event::StateSync(_))).await;
        let Event::StateSync(sync) = sync else {
            unreachable!()
        };
        assert_eq!(
            sync.operator_state.unwrap().state,
            "paused",
            "operators start paused"
        );
        bot
    }

    pub async fn supervisor(&self) -> Session {
        let auth = protocol::Auth {
            token: self.token(Role::Supervisor, "sup"),
            resume: None,
            capabilities: vec![],
        };
        Session::connect(&self.ws(), auth).await.unwrap().0
    }
}

/// Waits for the first event matching `pred`; other events stay buffered.
pub async fn event(s: &mut Session, pred: impl FnMut(&Event) -> bool) -> Event {
    match s.wait_for(T, pred).await {
        Ok(e) => e,
        Err(e) => {
            let who = s.principal_id().to_owned();
            panic!(
                "no matching event within {T:?} on {who}: {e:?}; buffered: {:?}",
                s.drain_events()
            )
        }
    }
}

pub fn call_of(e: &Event) -> Option<&str> {
    Some(match e {
        Event::QueueUpdate(x) => &x.call_id,
        Event::CallAssigned(x) => &x.call_id,
        Event::CallHeld(x) | Event::CallResumed(x) | Event::WrapupEnded(x) => &x.call_id,
        Event::CallEnded(x) => &x.call_id,
        Event::CallRequeued(x) => &x.call_id,
        Event::CallOffered(x) => &x.call_id,
        Event::CallOfferRevoked(x) => &x.call_id,
        Event::CallConnected(x) => &x.call_id,
        Event::IdentityRequested(x) => &x.call_id,
        Event::IdentityProgress(x) => &x.call_id,
        Event::IdentityVerified(x) => &x.call_id,
        Event::IdentityFailed(x) => &x.call_id,
        Event::CertificateIssued(x) => &x.call_id,
        Event::PrintJob(x) => &x.call_id,
        Event::PrintUpdate(x) => &x.call_id,
        _ => return None,
    })
}

/// Waits for the event of type `kind` about `call`.
pub async fn on_call(s: &mut Session, kind: &str, call: &str) -> Event {
    event(s, |e| e.kind() == kind && call_of(e) == Some(call)).await
}

pub async fn ok(s: &Session, r: Request) -> Value {
    match s.request(&r).await {
        Ok(v) => v,
        Err(e) => panic!("{} refused: {e:?}", r.kind()),
    }
}

pub fn refused(r: Result<Value, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn call(id: &str) -> CallRef {
    CallRef { call_id: id.into() }
}

/// `wrapup.done` for `id` with the bots' disposition (one of the defaults).
pub fn wrapup(id: &str) -> protocol::Request {
    protocol::Request::WrapupDone(protocol::outcome::WrapupDone::with(
        id,
        kiosk_client::BOT_DISPOSITION,
    ))
}

pub fn available() -> Request {
    Request::PresenceSet(PresenceSet {
        state: PresenceState::Available,
        reason: None,
    })
}

pub async fn request_call(k: &mut HeadlessKiosk, service: &str) -> String {
    k.request_call(service, "it", None).await.unwrap()
}

/// The demo credentials a data directory's processes share (`demo-credentials.json`).
pub fn demo_credentials(data_dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("demo-credentials.json")).unwrap()).unwrap()
}

/// Logs `user` in at `base` (any node), connects an operator bot answering by hand to `ws` (any
/// node), and makes them available.
pub async fn available_operator(base: &str, ws: &str, user: &str, password: &str) -> OperatorBot {
    let token = OperatorBot::login(base, user, password).await.unwrap();
    let mut op = OperatorBot::connect(ws, &token, Policy::Manual)
        .await
        .unwrap();
    ok(op.session(), available()).await;
    op
}

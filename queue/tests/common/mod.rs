//! Shared test fixtures: a real `redis-server` per test, store construction and small builders.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use queue::{
    AnyStore, Applied, CallId, Effect, KioskId, Language, MemoryStore, NewCall, NodeId, OperatorId,
    OperatorLogin, Presence, Queue, QueueConfig, RedisStore, Service, Store, Tenant, Time,
};

pub use testkit::RedisServer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redis,
}

/// A tenant on a fresh store, with helpers; `clients` are several store clients (nodes) on the same state.
pub struct Harness {
    pub q: Queue<AnyStore>,
    pub clients: Vec<Queue<AnyStore>>,
    pub tenant: Tenant,
    pub cfg: QueueConfig,
    pub server: Option<RedisServer>,
}

pub fn t0() -> Time {
    Time::from_secs(1_700_000_000)
}

/// `t0 + secs`.
pub fn at(secs: u64) -> Time {
    t0().plus(Duration::from_secs(secs))
}

pub fn at_ms(ms: u64) -> Time {
    t0().plus(Duration::from_millis(ms))
}

impl Harness {
    pub async fn new(kind: Kind, cfg: QueueConfig) -> Self {
        Self::with_clients(kind, cfg, 2).await
    }

    pub async fn with_clients(kind: Kind, cfg: QueueConfig, n: usize) -> Self {
        let mut clients = Vec::new();
        let mut server = None;
        match kind {
            Kind::Memory => {
                let s = MemoryStore::new(cfg.clone()).expect("config");
                for _ in 0..n {
                    clients.push(Queue::new(AnyStore::Memory(s.clone())));
                }
            }
            Kind::Redis => {
                let srv = RedisServer::start().await;
                for _ in 0..n {
                    let s = RedisStore::connect(&srv.url(), cfg.clone())
                        .await
                        .expect("connect");
                    clients.push(Queue::new(AnyStore::Redis(s)));
                }
                server = Some(srv);
            }
        }
        let tenant = Tenant::new(format!("t-{}", uuid_like())).expect("tenant");
        Harness {
            q: clients[0].clone(),
            clients,
            tenant,
            cfg,
            server,
        }
    }

    /// The tenant's stored state.
    pub async fn state(&self) -> queue::TenantState {
        self.q
            .store()
            .load_state(&self.tenant)
            .await
            .expect("state")
    }

    /// Checks the state invariants after an operation.
    pub async fn check(&self) {
        let s = self
            .q
            .store()
            .load_state(&self.tenant)
            .await
            .expect("state");
        if let Err(e) = s.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    pub async fn op(
        &self,
        now: Time,
        id: &str,
        skills: &[(&str, u8)],
        langs: &[&str],
        capacity: u8,
    ) -> Applied {
        self.op_on(now, id, skills, langs, capacity, "n1", Presence::Available)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn op_on(
        &self,
        now: Time,
        id: &str,
        skills: &[(&str, u8)],
        langs: &[&str],
        capacity: u8,
        node: &str,
        presence: Presence,
    ) -> Applied {
        let login = OperatorLogin {
            operator_id: oid(id),
            skills: skills
                .iter()
                .map(|(s, l)| (svc(s), *l))
                .collect::<BTreeMap<_, _>>(),
            languages: langs.iter().map(|l| Language::new(*l).unwrap()).collect(),
            capacity,
            node: NodeId::new(node).unwrap(),
            presence,
        };
        let a = self
            .q
            .operator_online(&self.tenant, now, login)
            .await
            .expect("operator online");
        self.check().await;
        a
    }

    pub async fn call(
        &self,
        now: Time,
        id: &str,
        service: &str,
        lang: &str,
        priority: u8,
    ) -> Applied {
        self.call_on(now, id, service, lang, priority, "n1").await
    }

    pub async fn call_on(
        &self,
        now: Time,
        id: &str,
        service: &str,
        lang: &str,
        priority: u8,
        node: &str,
    ) -> Applied {
        let a = self
            .q
            .enqueue(
                &self.tenant,
                now,
                NewCall {
                    call_id: cid(id),
                    kiosk_id: KioskId::new(format!("k-{id}")).unwrap(),
                    kiosk_node: NodeId::new(node).unwrap(),
                    service: svc(service),
                    language: Language::new(lang).unwrap(),
                    priority,
                },
            )
            .await
            .expect("enqueue");
        self.check().await;
        a
    }

    pub async fn accept(&self, now: Time, op: &str, call: &str) -> Applied {
        let a = self
            .q
            .accept(&self.tenant, now, &oid(op), &cid(call))
            .await
            .expect("accept");
        self.check().await;
        a
    }

    pub async fn tick(&self, now: Time) -> Applied {
        let a = self.q.tick(&self.tenant, now).await.expect("tick");
        self.check().await;
        a
    }
}

pub fn uuid_like() -> String {
    CallId::random().to_string()
}

pub fn cid(s: &str) -> CallId {
    CallId::new(s).unwrap()
}

pub fn oid(s: &str) -> OperatorId {
    OperatorId::new(s).unwrap()
}

pub fn svc(s: &str) -> Service {
    Service::new(s).unwrap()
}

pub fn kid(call: &str) -> KioskId {
    KioskId::new(format!("k-{call}")).unwrap()
}

/// The (call, operator) pairs offered in a batch.
pub fn offers(a: &Applied) -> Vec<(String, String)> {
    a.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Offer {
                call_id,
                operator_id,
                ..
            } => Some((call_id.to_string(), operator_id.to_string())),
            _ => None,
        })
        .collect()
}

pub fn offer(call: &str, op: &str) -> Vec<(String, String)> {
    vec![(call.to_string(), op.to_string())]
}

//! The store trait, the [`Queue`] facade the server calls, and [`AnyStore`] to pick a store at run time.
//!
//! A store only has to do one thing atomically: run [`TenantState::apply`] on the tenant's current state
//! and keep the result. Everything else (routing, leases, metrics) lives in the core, which is why the
//! memory and Redis stores behave the same.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::core::{Command, TenantState};
use crate::effect::Applied;
use crate::error::Error;
use crate::memory::MemoryStore;
use crate::model::{
    CallId, KioskId, NewCall, NodeId, OperatorId, OperatorLogin, Presence, QueueConfig, Tenant,
    Time, TransferTarget,
};
use crate::redis_store::RedisStore;
use crate::snapshot::Snapshot;

/// Committed batches of a tenant, from every node, in commit order per node.
pub type EffectReceiver = broadcast::Receiver<Arc<Applied>>;

/// Where tenant state lives. Implementations must apply each command atomically.
pub trait Store: Send + Sync + 'static {
    /// The configuration the core runs with.
    fn config(&self) -> &QueueConfig;

    /// Applies `cmd` at `now` to the tenant's state atomically and returns the committed effects.
    fn apply(
        &self,
        tenant: &Tenant,
        now: Time,
        cmd: Command,
    ) -> impl Future<Output = Result<Applied, Error>> + Send;

    /// A snapshot of the tenant at `now` (read-only; it does not advance timers).
    fn snapshot(
        &self,
        tenant: &Tenant,
        now: Time,
    ) -> impl Future<Output = Result<Snapshot, Error>> + Send;

    /// Runs `f` on the tenant's current state (read-only) and returns what it computed. The server
    /// uses it to tell a (re)connecting client where its calls stand.
    fn read<R, F>(&self, tenant: &Tenant, f: F) -> impl Future<Output = Result<R, Error>> + Send
    where
        R: Send,
        F: FnOnce(&TenantState) -> R + Send;

    /// A copy of the tenant's current state, for diagnostics and invariant checks in tests.
    fn load_state(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<TenantState, Error>> + Send;

    /// Receives every batch committed for `tenant` from now on, by any node. The server delivers offers,
    /// revokes and updates from here, so an offer made on one node reaches an operator on another.
    fn subscribe(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<EffectReceiver, Error>> + Send;

    /// Checks that the store is reachable (for `/readyz`).
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records that `key` (the server's login-session id) is revoked until `until`; every node
    /// sees it through [`Store::revoked`]. Entries past their time are dropped.
    fn revoke(
        &self,
        tenant: &Tenant,
        key: &str,
        until: Time,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The keys revoked and still in force at `now`.
    fn revoked(
        &self,
        tenant: &Tenant,
        now: Time,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
}

/// Either store, chosen at start-up (`--redis URL` or the embedded default).
#[derive(Clone)]
pub enum AnyStore {
    /// The in-memory store.
    Memory(MemoryStore),
    /// The Redis store.
    Redis(RedisStore),
}

impl AnyStore {
    /// The shared records and bus that go with this store: in this process for the memory store,
    /// on the same Redis for the Redis one.
    pub fn shared(&self) -> crate::shared::AnyShared {
        match self {
            AnyStore::Memory(_) => {
                crate::shared::AnyShared::Memory(crate::shared::MemoryShared::new())
            }
            AnyStore::Redis(s) => {
                crate::shared::AnyShared::Redis(crate::redis_shared::RedisShared::new(s.clone()))
            }
        }
    }
}

impl Store for AnyStore {
    fn config(&self) -> &QueueConfig {
        match self {
            AnyStore::Memory(s) => s.config(),
            AnyStore::Redis(s) => s.config(),
        }
    }

    async fn apply(&self, tenant: &Tenant, now: Time, cmd: Command) -> Result<Applied, Error> {
        match self {
            AnyStore::Memory(s) => s.apply(tenant, now, cmd).await,
            AnyStore::Redis(s) => s.apply(tenant, now, cmd).await,
        }
    }

    async fn snapshot(&self, tenant: &Tenant, now: Time) -> Result<Snapshot, Error> {
        match self {
            AnyStore::Memory(s) => s.snapshot(tenant, now).await,
            AnyStore::Redis(s) => s.snapshot(tenant, now).await,
        }
    }

    async fn read<R, F>(&self, tenant: &Tenant, f: F) -> Result<R, Error>
    where
        R: Send,
        F: FnOnce(&TenantState) -> R + Send,
    {
        match self {
            AnyStore::Memory(s) => s.read(tenant, f).await,
            AnyStore::Redis(s) => s.read(tenant, f).await,
        }
    }

    async fn load_state(&self, tenant: &Tenant) -> Result<TenantState, Error> {
        match self {
            AnyStore::Memory(s) => s.load_state(tenant).await,
            AnyStore::Redis(s) => s.load_state(tenant).await,
        }
    }

    async fn subscribe(&self, tenant: &Tenant) -> Result<EffectReceiver, Error> {
        match self {
            AnyStore::Memory(s) => s.subscribe(tenant).await,
            AnyStore::Redis(s) => s.subscribe(tenant).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        match self {
            AnyStore::Memory(s) => s.ping().await,
            AnyStore::Redis(s) => s.ping().await,
        }
    }

    async fn revoke(&self, tenant: &Tenant, key: &str, until: Time) -> Result<(), Error> {
        match self {
            AnyStore::Memory(s) => s.revoke(tenant, key, until).await,
            AnyStore::Redis(s) => s.revoke(tenant, key, until).await,
        }
    }

    async fn revoked(&self, tenant: &Tenant, now: Time) -> Result<Vec<String>, Error> {
        match self {
            AnyStore::Memory(s) => s.revoked(tenant, now).await,
            AnyStore::Redis(s) => s.revoked(tenant, now).await,
        }
    }
}

/// The queue as the server sees it: one async method per protocol action.
///
/// Each method takes `now` (the server passes [`Time::now`]; tests pass a fake clock) and returns the
/// committed [`Applied`] batch. Call [`Queue::tick`] about once a second on every node so leases,
/// wrap-ups and dead nodes are handled even when nothing else happens, and [`Queue::heartbeat`] every
/// few seconds for each tenant the node serves.
#[derive(Clone)]
pub struct Queue<S> {
    store: S,
}

impl<S: Store> Queue<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        Queue { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs any command.
    pub async fn apply(&self, tenant: &Tenant, now: Time, cmd: Command) -> Result<Applied, Error> {
        self.store.apply(tenant, now, cmd).await
    }

    /// `call.request`: puts a kiosk's call in the queue. Retrying with the same `call_id` is harmless.
    pub async fn enqueue(
        &self,
        tenant: &Tenant,
        now: Time,
        call: NewCall,
    ) -> Result<Applied, Error> {
        self.apply(tenant, now, Command::Enqueue(call)).await
    }

    /// `call.cancel` from the kiosk that owns the call.
    pub async fn cancel(
        &self,
        tenant: &Tenant,
        now: Time,
        kiosk_id: &KioskId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::Cancel {
                kiosk_id: kiosk_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// The kiosk's connections on `node` did not resume within the grace period: its calls living on
    /// that node are abandoned (or ended if connected). A call re-attached elsewhere is left alone.
    pub async fn kiosk_lost(
        &self,
        tenant: &Tenant,
        now: Time,
        kiosk_id: &KioskId,
        node: &NodeId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::KioskLost {
                kiosk_id: kiosk_id.clone(),
                node: node.clone(),
            },
        )
        .await
    }

    /// The kiosk resumed on `node`; its call now lives and dies with that node.
    pub async fn reattach_kiosk(
        &self,
        tenant: &Tenant,
        now: Time,
        call_id: &CallId,
        node: &NodeId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::ReattachKiosk {
                call_id: call_id.clone(),
                node: node.clone(),
            },
        )
        .await
    }

    /// An operator connected or resumed (on `login.node`).
    pub async fn operator_online(
        &self,
        tenant: &Tenant,
        now: Time,
        login: OperatorLogin,
    ) -> Result<Applied, Error> {
        self.apply(tenant, now, Command::OperatorOnline(login))
            .await
    }

    /// `presence.set` or a supervisor's `operator.set_state`.
    pub async fn set_presence(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        presence: Presence,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::SetPresence {
                operator_id: operator_id.clone(),
                presence,
            },
        )
        .await
    }

    /// The operator logs out; refused with `conflict` while they still have calls.
    pub async fn operator_offline(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
    ) -> Result<Applied, Error> {
        self.set_presence(tenant, now, operator_id, Presence::Offline)
            .await
    }

    /// The operator's connections on `node` did not resume within the grace period: calls go back to
    /// the head of the queue. Ignored if the operator is connected through another node by now.
    pub async fn operator_lost(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        node: &NodeId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::OperatorLost {
                operator_id: operator_id.clone(),
                node: node.clone(),
            },
        )
        .await
    }

    /// `call.accept`.
    pub async fn accept(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::Accept {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `call.reject`.
    pub async fn reject(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::Reject {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `call.hold`.
    pub async fn hold(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::Hold {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `call.resume`.
    pub async fn resume(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::Resume {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `call.end`: the call ends for the kiosk and the operator starts wrap-up.
    pub async fn end(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::End {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `wrapup.done`.
    pub async fn wrapup_done(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
    ) -> Result<Applied, Error> {
        self.apply(
            tenant,
            now,
            Command::WrapupDone {
                operator_id: operator_id.clone(),
                call_id: call_id.clone(),
            },
        )
        .await
    }

    /// `call.transfer`: back to the queue, keeping the original age, for a service or one operator.
    pub async fn transfer(
        &self,
        tenant: &Tenant,
        now: Time,
        operator_id: &OperatorId,
        call_id: &CallId,
        target: TransferTarget,
    ) -> Result<Applied, Error> {
        let cmd = Command::Transfer {
            operator_id: operator_id.clone(),
            call_id: call_id.clone(),
            target,
        };
        self.apply(tenant, now, cmd).await
    }

    /// Places (or moves) a call's media on a media node; see [`Command::PlaceMedia`].
    pub async fn place_media(
        &self,
        tenant: &Tenant,
        now: Time,
        call_id: &CallId,
        node: &str,
        replacing: Option<&str>,
        reason: &str,
    ) -> Result<Applied, Error> {
        let cmd = Command::PlaceMedia {
            call_id: call_id.clone(),
            node: node.to_owned(),
            replacing: replacing.map(str::to_owned),
            reason: reason.to_owned(),
        };
        self.apply(tenant, now, cmd).await
    }

    /// Renews this node's lease for a tenant.
    pub async fn heartbeat(
        &self,
        tenant: &Tenant,
        now: Time,
        node: &NodeId,
    ) -> Result<Applied, Error> {
        self.apply(tenant, now, Command::Heartbeat { node: node.clone() })
            .await
    }

    /// Revokes a login session (`key`) until `until`, for every node ([`Store::revoke`]).
    pub async fn revoke(&self, tenant: &Tenant, key: &str, until: Time) -> Result<(), Error> {
        self.store.revoke(tenant, key, until).await
    }

    /// The login sessions revoked and still in force at `now` ([`Store::revoked`]).
    pub async fn revoked(&self, tenant: &Tenant, now: Time) -> Result<Vec<String>, Error> {
        self.store.revoked(tenant, now).await
    }

    /// Expires leases, ends wrap-ups, cleans up dead nodes and routes.
    pub async fn tick(&self, tenant: &Tenant, now: Time) -> Result<Applied, Error> {
        self.apply(tenant, now, Command::Tick).await
    }

    /// Cleans up nodes whose lease ran out more than the resume grace ago. Idempotent; any node may run
    /// it. (Every operation does this too; this name is for callers that want to be explicit.)
    pub async fn cleanup_dead_nodes(&self, tenant: &Tenant, now: Time) -> Result<Applied, Error> {
        self.tick(tenant, now).await
    }

    /// The tenant's snapshot for `metrics.snapshot` and the Prometheus gauges.
    pub async fn snapshot(&self, tenant: &Tenant, now: Time) -> Result<Snapshot, Error> {
        self.store.snapshot(tenant, now).await
    }

    /// Runs `f` on the tenant's current state without changing it.
    pub async fn read<R, F>(&self, tenant: &Tenant, f: F) -> Result<R, Error>
    where
        R: Send,
        F: FnOnce(&TenantState) -> R + Send,
    {
        self.store.read(tenant, f).await
    }

    /// Every committed batch of the tenant, from all nodes.
    pub async fn subscribe(&self, tenant: &Tenant) -> Result<EffectReceiver, Error> {
        self.store.subscribe(tenant).await
    }
}

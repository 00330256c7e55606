//! Shared state beside the calls: records with a time to live, and a message bus, seen by every node.
//!
//! The queue core owns the calls. Everything else that several nodes must see lives here:
//!
//! - **records**: small text values (JSON, in practice) under a namespace and a key, each with a
//!   time to live. The server keeps the media nodes' heartbeats (namespace `media-nodes`) and the
//!   in-call state of each call (identification, PEC codes, scans, documents, print jobs) here.
//!   [`Shared::put_new`] writes only when the key is absent, which is how a node claims something
//!   exactly once (a print job's delivery, say).
//! - **the bus**: text messages published by any node reach every node's listeners, in publish
//!   order per publisher, while they listen. The server addresses events to principals over it, so
//!   an event raised on one node reaches a client connected to another. Messages are not kept for
//!   listeners that come later: the bus is for live delivery, and records are for state.
//!
//! Both implementations behave the same and pass one conformance suite (`queue/tests/shared.rs`):
//! [`MemoryShared`] in this process, and the Redis one (`redis_shared`) for several nodes.
//! Namespaces and keys are plain text without control characters; values are any text.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::error::Error;
use crate::model::{Tenant, Time};

/// Messages from the bus, as published.
pub type BusReceiver = broadcast::Receiver<Arc<str>>;

/// How many bus messages a slow listener may fall behind before it sees `Lagged`.
pub const BUS_CAPACITY: usize = 8192;

/// Shared records and the message bus of a tenant (see the module docs).
pub trait Shared: Send + Sync + 'static {
    /// Writes `value` under `(ns, key)`, replacing any value, to expire `ttl` after `now`.
    fn put(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Writes `value` under `(ns, key)` only if no live value is there; `true` when it wrote.
    fn put_new(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Compare and set: writes `value` under `(ns, key)` only if the live value there is `expected`
    /// (`None`: absent); `true` when it wrote. Read with [`Shared::get`], change, then swap, and read
    /// again when it says `false`: that is how two nodes change one record without losing either change.
    #[allow(clippy::too_many_arguments)]
    fn swap(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// The live value under `(ns, key)`.
    fn get(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        now: Time,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;

    /// Removes `(ns, key)`; `true` when a live value was there.
    fn delete(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        now: Time,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Every live `(key, value)` of the namespace, in key order.
    fn list(
        &self,
        tenant: &Tenant,
        ns: &str,
        now: Time,
    ) -> impl Future<Output = Result<Vec<(String, String)>, Error>> + Send;

    /// Sends `message` to every listener of the tenant's bus, on every node.
    fn publish(
        &self,
        tenant: &Tenant,
        message: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Receives every message published on the tenant's bus from now on, by any node.
    fn listen(&self, tenant: &Tenant) -> impl Future<Output = Result<BusReceiver, Error>> + Send;
}

/// Refuses a namespace or key that is empty, long, or has a control character or a `:`-free
/// requirement broken (a namespace may not contain `:`, so keys cannot collide across namespaces).
pub fn check_name(what: &str, name: &str, allow_colon: bool) -> Result<(), Error> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.chars().any(char::is_control)
        || (!allow_colon && name.contains(':'));
    if bad {
        return Err(Error::Invalid(format!("bad shared-state {what} {name:?}")));
    }
    Ok(())
}

fn expiry(now: Time, ttl: Duration) -> Time {
    Time(
        now.0
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
    )
}

#[derive(Default)]
struct TenantShared {
    /// `ns` → `key` → (value, expires at).
    records: HashMap<String, HashMap<String, (String, Time)>>,
}

/// Shared state in this process's memory. Cloning shares the same state.
#[derive(Clone, Default)]
pub struct MemoryShared {
    tenants: Arc<Mutex<HashMap<Tenant, TenantShared>>>,
    buses: Arc<Mutex<HashMap<Tenant, broadcast::Sender<Arc<str>>>>>,
}

impl std::fmt::Debug for MemoryShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryShared").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryShared {
    /// Empty shared state.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_ns<R>(
        &self,
        tenant: &Tenant,
        ns: &str,
        now: Time,
        f: impl FnOnce(&mut HashMap<String, (String, Time)>) -> R,
    ) -> R {
        let mut tenants = lock(&self.tenants);
        let records = tenants.entry(tenant.clone()).or_default();
        let map = records.records.entry(ns.to_owned()).or_default();
        map.retain(|_, (_, until)| *until > now);
        f(map)
    }

    fn bus(&self, tenant: &Tenant) -> broadcast::Sender<Arc<str>> {
        lock(&self.buses)
            .entry(tenant.clone())
            .or_insert_with(|| broadcast::channel(BUS_CAPACITY).0)
            .clone()
    }
}

impl Shared for MemoryShared {
    async fn put(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<(), Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        self.with_ns(tenant, ns, now, |m| {
            m.insert(key.to_owned(), (value.to_owned(), expiry(now, ttl)));
        });
        Ok(())
    }

    async fn put_new(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        Ok(self.with_ns(tenant, ns, now, |m| {
            if m.contains_key(key) {
                return false;
            }
            m.insert(key.to_owned(), (value.to_owned(), expiry(now, ttl)));
            true
        }))
    }

    async fn swap(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        Ok(self.with_ns(tenant, ns, now, |m| {
            if m.get(key).map(|(v, _)| v.as_str()) != expected {
                return false;
            }
            m.insert(key.to_owned(), (value.to_owned(), expiry(now, ttl)));
            true
        }))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        now: Time,
    ) -> Result<Option<String>, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        Ok(self.with_ns(tenant, ns, now, |m| m.get(key).map(|(v, _)| v.clone())))
    }

    async fn delete(&self, tenant: &Tenant, ns: &str, key: &str, now: Time) -> Result<bool, Error> {
        check_name("namespace", ns, false)?;
        check_name("key", key, true)?;
        Ok(self.with_ns(tenant, ns, now, |m| m.remove(key).is_some()))
    }

    async fn list(
        &self,
        tenant: &Tenant,
        ns: &str,
        now: Time,
    ) -> Result<Vec<(String, String)>, Error> {
        check_name("namespace", ns, false)?;
        let mut all = self.with_ns(tenant, ns, now, |m| {
            m.iter()
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        });
        all.sort();
        Ok(all)
    }

    async fn publish(&self, tenant: &Tenant, message: &str) -> Result<(), Error> {
        // No listener is not an error: the bus is for whoever listens now.
        let _ = self.bus(tenant).send(Arc::from(message));
        Ok(())
    }

    async fn listen(&self, tenant: &Tenant) -> Result<BusReceiver, Error> {
        Ok(self.bus(tenant).subscribe())
    }
}

/// Either implementation, chosen with the queue's store ([`crate::AnyStore::shared`]).
#[derive(Clone, Debug)]
pub enum AnyShared {
    /// In this process.
    Memory(MemoryShared),
    /// On the queue's Redis.
    Redis(crate::redis_shared::RedisShared),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyShared::Memory($s) => $e,
            AnyShared::Redis($s) => $e,
        }
    };
}

impl Shared for AnyShared {
    async fn put(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<(), Error> {
        each!(self, s => s.put(tenant, ns, key, value, ttl, now).await)
    }

    async fn put_new(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        each!(self, s => s.put_new(tenant, ns, key, value, ttl, now).await)
    }

    async fn swap(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        expected: Option<&str>,
        value: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<bool, Error> {
        each!(self, s => s.swap(tenant, ns, key, expected, value, ttl, now).await)
    }

    async fn get(
        &self,
        tenant: &Tenant,
        ns: &str,
        key: &str,
        now: Time,
    ) -> Result<Option<String>, Error> {
        each!(self, s => s.get(tenant, ns, key, now).await)
    }

    async fn delete(&self, tenant: &Tenant, ns: &str, key: &str, now: Time) -> Result<bool, Error> {
        each!(self, s => s.delete(tenant, ns, key, now).await)
    }

    async fn list(
        &self,
        tenant: &Tenant,
        ns: &str,
        now: Time,
    ) -> Result<Vec<(String, String)>, Error> {
        each!(self, s => s.list(tenant, ns, now).await)
    }

    async fn publish(&self, tenant: &Tenant, message: &str) -> Result<(), Error> {
        each!(self, s => s.publish(tenant, message).await)
    }

    async fn listen(&self, tenant: &Tenant) -> Result<BusReceiver, Error> {
        each!(self, s => s.listen(tenant).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tenant {
        Tenant::new("comune").unwrap()
    }

    #[tokio::test]
    async fn records_expire_and_put_new_claims_once() {
        let s = MemoryShared::new();
        let ttl = Duration::from_millis(100);
        assert!(s.put_new(&t(), "ns", "a", "1", ttl, Time(0)).await.unwrap());
        assert!(!s
            .put_new(&t(), "ns", "a", "2", ttl, Time(50))
            .await
            .unwrap());
        assert_eq!(
            s.get(&t(), "ns", "a", Time(99)).await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(s.get(&t(), "ns", "a", Time(100)).await.unwrap(), None);
        assert!(s
            .put_new(&t(), "ns", "a", "3", ttl, Time(100))
            .await
            .unwrap());
        assert!(!s
            .swap(&t(), "ns", "a", Some("1"), "4", ttl, Time(100))
            .await
            .unwrap());
        assert!(s
            .swap(&t(), "ns", "a", Some("3"), "4", ttl, Time(100))
            .await
            .unwrap());
        assert!(s
            .swap(&t(), "ns", "b", None, "5", ttl, Time(100))
            .await
            .unwrap());
        assert!(!s
            .swap(&t(), "ns", "b", None, "6", ttl, Time(100))
            .await
            .unwrap());
        assert!(s.delete(&t(), "ns", "a", Time(101)).await.unwrap());
        assert!(!s.delete(&t(), "ns", "a", Time(102)).await.unwrap());
    }

    #[tokio::test]
    async fn bad_names_are_invalid() {
        let s = MemoryShared::new();
        let ttl = Duration::from_secs(1);
        for (ns, key) in [("", "k"), ("a:b", "k"), ("ns", ""), ("ns", "a\nb")] {
            let e = s.put(&t(), ns, key, "v", ttl, Time(0)).await.unwrap_err();
            assert_eq!(e.code(), "invalid", "{ns:?} {key:?}");
        }
    }
}

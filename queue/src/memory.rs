//! The in-memory store: the embedded default for a single process.
//!
//! Each tenant's state sits behind its own mutex; an operation holds it only while the core runs, which
//! takes microseconds and never awaits, so a plain `std` mutex is right here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::core::{Command, TenantState};
use crate::effect::Applied;
use crate::error::Error;
use crate::model::{QueueConfig, Tenant, Time};
use crate::snapshot::Snapshot;
use crate::store::{EffectReceiver, Store};

struct Entry {
    state: TenantState,
    version: u64,
    tx: broadcast::Sender<Arc<Applied>>,
}

/// Tenant states in this process's memory. Cloning shares the same state.
#[derive(Clone)]
pub struct MemoryStore {
    cfg: Arc<QueueConfig>,
    tenants: Arc<Mutex<HashMap<Tenant, Arc<Mutex<Entry>>>>>,
    /// Revoked keys per tenant, with the time they stop mattering.
    revoked: Arc<Mutex<HashMap<Tenant, HashMap<String, Time>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the whole queue: the state is only changed after validation and
    // by infallible steps, so it stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// A store with the given configuration.
    pub fn new(cfg: QueueConfig) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(MemoryStore {
            cfg: Arc::new(cfg),
            tenants: Arc::default(),
            revoked: Arc::default(),
        })
    }

    fn entry(&self, tenant: &Tenant) -> Arc<Mutex<Entry>> {
        lock(&self.tenants)
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Entry {
                    state: TenantState::default(),
                    version: 0,
                    tx: broadcast::channel(4096).0,
                }))
            })
            .clone()
    }
}

impl Store for MemoryStore {
    fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    async fn apply(&self, tenant: &Tenant, now: Time, cmd: Command) -> Result<Applied, Error> {
        let entry = self.entry(tenant);
        let mut e = lock(&entry);
        let effects = e.state.apply(&self.cfg, now, cmd)?;
        if !e.state.is_dirty() {
            return Ok(Applied {
                version: e.version,
                effects,
            });
        }
        e.state.take_dirty();
        e.version += 1;
        let applied = Applied {
            version: e.version,
            effects,
        };
        if !applied.effects.is_empty() {
            // Nobody listening is fine: the caller also gets the batch back.
            let _ = e.tx.send(Arc::new(applied.clone()));
        }
        Ok(applied)
    }

    async fn snapshot(&self, tenant: &Tenant, now: Time) -> Result<Snapshot, Error> {
        let entry = self.entry(tenant);
        let e = lock(&entry);
        Ok(e.state.snapshot(&self.cfg, now))
    }

    async fn read<R, F>(&self, tenant: &Tenant, f: F) -> Result<R, Error>
    where
        R: Send,
        F: FnOnce(&TenantState) -> R + Send,
    {
        let entry = self.entry(tenant);
        let e = lock(&entry);
        Ok(f(&e.state))
    }

    async fn load_state(&self, tenant: &Tenant) -> Result<TenantState, Error> {
        let entry = self.entry(tenant);
        let e = lock(&entry);
        Ok(e.state.clone())
    }

    async fn subscribe(&self, tenant: &Tenant) -> Result<EffectReceiver, Error> {
        let entry = self.entry(tenant);
        let e = lock(&entry);
        Ok(e.tx.subscribe())
    }

    async fn revoke(&self, tenant: &Tenant, key: &str, until: Time) -> Result<(), Error> {
        let mut all = lock(&self.revoked);
        let keys = all.entry(tenant.clone()).or_default();
        let at = keys.entry(key.to_owned()).or_insert(until);
        *at = (*at).max(until);
        Ok(())
    }

    async fn revoked(&self, tenant: &Tenant, now: Time) -> Result<Vec<String>, Error> {
        let mut all = lock(&self.revoked);
        let Some(keys) = all.get_mut(tenant) else {
            return Ok(Vec::new());
        };
        keys.retain(|_, until| *until > now);
        let mut list: Vec<String> = keys.keys().cloned().collect();
        list.sort();
        Ok(list)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

//! Which kiosk devices are connected, across nodes: while a kiosk socket that declared a device
//! capability lives on this node, a presence record `(kiosk, capability, this node)` is kept fresh
//! in the shared store (refreshed every [`REFRESH`], expiring after
//! [`super::store::PRESENCE_TTL`]), so any node can answer "does this kiosk have a printer agent
//! connected anywhere". The event hub's counts only know this node's sockets.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::Capability;

use crate::accounts::Principal;
use crate::state::AppState;

/// How often this node rewrites its presence records.
pub const REFRESH: Duration = Duration::from_secs(5);

/// This node's device sockets, and what it last published.
#[derive(Debug, Default)]
pub struct Presence {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Socket id → (kiosk, its declared capabilities).
    sockets: HashMap<u64, (String, Vec<Capability>)>,
    /// The (kiosk, capability) pairs published, and when they were last written.
    published: BTreeSet<(String, CapKey)>,
    refreshed: Option<Instant>,
}

/// A capability with an order, for the set of published pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CapKey(u8);

impl CapKey {
    fn of(c: Capability) -> Self {
        CapKey(match c {
            Capability::Printer => 0,
            Capability::CardReader => 1,
            Capability::Scanner => 2,
        })
    }

    fn cap(self) -> Capability {
        match self.0 {
            0 => Capability::Printer,
            1 => Capability::CardReader,
            _ => Capability::Scanner,
        }
    }
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kiosk socket with device capabilities opened here.
    pub fn add(&self, principal: &Principal, socket: u64, capabilities: &[Capability]) {
        if capabilities.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner
            .sockets
            .insert(socket, (principal.id.clone(), capabilities.to_vec()));
        // Publish at the next round, without waiting for the refresh interval.
        inner.refreshed = None;
    }
}

/// One round: forgets the sockets that closed, then writes the live pairs (when due or changed)
/// and deletes the pairs that have no socket here any more.
pub(super) async fn refresh(state: &AppState) {
    let live: HashSet<u64> = state
        .events
        .sockets()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let (write, gone) = {
        let mut inner = state.incall.presence.lock();
        inner.sockets.retain(|id, _| live.contains(id));
        let now: BTreeSet<(String, CapKey)> = inner
            .sockets
            .values()
            .flat_map(|(kiosk, caps)| caps.iter().map(|c| (kiosk.clone(), CapKey::of(*c))))
            .collect();
        let gone: Vec<_> = inner.published.difference(&now).cloned().collect();
        let changed = now != inner.published;
        let due = inner.refreshed.is_none_or(|t| t.elapsed() >= REFRESH);
        let write: Vec<_> = if due || changed {
            inner.refreshed = Some(Instant::now());
            now.iter().cloned().collect()
        } else {
            Vec::new()
        };
        inner.published = now;
        (write, gone)
    };
    let store = &state.incall.store;
    let node = &state.incall.node;
    for (kiosk, cap) in write {
        if let Err(e) = store.present(&kiosk, cap.cap(), node).await {
            tracing::debug!(error = ?e, "presence not written");
        }
    }
    for (kiosk, cap) in gone {
        if let Err(e) = store.absent(&kiosk, cap.cap(), node).await {
            tracing::debug!(error = ?e, "presence not removed");
        }
    }
}

/// Removes every presence record of this node (at shutdown).
pub(super) async fn clear(state: &AppState) {
    let published = std::mem::take(&mut state.incall.presence.lock().published);
    for (kiosk, cap) in published {
        let _ = state
            .incall
            .store
            .absent(&kiosk, cap.cap(), &state.incall.node)
            .await;
    }
}

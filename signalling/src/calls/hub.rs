//! The sessions of this process by principal, so that events reach every socket of the kiosk or
//! operator they name, and the supervisors subscribed to `metrics.snapshot`.
//!
//! Each socket registers a bounded channel. A socket that cannot keep up (its channel is full) is
//! told to close; the client reconnects with `resume` and gets a fresh `state.sync`, so nothing is
//! silently lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::Capability;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::accounts::Principal;
use crate::calls::events::Recipient;

/// Frames queued per socket before the socket counts as stuck.
pub const SOCKET_QUEUE: usize = 1024;

#[derive(Debug)]
struct Conn {
    principal: Principal,
    tx: mpsc::Sender<Arc<str>>,
    overflow: CancellationToken,
    metrics: bool,
    capabilities: Vec<Capability>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Conn>,
    by_principal: HashMap<Recipient, Vec<u64>>,
}

/// What a socket gets when it registers.
#[derive(Debug)]
pub struct Registration {
    /// Its id in the hub.
    pub id: u64,
    /// Frames to send to the client.
    pub rx: mpsc::Receiver<Arc<str>>,
    /// Cancelled when the socket fell too far behind and must close.
    pub overflow: CancellationToken,
}

/// The process's sockets by principal.
#[derive(Debug, Default)]
pub struct EventHub {
    inner: Mutex<Inner>,
    /// Where frames for other nodes go (`calls::bus`), when there are other nodes.
    bus: std::sync::OnceLock<mpsc::Sender<crate::calls::bus::Outgoing>>,
    /// Frames for other nodes dropped because the bus's backlog was full.
    bus_dropped: std::sync::atomic::AtomicU64,
}

fn key(p: &Principal) -> Recipient {
    Recipient {
        role: p.role,
        id: p.id.clone(),
    }
}

impl EventHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends what [`EventHub::send`] and [`EventHub::send_device`] deliver to the other nodes too.
    /// Returns the receiving end for `calls::bus::run_publisher`, or `None` if already set.
    pub fn connect_bus(&self) -> Option<mpsc::Receiver<crate::calls::bus::Outgoing>> {
        let (tx, rx) = mpsc::channel(crate::calls::bus::BACKLOG);
        self.bus.set(tx).ok().map(|()| rx)
    }

    fn to_bus(&self, to: &Recipient, cap: Option<Capability>, frame: &Arc<str>) {
        if let Some(bus) = self.bus.get() {
            let sent = bus.try_send(crate::calls::bus::Outgoing {
                to: to.clone(),
                cap,
                frame: frame.clone(),
            });
            if sent.is_err() {
                // The store has been unreachable for a while: the other nodes' clients resync
                // (`state.sync`) when they reconnect; in-call devices get their pending requests
                // and jobs again on their next connection.
                let n = self
                    .bus_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n % 1000 == 0 {
                    tracing::warn!(
                        dropped = n + 1,
                        "the bus to the other nodes is full; events dropped"
                    );
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an authenticated socket with no device capabilities.
    pub fn register(&self, principal: &Principal) -> Registration {
        self.register_with(principal, &[])
    }

    /// Registers an authenticated socket that declared `capabilities` (kiosk agents).
    pub fn register_with(
        &self,
        principal: &Principal,
        capabilities: &[Capability],
    ) -> Registration {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let overflow = CancellationToken::new();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.conns.insert(
            id,
            Conn {
                principal: principal.clone(),
                tx,
                overflow: overflow.clone(),
                metrics: false,
                capabilities: capabilities.to_vec(),
            },
        );
        inner
            .by_principal
            .entry(key(principal))
            .or_default()
            .push(id);
        Registration { id, rx, overflow }
    }

    /// Removes a socket that ended.
    pub fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(conn) = inner.conns.remove(&id) {
            let k = key(&conn.principal);
            if let Some(ids) = inner.by_principal.get_mut(&k) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    inner.by_principal.remove(&k);
                }
            }
        }
    }

    fn push(conn: &Conn, frame: &Arc<str>) {
        if conn.tx.try_send(frame.clone()).is_err() {
            conn.overflow.cancel();
        }
    }

    /// Sends a frame to every socket of `to`, on this process and (through the bus) on every other
    /// node. Returns how many sockets *of this process* got it.
    pub fn send(&self, to: &Recipient, frame: &Arc<str>) -> usize {
        self.to_bus(to, None, frame);
        self.send_local(to, frame)
    }

    /// Like [`EventHub::send_device`], on this process and every other node. Returns how many
    /// sockets of this process got it.
    pub fn send_device(&self, to: &Recipient, capability: Capability, frame: &Arc<str>) -> usize {
        self.to_bus(to, Some(capability), frame);
        self.send_device_local(to, capability, frame)
    }

    /// Sends a frame to every socket of `to` on this process only (queue effects, which every
    /// node delivers itself, and frames from the bus). Returns how many sockets got it.
    pub fn send_local(&self, to: &Recipient, frame: &Arc<str>) -> usize {
        let inner = self.lock();
        let Some(ids) = inner.by_principal.get(to) else {
            return 0;
        };
        for id in ids {
            if let Some(conn) = inner.conns.get(id) {
                Self::push(conn, frame);
            }
        }
        ids.len()
    }

    /// Sends a frame to the sockets of `to` on this process that declared `capability`, or to all
    /// of its sockets when none did (a single client that does everything). Returns how many
    /// sockets got it.
    pub fn send_device_local(
        &self,
        to: &Recipient,
        capability: Capability,
        frame: &Arc<str>,
    ) -> usize {
        let inner = self.lock();
        let Some(ids) = inner.by_principal.get(to) else {
            return 0;
        };
        let conns: Vec<&Conn> = ids.iter().filter_map(|id| inner.conns.get(id)).collect();
        let capable: Vec<&Conn> = conns
            .iter()
            .copied()
            .filter(|c| c.capabilities.contains(&capability))
            .collect();
        let targets = if capable.is_empty() { conns } else { capable };
        for conn in &targets {
            Self::push(conn, frame);
        }
        targets.len()
    }

    /// Sends a frame to one socket.
    pub fn send_to_socket(&self, id: u64, frame: &Arc<str>) {
        if let Some(conn) = self.lock().conns.get(&id) {
            Self::push(conn, frame);
        }
    }

    /// Turns `metrics.snapshot` on or off for a socket.
    pub fn set_metrics(&self, id: u64, on: bool) {
        if let Some(conn) = self.lock().conns.get_mut(&id) {
            conn.metrics = on;
        }
    }

    /// Whether any socket here wants `metrics.snapshot`.
    pub fn wants_metrics(&self) -> bool {
        self.lock().conns.values().any(|c| c.metrics)
    }

    /// Sends a snapshot frame to every subscribed socket.
    pub fn send_metrics(&self, frame: &Arc<str>) {
        for conn in self.lock().conns.values().filter(|c| c.metrics) {
            Self::push(conn, frame);
        }
    }

    /// Every socket and its principal (for a resync after missed batches).
    pub fn sockets(&self) -> Vec<(u64, Principal)> {
        self.lock()
            .conns
            .iter()
            .map(|(id, c)| (*id, c.principal.clone()))
            .collect()
    }

    /// Number of registered sockets.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Role;

    fn p(role: Role, id: &str) -> Principal {
        Principal {
            role,
            id: id.into(),
        }
    }

    #[test]
    fn device_frames_go_to_capable_sockets_or_to_all() {
        let hub = EventHub::new();
        let mut screen = hub.register(&p(Role::Kiosk, "k1"));
        let mut agent = hub.register_with(&p(Role::Kiosk, "k1"), &[Capability::Printer]);
        let frame: Arc<str> = Arc::from("job");
        let to = Recipient {
            role: Role::Kiosk,
            id: "k1".into(),
        };
        assert_eq!(hub.send_device(&to, Capability::Printer, &frame), 1);
        assert_eq!(&*agent.rx.try_recv().unwrap(), "job");
        assert!(screen.rx.try_recv().is_err());
        // Nobody declared a scanner: every session gets it.
        assert_eq!(hub.send_device(&to, Capability::Scanner, &frame), 2);
        assert!(screen.rx.try_recv().is_ok());
        assert!(agent.rx.try_recv().is_ok());
    }

    #[test]
    fn frames_reach_every_socket_of_the_principal_only() {
        let hub = EventHub::new();
        let mut a = hub.register(&p(Role::Kiosk, "k1"));
        let mut b = hub.register(&p(Role::Kiosk, "k1"));
        let mut c = hub.register(&p(Role::Kiosk, "k2"));
        let frame: Arc<str> = Arc::from("x");
        let to = Recipient {
            role: Role::Kiosk,
            id: "k1".into(),
        };
        assert_eq!(hub.send(&to, &frame), 2);
        assert_eq!(&*a.rx.try_recv().unwrap(), "x");
        assert_eq!(&*b.rx.try_recv().unwrap(), "x");
        assert!(c.rx.try_recv().is_err());
        hub.unregister(a.id);
        assert_eq!(hub.send(&to, &frame), 1);
        hub.unregister(b.id);
        assert_eq!(hub.send(&to, &frame), 0);
        // An operator with the same id as a kiosk is someone else.
        let op = Recipient {
            role: Role::Operator,
            id: "k2".into(),
        };
        assert_eq!(hub.send(&op, &frame), 0);
    }

    #[test]
    fn a_socket_that_falls_behind_is_told_to_close() {
        let hub = EventHub::new();
        let r = hub.register(&p(Role::Supervisor, "s"));
        hub.set_metrics(r.id, true);
        let frame: Arc<str> = Arc::from("m");
        for _ in 0..SOCKET_QUEUE {
            hub.send_metrics(&frame);
        }
        assert!(!r.overflow.is_cancelled());
        hub.send_metrics(&frame);
        assert!(r.overflow.is_cancelled());
    }
}

//! One forwarding loop's thread: its runtime, the engine, its peers' connected sockets (an `epoll`
//! set read with `recvmmsg`), batched sends with `sendmmsg`, commands, timers and statistics.

use super::*;

/// A socket connected to one validated peer, read by its loop.
pub(super) struct PeerSocket {
    pub(super) peer: SocketAddr,
    pub(super) sock: UdpSocket,
}

/// Calls whose statistics are computed a few per wake-up rather than all at once, so the
/// statistics of many calls never hold packets back for long.
pub(super) const STATS_PER_WAKEUP: usize = 4;
/// `recvmmsg` batches taken from one connected socket per wake-up.
pub(super) const PEER_BATCHES: usize = 4;

pub(super) struct LoopContext {
    pub(super) index: usize,
    pub(super) engine: Engine,
    /// The connected sockets of this loop's validated UDP peers, by descriptor (their token in
    /// `poller`).
    pub(super) peer_sockets: HashMap<RawFd, PeerSocket>,
    pub(super) peer_fds: HashMap<SocketAddr, RawFd>,
    /// The `epoll` set of the connected sockets (a second handle on the one the loop awaits).
    pub(super) poller: Option<udpio::Poller>,
    pub(super) ready: Vec<u64>,
    pub(super) rx: Box<udpio::BatchReceiver>,
    /// UDP datagrams to send at the end of the current batch.
    pub(super) out: Vec<(BytesMut, SocketAddr)>,
    /// Calls whose statistics are still due in this interval.
    pub(super) stats_due: Vec<Arc<str>>,
    pub(super) packets: mpsc::Receiver<Packet>,
    pub(super) commands: mpsc::UnboundedReceiver<Cmd>,
    pub(super) udp: Option<Arc<UdpSocket>>,
    pub(super) tcp_writers: TcpWriters,
    pub(super) addr_map: Arc<RwLock<HashMap<SocketAddr, usize>>>,
    pub(super) events: mpsc::UnboundedSender<MediaEvent>,
    pub(super) metrics: MediaMetrics,
    pub(super) stats_interval: Duration,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) load: Arc<LoopLoad>,
}

impl LoopContext {
    pub(super) fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "media loop could not start");
                return;
            }
        };
        rt.block_on(self.serve());
    }

    pub(super) async fn serve(&mut self) {
        // Readiness of every connected socket, registered with the loop's runtime. Without it,
        // validated peers stay on the shared socket's reader.
        let mut poll: Option<AsyncFd<udpio::Poller>> = None;
        if self.udp.is_some() {
            let registered = udpio::Poller::new().and_then(|p| {
                let ctl = p.try_clone()?;
                // SAFETY: the poller owns its epoll descriptor, which stays open and the same
                // until the poller, owned by the `AsyncFd`, is dropped with it.
                let p =
                    unsafe { AsyncFd::register_with_interest(p, tokio::io::Interest::READABLE) }
                        .map_err(io::Error::from)?;
                Ok((p, ctl))
            });
            match registered {
                Ok((p, ctl)) => {
                    poll = Some(p);
                    self.poller = Some(ctl);
                }
                Err(e) => tracing::warn!(error = %e, "media loop without connected peer sockets"),
            }
        }
        let label = self.index.to_string();
        let busy_gauge = self.metrics.loop_busy.with_label_values(&[&label]);
        let wakeups = self.metrics.loop_wakeups.with_label_values(&[&label]);
        let mut next_tick = Instant::now() + Duration::from_secs(1);
        let mut next_stats = Instant::now() + self.stats_interval;
        let mut busy = Duration::ZERO;
        let mut window_start = Instant::now();
        let mut peers_reported: i64 = 0;
        let mut calls_reported: i64 = 0;
        loop {
            let mut deadline = self
                .engine
                .next_deadline()
                .map_or(next_tick, |d| d.min(next_tick));
            if !self.stats_due.is_empty() {
                deadline = Instant::now(); // statistics still due: come back at once
            }
            let woke;
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    woke = Instant::now();
                    match cmd {
                        Some(cmd) => self.command(woke, cmd),
                        None => break, // the handle is gone
                    }
                }
                p = self.packets.recv() => {
                    woke = Instant::now();
                    let Some(p) = p else { break };
                    self.engine.handle_packet(p.at, p.protocol, p.from, p.data);
                    for _ in 1..BATCH {
                        match self.packets.try_recv() {
                            Ok(p) => self.engine.handle_packet(p.at, p.protocol, p.from, p.data),
                            Err(_) => break,
                        }
                    }
                    // The batch's output leaves now, before anything else is awaited.
                    self.send_transmits();
                }
                guard = readable(&poll) => {
                    woke = Instant::now();
                    if let Ok(mut guard) = guard {
                        guard.get_inner().ready(&mut self.ready);
                        // Every socket read until it had no more: any datagram from now on
                        // raises the set's readiness again (its own edge), so it can be cleared.
                        if self.read_peers() {
                            guard.clear_ready();
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    woke = Instant::now();
                }
            }
            wakeups.inc();
            let now = Instant::now();
            self.engine.handle_timeout(now);
            if now >= next_tick {
                next_tick = now + Duration::from_secs(1);
                self.engine.check_failures(now);
                let counters = self.engine.take_counters();
                let packets = counters.rtp_in + counters.rtp_out;
                self.metrics.add(counters);
                let peers = self.engine.peer_count() as i64;
                self.metrics.peer_connections.add(peers - peers_reported);
                peers_reported = peers;
                let calls = self.engine.call_count() as i64;
                self.metrics.calls.add(calls - calls_reported);
                calls_reported = calls;
                let window = now.saturating_duration_since(window_start);
                self.load.calls.store(calls as usize, Ordering::Relaxed);
                self.load.peers.store(peers as usize, Ordering::Relaxed);
                if !window.is_zero() {
                    let ratio = busy.as_secs_f64() / window.as_secs_f64();
                    busy_gauge.set(ratio);
                    let rate = packets as f64 / window.as_secs_f64();
                    self.load.busy.store(ratio.to_bits(), Ordering::Relaxed);
                    self.load
                        .packets_per_s
                        .store(rate.to_bits(), Ordering::Relaxed);
                }
                busy = Duration::ZERO;
                window_start = now;
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            if now >= next_stats {
                next_stats = now + self.stats_interval;
                // Whatever was still due from the last interval is computed now, fresh.
                let mut due = self.engine.call_ids();
                due.retain(|c| !self.stats_due.contains(c));
                self.stats_due.extend(due);
            }
            for _ in 0..STATS_PER_WAKEUP {
                let Some(call) = self.stats_due.pop() else {
                    break;
                };
                if let Some(s) = self.engine.call_stats(now, &call) {
                    self.metrics.observe(&s);
                    let _ = self.events.send(MediaEvent::Stats(s));
                }
                // While statistics are due the loop does not return to the runtime, which
                // alone refreshes the sockets' readiness: take what arrived meanwhile now.
                self.poll_peers();
            }
            self.output();
            busy += woke.elapsed();
        }
        self.metrics.peer_connections.sub(peers_reported);
        self.metrics
            .peer_sockets
            .sub(self.peer_sockets.len() as i64);
        self.metrics.calls.sub(calls_reported);
    }

    /// Reads each connected socket with input, a `recvmmsg` batch at a time (up to
    /// [`PEER_BATCHES`] per wake-up, so one busy peer cannot hold the others back), and sends
    /// each batch's output before reading the next: a packet waits for its own batch only.
    ///
    /// Returns whether every socket reported was read until it had nothing left.
    pub(super) fn read_peers(&mut self) -> bool {
        let mut ready = std::mem::take(&mut self.ready);
        let mut drained = ready.len() < udpio::Poller::MAX_EVENTS;
        for &token in &ready {
            let mut emptied = false;
            for _ in 0..PEER_BATCHES {
                let Some(ps) = self.peer_sockets.get(&(token as RawFd)) else {
                    emptied = true;
                    break;
                };
                let n = match self.rx.recv(&ps.sock) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        emptied = true;
                        break;
                    }
                    // An ICMP error from a peer that went away (reported once): look again.
                    Err(_) => break,
                };
                let at = Instant::now();
                for i in 0..n {
                    if let Some((data, _)) = self.rx.get(i) {
                        self.engine.handle_packet(
                            at,
                            TransportProtocol::UDP,
                            ps.peer,
                            BytesMut::from(data),
                        );
                    }
                }
                self.send_transmits();
                if n < udpio::BATCH {
                    emptied = true;
                    break;
                }
            }
            drained &= emptied;
        }
        ready.clear();
        self.ready = ready;
        drained
    }

    /// Reads whatever the connected sockets hold now, without waiting for the runtime to report
    /// their readiness.
    pub(super) fn poll_peers(&mut self) {
        if let Some(p) = &self.poller {
            p.ready(&mut self.ready);
            if !self.ready.is_empty() {
                self.read_peers();
            }
        }
    }

    pub(super) fn command(&mut self, now: Instant, cmd: Cmd) {
        match cmd {
            Cmd::Offer {
                call_id,
                who,
                sdp,
                held,
                reply,
            } => {
                let _ = reply.send(self.engine.offer(now, &call_id, who, sdp, held));
            }
            Cmd::Candidate {
                call_id,
                who,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.engine.candidate(&call_id, &who, candidate));
            }
            Cmd::Hold { call_id, held } => self.engine.set_held(now, &call_id, held),
            Cmd::Leave { call_id, who } => self.engine.leave(&call_id, who.as_ref()),
            Cmd::Stats { reply } => {
                let _ = reply.send(self.engine.stats(now));
            }
            Cmd::Ping { reply } => {
                let _ = reply.send(self.engine.peer_count());
            }
            Cmd::Priority { priority, reply } => {
                let _ = reply.send(set_thread_priority(priority));
            }
        }
    }

    /// From now on this peer's datagrams reach this loop directly: a socket on the media port
    /// connected to the peer takes them from the kernel (no reader thread, no hand-off), and the
    /// loop's `epoll` set watches it. If it cannot be made, the shared socket's reader still
    /// routes them.
    pub(super) fn watch_peer(&mut self, peer: SocketAddr) {
        let Some(local) = self.udp.as_ref().and_then(|s| s.local_addr().ok()) else {
            return;
        };
        let Some(poller) = &self.poller else {
            return;
        };
        if self.peer_fds.contains_key(&peer) {
            return;
        }
        let sock = match udpio::connected(local, peer, SOCKET_BUFFER) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "no connected socket for a media peer");
                return;
            }
        };
        let fd = sock.as_raw_fd();
        if let Err(e) = poller.add(fd, fd as u64) {
            tracing::debug!(%peer, error = %e, "cannot watch a media peer's socket");
            return;
        }
        self.peer_sockets.insert(fd, PeerSocket { peer, sock });
        self.peer_fds.insert(peer, fd);
        self.metrics.peer_sockets.inc();
    }

    pub(super) fn unwatch_peer(&mut self, peer: SocketAddr) {
        let Some(fd) = self.peer_fds.remove(&peer) else {
            return;
        };
        if let Some(poller) = &self.poller {
            poller.remove(fd);
        }
        if self.peer_sockets.remove(&fd).is_some() {
            self.metrics.peer_sockets.dec();
        }
    }

    /// Publishes newly validated addresses (before anything is sent that could make the client
    /// answer from them), then sends the pending datagrams, the UDP ones in `sendmmsg` batches.
    pub(super) fn send_transmits(&mut self) {
        let mut changed = Vec::new();
        {
            let mut learned = self.engine.drain_learned().peekable();
            if learned.peek().is_some() {
                if let Ok(mut map) = self.addr_map.write() {
                    for (protocol, addr, valid) in learned {
                        if protocol != TransportProtocol::UDP {
                            continue;
                        }
                        if valid {
                            map.insert(addr, self.index);
                        } else if map.get(&addr) == Some(&self.index) {
                            map.remove(&addr);
                        }
                        changed.push((addr, valid));
                    }
                }
            }
        }
        for (addr, valid) in changed {
            if valid {
                self.watch_peer(addr);
            } else {
                self.unwatch_peer(addr);
            }
        }
        for t in self.engine.drain_transmits() {
            match t.protocol {
                TransportProtocol::TCP => {
                    if let Ok(w) = self.tcp_writers.lock() {
                        if let Some(tx) = w.get(&t.to) {
                            let _ = tx.send(frame_packet(&t.data));
                        }
                    }
                }
                _ => self.out.push((t.data, t.to)),
            }
        }
        if !self.out.is_empty() {
            if let Some(sock) = &self.udp {
                udpio::send_batch(sock, &self.out);
            }
            self.out.clear();
        }
    }

    pub(super) fn output(&mut self) {
        self.send_transmits();
        for e in self.engine.drain_events() {
            let _ = self.events.send(e);
        }
    }
}

/// Puts the calling thread under `SCHED_RR` at `priority` (clamped to 1–99), or back under the
/// normal policy for `None`. Threads it starts do not inherit it (`SCHED_RESET_ON_FORK`).
pub(super) fn set_thread_priority(priority: Option<u8>) -> io::Result<()> {
    let (policy, level) = match priority {
        Some(p) => (libc::SCHED_RR, p.clamp(1, 99) as libc::c_int),
        None => (libc::SCHED_OTHER, 0),
    };
    let param = libc::sched_param {
        sched_priority: level,
    };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    let r = unsafe { libc::sched_setscheduler(0, policy | libc::SCHED_RESET_ON_FORK, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the loop's `epoll` set has input (forever without one).
pub(super) async fn readable(
    poller: &Option<AsyncFd<udpio::Poller>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, udpio::Poller>> {
    match poller {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}

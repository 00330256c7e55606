//! Batched UDP receive (`recvmmsg`) and send (`sendmmsg`), socket buffer sizing, and a small
//! `epoll` set of sockets: the socket calls the standard library does not offer. Linux only, like
//! the rest of the deployment.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
#[cfg(test)]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};

/// Datagrams taken per `recvmmsg` call.
pub const BATCH: usize = 32;
/// Bytes per datagram buffer: more than any media datagram (MTU-sized).
const DATAGRAM: usize = 2048;

/// Asks the kernel for `bytes` of receive and send buffer (it may cap them at
/// `net.core.rmem_max`/`wmem_max`; as root the caps are bypassed). Returns the receive buffer
/// granted. The default (~208 KiB) holds fewer than 200 MTU-sized datagrams: a burst or a short
/// stall of the reader would drop packets.
pub fn set_buffers(sock: &UdpSocket, bytes: usize) -> usize {
    let fd = sock.as_raw_fd();
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [
        libc::SO_RCVBUFFORCE,
        libc::SO_RCVBUF,
        libc::SO_SNDBUFFORCE,
        libc::SO_SNDBUF,
    ] {
        // SAFETY: fd is a live socket owned by `sock`; the option value is a c_int of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: as above; `got` and `len` are valid for writes of their sizes.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &mut got as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        );
    }
    got.max(0) as usize
}

/// A UDP socket bound to `addr` with `SO_REUSEADDR`, so that [`connected`] sockets can share its
/// port.
pub fn bind_shared(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = new_socket(addr)?;
    bind(&sock, addr)?;
    Ok(sock)
}

/// A non-blocking UDP socket on the same local address as a [`bind_shared`] socket, connected to
/// `remote`, with `buffer` bytes of socket buffers: the kernel hands it every datagram from
/// `remote` (a connected socket is the more specific match), so the loop that owns `remote` reads
/// its packets directly.
pub fn connected(local: SocketAddr, remote: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let sock = new_socket(local)?;
    set_buffers(&sock, buffer);
    bind(&sock, local)?;
    sock.connect(remote)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

fn new_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the descriptor is checked and then owned by the returned socket.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: fd is live; the value is a c_int of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn bind(sock: &UdpSocket, addr: SocketAddr) -> io::Result<()> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = write_sockaddr(&mut storage, addr);
    // SAFETY: storage holds a valid address of `len` bytes.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Buffers for one `recvmmsg` of up to [`BATCH`] datagrams.
pub struct BatchReceiver {
    bufs: Vec<[u8; DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: [usize; BATCH],
}

impl Default for BatchReceiver {
    fn default() -> Self {
        BatchReceiver {
            bufs: vec![[0u8; DATAGRAM]; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            lens: [0; BATCH],
        }
    }
}

impl BatchReceiver {
    /// Blocks until at least one datagram arrives (or the socket's read timeout passes), then takes
    /// every datagram already queued, up to [`BATCH`]. Returns how many.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain old data; every pointer set below outlives the call.
        let mut iovs: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for (i, (m, iov)) in msgs.iter_mut().zip(iovs.iter_mut()).enumerate() {
            iov.iov_base = self.bufs[i].as_mut_ptr() as *mut libc::c_void;
            iov.iov_len = DATAGRAM;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name =
                &mut self.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            m.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: `msgs` holds BATCH valid headers pointing into `iovs`, `self.bufs` and
        // `self.addrs`, which live for the whole call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.lens[i] = m.msg_len as usize;
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch and its source, if the source is an IP address.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let addr = to_socket_addr(&self.addrs[i])?;
        Some((&self.bufs[i][..self.lens[i].min(DATAGRAM)], addr))
    }
}

/// Most segments in one segmented send (the kernel's `UDP_MAX_SEGMENTS` since Linux 4.18).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send: one IP datagram's payload, less headers, with a margin.
const GSO_MAX_BYTES: usize = 65_000;
/// `UDP_SEGMENT` from `linux/udp.h` (the `libc` crate has it only for some targets).
const UDP_SEGMENT: libc::c_int = 103;
/// Whether segmented sends are still tried: cleared the first time the kernel or the route says
/// it cannot do them (`EIO`, `EOPNOTSUPP`, `ENOPROTOOPT`).
static GSO: AtomicBool = AtomicBool::new(true);
/// Segmented sends the kernel accepted, since the process started (tests check that runs went
/// segmented; nothing else reads it).
#[cfg(test)]
static GSO_SENDS: AtomicU64 = AtomicU64::new(0);

/// Turns segmented sends on (the default) or off for the whole process (`[media] udp_gso`); when
/// on, the first send the kernel cannot segment turns them off again.
pub fn set_segmentation(on: bool) {
    GSO.store(on, Ordering::Relaxed);
}

/// Sends every datagram of `out` from `sock` with as few `sendmmsg` calls as it takes (up to
/// [`BATCH`] datagrams each). Consecutive datagrams to one destination that share a size (the last
/// may be shorter) go as one segmented message (UDP GSO, `UDP_SEGMENT`): the kernel's send path
/// runs once for the run and splits it into the same datagrams at the end, so the receiver sees
/// no difference. Where the kernel cannot segment, the run is sent datagram by datagram, and
/// segmenting is not tried again. A datagram the kernel refuses (an unreachable destination, a
/// full buffer) is skipped, as a lost datagram would be. Returns how many were accepted.
pub fn send_batch<B: AsRef<[u8]>>(sock: &UdpSocket, out: &[(B, SocketAddr)]) -> usize {
    send_batch_with(sock, out, GSO.load(Ordering::Relaxed))
}

fn send_batch_with<B: AsRef<[u8]>>(sock: &UdpSocket, out: &[(B, SocketAddr)], gso: bool) -> usize {
    let mut sent = 0;
    let mut chunk = out;
    while !chunk.is_empty() {
        let n = chunk.len().min(BATCH);
        // SAFETY: plain old data; every pointer set below outlives the call.
        let mut iovs: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; BATCH] =
            unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        // One control message per message (a `u16` segment size), aligned for `cmsghdr`.
        let mut controls = [[0u64; 4]; BATCH];
        // Per message: its first datagram and how many it carries.
        let mut runs = [(0usize, 0usize); BATCH];
        for (i, (data, _)) in chunk[..n].iter().enumerate() {
            let data = data.as_ref();
            iovs[i].iov_base = data.as_ptr() as *mut libc::c_void;
            iovs[i].iov_len = data.len();
        }
        let (mut m, mut j) = (0, 0);
        while j < n {
            let (first, to) = (&chunk[j].0, chunk[j].1);
            let size = first.as_ref().len();
            let mut k = 1;
            while gso && size > 0 && j + k < n && k < GSO_MAX_SEGMENTS && chunk[j + k].1 == to {
                let len = chunk[j + k].0.as_ref().len();
                if len == 0 || len > size || (k + 1) * size > GSO_MAX_BYTES {
                    break;
                }
                k += 1;
                if len < size {
                    break; // only the last segment may be shorter
                }
            }
            let namelen = write_sockaddr(&mut names[m], to);
            let h = &mut msgs[m].msg_hdr;
            h.msg_iov = &mut iovs[j];
            h.msg_iovlen = k;
            h.msg_name = &mut names[m] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = namelen;
            if k > 1 {
                set_segment_size(h, &mut controls[m], size as u16);
            }
            runs[m] = (j, k);
            m += 1;
            j += k;
        }
        let mut off = 0;
        while off < m {
            // SAFETY: msgs[off..m] are valid headers pointing into `iovs`, `names`, `controls`
            // and the caller's buffers (only read by the kernel), which all live for the call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr().add(off),
                    (m - off) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let (first, count) = runs[off];
                if count > 1 {
                    // The segmented message failed: its datagrams one by one instead, and no
                    // more segmenting if the kernel cannot do it at all.
                    let unsupported = matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                    );
                    if unsupported && GSO.swap(false, Ordering::Relaxed) {
                        tracing::info!(error = %e, "UDP segmentation offload unavailable: sending datagram by datagram");
                    }
                    sent += send_batch_with(sock, &chunk[first..first + count], false);
                }
                off += 1; // the first message failed: skip it
            } else {
                let accepted = r as usize;
                for &(_, count) in &runs[off..off + accepted] {
                    sent += count;
                    #[cfg(test)]
                    if count > 1 {
                        GSO_SENDS.fetch_add(1, Ordering::Relaxed);
                    }
                }
                off += accepted;
            }
        }
        chunk = &chunk[n..];
    }
    sent
}

/// Attaches a `UDP_SEGMENT` control message of `size` to `h`, in `buf`.
fn set_segment_size(h: &mut libc::msghdr, buf: &mut [u64; 4], size: u16) {
    // SAFETY: CMSG_SPACE of a u16 (24 bytes on 64-bit Linux) fits in `buf`'s 32 bytes, which are
    // aligned for `cmsghdr`; CMSG_FIRSTHDR then points into `buf`, and its data has room for the
    // u16 written.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
        debug_assert!(space <= std::mem::size_of_val(buf));
        h.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
        h.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
    }
}

fn write_sockaddr(storage: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// A level-triggered `epoll` set of sockets, each with a token. Its own descriptor is readable
/// while any member is, so one registration with the async runtime covers every member.
pub struct Poller {
    fd: OwnedFd,
}

impl Poller {
    /// Members reported by one [`Poller::ready`] at most.
    pub const MAX_EVENTS: usize = 64;

    /// An empty set.
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain epoll_create1(2); the descriptor is checked and then owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: fd is a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Another handle on the same set (to add and remove members while this one is registered
    /// with the runtime).
    pub fn try_clone(&self) -> io::Result<Poller> {
        Ok(Poller {
            fd: self.fd.try_clone()?,
        })
    }

    /// Watches `fd` for input, reported with `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are live; `ev` is valid for the call.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (closing it does too).
    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as above; an fd that is not a member only makes the call fail.
        unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// The tokens of the members with input now (never blocks), into `ready` (cleared first).
    pub fn ready(&self, ready: &mut Vec<u64>) {
        ready.clear();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; Self::MAX_EVENTS];
        // SAFETY: `events` has room for `events.len()` entries the kernel writes.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                0,
            )
        };
        for e in events.iter().take(n.max(0) as usize) {
            ready.push(e.u64);
        }
    }
}

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_takes_every_queued_datagram_with_its_source() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert!(set_buffers(&rx, 1 << 20) >= 200_000);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..40u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = BatchReceiver::default();
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = b.recv(&rx).unwrap();
            assert!(n <= BATCH);
            for i in 0..n {
                let (data, from) = b.get(i).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                assert_eq!(data.len(), 100);
                got.push(data[0]);
            }
        }
        assert_eq!(got, (0..40).collect::<Vec<u8>>());
    }

    #[test]
    fn a_connected_socket_takes_its_peer_s_datagrams_from_the_shared_port() {
        let shared = bind_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        shared
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let local = shared.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let only_a = connected(local, a.local_addr().unwrap(), 1 << 20).unwrap();
        only_a.set_nonblocking(false).unwrap();
        only_a
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        a.send_to(b"from a", local).unwrap();
        b.send_to(b"from b", local).unwrap();
        let mut buf = [0u8; 16];
        let n = only_a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"from a");
        let (n, from) = shared.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"from b"[..], b.local_addr().unwrap()));
        // Both send from the one port.
        only_a.send(b"reply").unwrap();
        let (_, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!(from, local);
    }

    /// A sender and two receivers (`a`, `b`) with room for a burst, on loopback.
    fn sender_and_two_receivers() -> (UdpSocket, UdpSocket, UdpSocket) {
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tx, a, b) = (bind(), bind(), bind());
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            set_buffers(s, 4 << 20);
        }
        (tx, a, b)
    }

    /// Each datagram of `out` arrived at its receiver (`a` or `b`) from `tx`, whole and in order.
    fn assert_arrived(tx: &UdpSocket, a: &UdpSocket, b: &UdpSocket, out: &[(Vec<u8>, SocketAddr)]) {
        let mut buf = [0u8; 2048];
        for (i, (data, to)) in out.iter().enumerate() {
            let s = if *to == a.local_addr().unwrap() { a } else { b };
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&data[..], tx.local_addr().unwrap()),
                "datagram {i}"
            );
        }
    }

    #[test]
    fn a_batch_is_sent_in_order_to_each_destination() {
        let (tx, a, b) = sender_and_two_receivers();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // More than one sendmmsg's worth, alternating destinations.
        let out: Vec<(Vec<u8>, SocketAddr)> = (0..(BATCH as u8 + 8))
            .map(|i| {
                (
                    vec![i; 10 + i as usize],
                    if i % 2 == 0 { to_a } else { to_b },
                )
            })
            .collect();
        assert_eq!(send_batch(&tx, &out), out.len());
        assert_arrived(&tx, &a, &b, &out);
    }

    #[test]
    fn runs_to_one_destination_go_segmented_and_arrive_as_the_same_datagrams() {
        let (tx, a, b) = sender_and_two_receivers();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Runs that a segmented send may carry and runs it may not: 70 full-size datagrams to `a`
        // (over one send's 64 segments and over one sendmmsg's 32 datagrams), a shorter one that
        // ends the run, a longer one that starts the next, one to `b` in between, sizes that
        // differ, and an empty datagram.
        let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
        let mut tag = 0u8;
        let mut push = |len: usize, to: SocketAddr| {
            tag = tag.wrapping_add(1);
            let mut d = vec![tag; len];
            if len > 1 {
                d[len - 1] = 0xEE; // the end of each datagram, to catch a wrong split
            }
            out.push((d, to));
        };
        for _ in 0..70 {
            push(1200, to_a);
        }
        push(700, to_a);
        push(1200, to_a);
        push(1200, to_a);
        push(300, to_b);
        push(1200, to_a);
        for len in [500, 500, 400, 600, 600] {
            push(len, to_b);
        }
        push(0, to_b);
        push(90, to_b);
        let before = GSO_SENDS.load(Ordering::Relaxed);
        assert_eq!(send_batch(&tx, &out), out.len());
        assert_arrived(&tx, &a, &b, &out);
        assert!(
            !GSO.load(Ordering::Relaxed) || GSO_SENDS.load(Ordering::Relaxed) > before,
            "no segmented send although the kernel takes them"
        );
    }

    #[test]
    fn the_poller_reports_the_sockets_with_input() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let poller = Poller::new().unwrap();
        poller.add(a.as_raw_fd(), 1).unwrap();
        poller.add(b.as_raw_fd(), 2).unwrap();
        let mut ready = vec![99];
        poller.ready(&mut ready);
        assert!(ready.is_empty());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", b.local_addr().unwrap()).unwrap();
        for _ in 0..2000 {
            poller.ready(&mut ready);
            if !ready.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ready, vec![2]);
        // Level-triggered: still ready until read.
        poller.ready(&mut ready);
        assert_eq!(ready, vec![2]);
        poller.remove(b.as_raw_fd());
        poller.ready(&mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn an_empty_socket_times_out() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = BatchReceiver::default().recv(&rx).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }
}

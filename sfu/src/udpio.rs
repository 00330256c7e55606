//! Batched UDP receive (`recvmmsg`) and socket buffer sizing, the two socket calls the standard
//! library does not offer. Linux only, like the rest of the deployment.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};

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
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: storage holds a valid address of `len` bytes.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
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
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: DATAGRAM,
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; every pointer set below outlives the call.
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|_| unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() })
            .collect();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_name =
                &mut self.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            m.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: `msgs` holds BATCH valid headers pointing into `self.bufs` and `self.addrs`,
        // which live for the whole call.
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

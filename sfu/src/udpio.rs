//! Batched UDP receive (`recvmmsg`) and socket buffer sizing, the two socket calls the standard
//! library does not offer. Linux only, like the rest of the deployment.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

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

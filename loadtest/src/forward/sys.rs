//! The system figures the forwarding bench reads and the socket options it sets: clocks (thread
//! and process CPU), resident set and malloc heap, the CPU time of this process's threads by name
//! (`/proc/self/task/*/schedstat`), socket receive buffers (raised through `/proc/self/fd` for
//! sockets that library code owns), the kernel's UDP drop counters, and kernel receive timestamps
//! (`SO_TIMESTAMPNS`).

use std::io;
use std::net::{SocketAddr, SocketAddrV4};

/// `CLOCK_REALTIME` in nanoseconds (the clock of `SO_TIMESTAMPNS`).
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CPU time of the calling thread.
pub fn thread_cpu_ns() -> i64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CPU time of this process (all threads), from `getrusage`.
pub fn process_cpu_s() -> f64 {
    // SAFETY: zeroed rusage is a valid out value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The machine's CPU time since boot from `/proc/stat`'s first line, in clock ticks: (busy,
/// total), where idle and iowait are the time not busy. Two readings give how busy every core
/// was in between.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    let v: Vec<u64> = cpu
        .split_whitespace()
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The fraction of all cores that were busy between two [`machine_ticks`] readings.
pub fn machine_busy(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((busy_a, total_a), (busy_b, total_b)) = (a?, b?);
    let total = total_b.checked_sub(total_a).filter(|t| *t > 0)?;
    Some(busy_b.saturating_sub(busy_a) as f64 / total as f64)
}

/// Resident set size of this process (`VmRSS`), bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes allocated through malloc and not freed (all arenas, mmapped chunks included).
pub fn heap_bytes() -> u64 {
    // SAFETY: no arguments; glibc returns a plain struct.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// This process's threads whose name starts with `prefix`: (tid, name).
pub fn threads(prefix: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(name) = std::fs::read_to_string(e.path().join("comm")) {
            let name = name.trim().to_owned();
            if name.starts_with(prefix) {
                out.push((tid, name));
            }
        }
    }
    out.sort();
    out
}

/// CPU time a thread of this process has used (`schedstat`: nanoseconds on CPU), or from
/// `stat` (utime + stime in clock ticks) where schedstat is missing.
pub fn task_cpu_ns(tid: u32) -> u64 {
    let base = format!("/proc/self/task/{tid}");
    if let Some(ns) = std::fs::read_to_string(format!("{base}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
    {
        return ns;
    }
    let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    f.get(11)
        .copied()
        .unwrap_or(0)
        .saturating_add(f.get(12).copied().unwrap_or(0))
        * 1_000_000_000
        / hz
}

/// Raises a socket's receive buffer (past `rmem_max` when we may).
pub fn set_rcvbuf(fd: i32, bytes: i32) {
    let set = |opt| {
        // SAFETY: valid fd, pointer to an i32 of the given length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        set(libc::SO_RCVBUF);
    }
}

fn local_addr(fd: i32) -> Option<SocketAddr> {
    // SAFETY: zeroed storage is a valid out value; getsockname fails on non-sockets.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid pointers and length.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 || ss.ss_family as i32 != libc::AF_INET {
        return None;
    }
    // SAFETY: family checked: it is a sockaddr_in.
    let sin: libc::sockaddr_in =
        unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
    Some(SocketAddr::V4(SocketAddrV4::new(
        u32::from_be(sin.sin_addr.s_addr).into(),
        u16::from_be(sin.sin_port),
    )))
}

fn is_udp(fd: i32) -> bool {
    let mut ty: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid pointers and length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut i32).cast(),
            &mut len,
        )
    };
    r == 0 && ty == libc::SOCK_DGRAM
}

/// Raises the receive buffer of this process's IPv4 UDP sockets that `pick` selects (sockets
/// owned by library code: the SFU's, the clients'). Returns how many were raised.
pub fn raise_udp_rcvbufs(pick: impl Fn(SocketAddr) -> bool) -> usize {
    let mut n = 0;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    for e in dir.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(addr) = local_addr(fd) {
            if is_udp(fd) && pick(addr) {
                set_rcvbuf(fd, super::RCVBUF);
                n += 1;
            }
        }
    }
    n
}

/// The kernel's drop counters of every IPv4 UDP socket bound to `port` (`/proc/net/udp`),
/// summed: the SFU's shared socket and the sockets it connects to validated peers.
pub fn udp_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    let mut total = None;
    for l in table.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1).is_some_and(|a| a.ends_with(&want)) {
            if let Some(n) = f.last().and_then(|n| n.parse::<u64>().ok()) {
                *total.get_or_insert(0) += n;
            }
        }
    }
    total
}

pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Asks the kernel to timestamp datagrams as they reach this socket.
pub fn enable_rx_timestamps(fd: i32) -> io::Result<()> {
    let on: i32 = 1;
    // SAFETY: valid fd and option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram and the kernel's receive timestamp (`CLOCK_REALTIME` ns), if any.
pub fn recv_timestamped(fd: i32, buf: &mut [u8], flags: i32) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: hdr describes valid buffers.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled in.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                ts = Some(t.tv_sec * 1_000_000_000 + t.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Ok((n as usize, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_busy_fraction_is_busy_ticks_over_all_ticks() {
        assert_eq!(
            machine_busy(Some((100, 1000)), Some((250, 1200))),
            Some(0.75)
        );
        // No time passed, or a reading missing: no figure rather than a division by zero.
        assert_eq!(machine_busy(Some((100, 1000)), Some((100, 1000))), None);
        assert_eq!(machine_busy(None, Some((100, 1000))), None);
        // This machine's own /proc/stat reads, and busy never exceeds the total.
        let (busy, total) = machine_ticks().expect("/proc/stat");
        assert!(busy <= total && total > 0);
    }
}

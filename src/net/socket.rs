//! Socket creation and options with Go's defaults (Go's `sysSocket`,
//! `setDefaultSockopts`, `listenerBacklog`, `newTCPConn`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, TcpKeepalive, Type};

/// Go 1.23's `defaultTCPKeepAliveIdle`, `…Interval` and `…Count`.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const KEEPALIVE_COUNT: u32 = 9;

/// Linux's `SOMAXCONN`, Go's fallback when `/proc/sys/net/core/somaxconn` is unreadable or 0.
const DEFAULT_BACKLOG: i32 = 128;

/// A non-blocking, close-on-exec socket (Go's `sysSocket`) with Go's `setDefaultSockopts`:
/// IPv6 sockets are dual-stack (`IPV6_V6ONLY` off, set explicitly rather than left to the
/// system's `net.ipv6.bindv6only`), so a listener on `[::]` also takes IPv4 connections.
pub(crate) fn new_socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    let socket = Socket::new(domain, ty.nonblocking().cloexec(), None)?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// The listen backlog: `/proc/sys/net/core/somaxconn`, read once (Go's `listenerBacklog`).
pub(crate) fn listen_backlog() -> i32 {
    static BACKLOG: OnceLock<i32> = OnceLock::new();
    *BACKLOG.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
            .filter(|&n| n > 0)
            .map_or(DEFAULT_BACKLOG, |n| n.min(i32::MAX as i64) as i32)
    })
}

/// A bound, listening TCP socket with `SO_REUSEADDR` (Go's `setDefaultListenerSockopts`).
pub(crate) fn tcp_listener(addr: SocketAddr) -> io::Result<Socket> {
    let socket = new_socket(Domain::for_address(addr), Type::STREAM)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(listen_backlog())?;
    Ok(socket)
}

/// Go's `newTCPConn` defaults: no Nagle delay, keep-alive 15 s / 15 s / 9.
pub(crate) fn set_tcp_defaults(socket: &Socket) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    set_keepalive(socket, Some(KEEPALIVE_IDLE))
}

/// Enables keep-alive probes after `idle` (and every `idle` after that, 9 times), or disables
/// them with `None`. The kernel counts whole seconds: a fraction rounds up, as Go's
/// `roundDurationUp` does (truncating would turn 1.5 s into 1 s and 500 ms into an `EINVAL`).
pub(crate) fn set_keepalive(socket: &Socket, idle: Option<Duration>) -> io::Result<()> {
    match idle {
        None => socket.set_keepalive(false),
        Some(idle) => {
            let idle = round_up_to_seconds(idle);
            let interval = if idle == KEEPALIVE_IDLE {
                KEEPALIVE_INTERVAL
            } else {
                idle
            };
            let ka = TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval)
                .with_retries(KEEPALIVE_COUNT);
            socket.set_tcp_keepalive(&ka)
        }
    }
}

/// `d` rounded up to a whole number of seconds (saturating).
fn round_up_to_seconds(d: Duration) -> Duration {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 {
        d
    } else {
        Duration::from_secs(secs.saturating_add(1))
    }
}

/// One `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` (Go's `accept`), mapping the would-block and
/// interrupted cases through `io::Error` for the caller's loop.
pub(crate) fn accept(fd: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    // SAFETY: `try_init` hands us a zeroed `sockaddr_storage` and its length to fill in, which
    // is exactly accept4's contract; `fd` is a listening socket owned by the caller.
    let (res, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                fd,
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })
    }?;
    // SAFETY: accept4 returned a new descriptor that nobody else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) };
    Ok((fd, addr))
}

/// Whether an `accept` error is Go's "retry silently" case: the connection was reset while it
/// sat in the accept queue (`TestAcceptIgnoreAbortedConnRequest`).
pub(crate) fn is_aborted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECONNABORTED)
}

/// Borrows a raw socket fd as a `socket2::Socket` for option calls, without taking ownership.
pub(crate) fn with_socket<R>(fd: RawFd, f: impl FnOnce(&Socket) -> io::Result<R>) -> io::Result<R> {
    // SAFETY: the caller holds a reference on the socket, so `fd` stays open for this call;
    // `ManuallyDrop` keeps the borrowed `Socket` from closing it.
    let socket =
        std::mem::ManuallyDrop::new(unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    f(&socket)
}

// The data path's receives and sends enter the kernel through `syscall(2)`, not through glibc's
// functions of the same name. Those are POSIX cancellation points: each call switches the
// thread's asynchronous cancellation on and off around the system call, for `pthread_cancel`,
// which Rust code never uses (under callgrind, 60 instructions of the echo server's 1,200 per
// request). Go's runtime makes these system calls directly too.

/// `recvfrom(2)` without glibc's cancellation wrapper (above); -1 and `errno` on failure.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes, and `addr`/`addr_len` null or valid for a
/// `recvfrom` to fill in, for the duration of the call.
unsafe fn sys_recvfrom(
    fd: RawFd,
    buf: *mut libc::c_void,
    len: usize,
    flags: libc::c_int,
    addr: *mut libc::sockaddr,
    addr_len: *mut libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract; every argument is passed at full register width.
    unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd as libc::c_long,
            buf,
            len,
            flags as libc::c_long,
            addr,
            addr_len,
        ) as isize
    }
}

/// `sendto(2)` without glibc's cancellation wrapper (above); -1 and `errno` on failure.
///
/// # Safety
/// `buf` must be valid for reads of `len` bytes, and `addr` null or valid for reads of
/// `addr_len` bytes, for the duration of the call.
unsafe fn sys_sendto(
    fd: RawFd,
    buf: *const libc::c_void,
    len: usize,
    flags: libc::c_int,
    addr: *const libc::sockaddr,
    addr_len: libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract; every argument is passed at full register width.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            buf,
            len,
            flags as libc::c_long,
            addr,
            addr_len as libc::c_long,
        ) as isize
    }
}

/// `recv(2)` into `buf` with `flags`.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call; no
    // address is asked for.
    let n = unsafe {
        sys_recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    super::fd::cvt(n)
}

/// `send(2)` with `MSG_NOSIGNAL`: a write to a reset connection returns `EPIPE` instead of
/// killing the process with `SIGPIPE`.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call; no
    // address is given.
    let n = unsafe {
        sys_sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null(),
            0,
        )
    };
    super::fd::cvt(n)
}

/// `readv(2)`.
pub(crate) fn readv(fd: RawFd, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    // SAFETY: `IoSliceMut` is ABI-compatible with `iovec` on Unix (std guarantees it), and
    // each slice is valid for writes for the duration of the call.
    let res = unsafe { libc::readv(fd, bufs.as_mut_ptr().cast(), n) };
    super::fd::cvt(res)
}

/// `sendmsg(2)` of several buffers with `MSG_NOSIGNAL` (a `writev` that cannot raise SIGPIPE).
pub(crate) fn sendv(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the kernel only reads the buffers,
    // which are valid for the duration of the call.
    let res = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    super::fd::cvt(res)
}

/// `SO_ERROR`: the pending error of a socket (how a non-blocking connect reports its result).
pub(crate) fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    with_socket(fd, |s| s.take_error())
}

pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    with_socket(fd, |s| s.local_addr()).and_then(|a| {
        a.as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    })
}

pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    with_socket(fd, |s| s.peer_addr()).and_then(|a| {
        a.as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))
    })
}

// ---- Datagram helpers (UDP and Unix datagram sockets). ----

/// A bound UDP socket with Go's `setDefaultSockopts` for datagram sockets: `SO_BROADCAST` on.
pub(crate) fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = new_socket(Domain::for_address(addr), Type::DGRAM)?;
    socket.set_broadcast(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `recvfrom(2)` into `buf` with `flags`, returning the sender's address.
///
/// An empty `buf` is still a real receive: on a datagram socket it consumes one datagram.
pub(crate) fn recv_from(
    fd: RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, SockAddr)> {
    // SAFETY: `try_init` hands us a zeroed `sockaddr_storage` and its length, which recvfrom
    // fills in (or leaves zeroed); `buf` is valid for writes of `buf.len()` bytes.
    unsafe {
        SockAddr::try_init(|storage, len| {
            let n = sys_recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                storage.cast(),
                len,
            );
            super::fd::cvt(n)
        })
    }
}

/// `sendto(2)` with `MSG_NOSIGNAL` (never raises `SIGPIPE`).
pub(crate) fn send_to(fd: RawFd, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes, and `addr` points to `addr.len()`
    // initialised bytes of a socket address, for the duration of the call.
    let n = unsafe {
        sys_sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            addr.as_ptr().cast(),
            addr.len(),
        )
    };
    super::fd::cvt(n)
}

#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
/// `recv(2)` into a buffer that may be uninitialised. On `Ok(n)` the first `n` bytes of `buf`
/// are initialised: the kernel wrote them. Nothing is ever de-initialised (the kernel only
/// stores bytes), so `buf` may also be a cast of an initialised `&mut [u8]`.
pub(crate) fn recv_uninit(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call
    // (`MaybeUninit<u8>` has the layout of `u8`), and `recv` writes at most that many.
    let n = unsafe {
        sys_recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

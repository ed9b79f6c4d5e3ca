//! TCP: Go's `net.TCPListener` and `net.TCPConn`.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::fd::NetFd;
use super::socket;
use crate::pd::{Mode, PollError};

/// A TCP listening socket.
///
/// Clones share the socket. [`TcpListener::close`] (from any clone) wakes a pending `accept`
/// with the closed error; dropping the last clone closes the socket.
///
/// ```
/// # let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
/// # rt.block_on(async {
/// use netpoll::net::{TcpListener, TcpStream};
/// let ln = TcpListener::bind("127.0.0.1:0")?;
/// let addr = ln.local_addr()?;
/// netpoll::spawn(async move {
///     let (conn, _) = ln.accept().await.unwrap();
///     let mut buf = [0; 5];
///     conn.read_exact(&mut buf).await.unwrap();
///     conn.write_all(&buf).await.unwrap();
/// });
/// let conn = TcpStream::connect(addr).await?;
/// conn.write_all(b"hello").await?;
/// let mut buf = [0; 5];
/// conn.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TcpListener {
    fd: NetFd,
}

/// A TCP connection.
///
/// Clones share the connection: one task can read while another writes, and any clone can
/// close it. See the [module docs](super) for deadlines and close semantics.
#[derive(Clone)]
pub struct TcpStream {
    fd: NetFd,
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

impl TcpListener {
    /// Binds and listens on `addr` (the first address that works), with `SO_REUSEADDR` and the
    /// system's maximum backlog.
    ///
    /// Host names are resolved on the calling thread; pass an IP address (or use
    /// [`lookup_host`](super::lookup_host)) to avoid blocking a worker.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let handle = crate::sched::context::current();
        let mut last = None;
        for addr in resolve(addr)? {
            match socket::tcp_listener(addr) {
                Ok(s) => {
                    let fd = NetFd::with_handle(OwnedFd::from(s), &handle)?;
                    return Ok(TcpListener { fd });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Wraps a listening `std` socket (made non-blocking here).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            fd: NetFd::new(OwnedFd::from(listener))?,
        })
    }

    /// Waits for a connection. The new stream has `TCP_NODELAY` and keep-alive set, and
    /// belongs to the listener's runtime.
    ///
    /// Connections reset while queued are skipped (Go). Running out of file descriptors
    /// (`EMFILE`, `ENFILE`) is returned to the caller; the listener keeps working once
    /// descriptors are free again.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = self
            .fd
            .read_op(|fd| loop {
                match socket::accept(fd) {
                    Err(e) if socket::is_aborted(&e) => continue,
                    other => return other,
                }
            })
            .await?;
        let socket = Socket::from(fd);
        // Go ignores these errors too: the peer may already have gone.
        let _ = socket::set_tcp_defaults(&socket);
        let addr = addr
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a non-inet connection"))?;
        let fd = NetFd::with_handle(OwnedFd::from(socket), self.fd.handle())?;
        fd.set_tcp_stream();
        Ok((TcpStream { fd }, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(socket::local_addr)
    }

    /// Sets the deadline for `accept` (`None` clears). See the module docs.
    pub fn set_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, None)
    }

    /// Sets the deadline to `d` from now: `set_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, None)
    }

    /// Closes the listener: a pending `accept` fails with the closed error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }

    /// `IP_TTL` of accepted connections.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.ttl_v4()))
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.set_ttl_v4(ttl)))
    }
}

impl TcpStream {
    /// Connects to `addr`, trying each resolved address in turn; when all fail, the first
    /// address's error is returned (Go's `dialSerial`).
    ///
    /// Host names are resolved on the calling thread (see [`TcpListener::bind`]).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Self::connect_with(addr, None).await
    }

    /// Connects, failing with `TimedOut` if the connection is not established within
    /// `timeout` (Go's `DialTimeout`).
    ///
    /// With several addresses, each in turn gets an equal share of the time left, but at least
    /// 2 s (Go's `partialDeadline`), so one address that does not answer cannot use up the
    /// whole timeout. When all fail, the first address's error is returned.
    pub async fn connect_timeout(
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        let deadline = Instant::now().checked_add(timeout);
        Self::connect_with(addr, Some(deadline.unwrap_or_else(far_future))).await
    }

    /// Connects, failing with `TimedOut` if the connection is not established by `deadline`
    /// (Go's `Dialer.Deadline`; a past deadline fails at once).
    pub async fn connect_deadline(
        addr: impl ToSocketAddrs,
        deadline: Instant,
    ) -> io::Result<TcpStream> {
        Self::connect_with(addr, Some(deadline)).await
    }

    async fn connect_with(
        addr: impl ToSocketAddrs,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        // Go's `dialSerial`: each address in turn, each with its share of the time left; the
        // first error is the one reported.
        let addrs = resolve(addr)?;
        let mut first_err = None;
        for (i, addr) in addrs.iter().enumerate() {
            let result = match deadline {
                None => Self::connect_retrying(*addr, None).await,
                Some(deadline) => match partial_deadline(Instant::now(), deadline, addrs.len() - i)
                {
                    Some(d) => Self::connect_retrying(*addr, Some(d)).await,
                    None => Err(PollError::Timeout.into()),
                },
            };
            match result {
                Ok(s) => return Ok(s),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("at least one address"))
    }

    /// Go's `doDialTCPProto` retries. With the local port left to the kernel, two dials can go
    /// wrong in ways that say nothing about the peer, and each is retried at most twice, after
    /// which the result stands:
    ///
    /// * **self-connect**: dialling a local port nobody listens on, the kernel may pick that
    ///   very port as the source, and TCP's simultaneous open connects the socket to itself
    ///   (Go issue 2690). The connection is closed and the dial tried again;
    /// * **spurious `EADDRNOTAVAIL`**: the kernel picked a local port still in use.
    async fn connect_retrying(
        addr: SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        let mut retries = 2;
        loop {
            let result = Self::connect_addr(addr, deadline).await;
            let retry = match &result {
                Ok(s) => s.is_self_connected(),
                Err(e) => e.raw_os_error() == Some(libc::EADDRNOTAVAIL),
            };
            if !retry || retries == 0 {
                return result;
            }
            retries -= 1;
            // Dropping a self-connected stream closes it.
        }
    }

    /// Go's `selfConnect`: the local and remote addresses are the same.
    fn is_self_connected(&self) -> bool {
        match (self.local_addr(), self.peer_addr()) {
            (Ok(local), Ok(peer)) => local == peer,
            _ => false,
        }
    }

    /// Go's `netFD.connect`: start a non-blocking connect, then wait for writability and read
    /// `SO_ERROR`, confirming with `getpeername` because the poller may wake spuriously.
    async fn connect_addr(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let s = socket::new_socket(Domain::for_address(addr), Type::STREAM)?;
        let fd = NetFd::new(OwnedFd::from(s))?;
        if deadline.is_some() {
            fd.set_deadline(deadline, Some(Mode::Write))?;
        }
        {
            let _guard = fd.lock_write().await?;
            let raw = fd.as_raw_fd();
            let started = socket::with_socket(raw, |s| s.connect(&addr.into()));
            match started {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EISCONN) => {}
                Err(e) if in_progress(&e) => loop {
                    fd.wait_write_locked().await?;
                    match socket::take_error(raw)? {
                        Some(e) if in_progress(&e) => continue,
                        Some(e) if e.raw_os_error() == Some(libc::EISCONN) => break,
                        Some(e) => return Err(e),
                        None => match socket::peer_addr(raw) {
                            Ok(_) => break,
                            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                            Err(e) => return Err(e),
                        },
                    }
                },
                Err(e) => return Err(e),
            }
        }
        if deadline.is_some() {
            fd.set_deadline(None, Some(Mode::Write))?;
        }
        fd.with_ref(|raw| socket::with_socket(raw, socket::set_tcp_defaults))?;
        fd.set_tcp_stream();
        Ok(TcpStream { fd })
    }

    /// Wraps a connected `std` stream (made non-blocking here).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        let fd = NetFd::new(OwnedFd::from(stream))?;
        fd.set_tcp_stream();
        Ok(TcpStream { fd })
    }

    /// Reads into `buf`, waiting for data. `Ok(0)` means the peer closed its side (or `buf` is
    /// empty, which returns at once).
    pub fn read<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.fd.read_stream(buf)
    }

    /// Reads exactly `buf.len()` bytes, holding the read side for the whole call.
    ///
    /// Fails with `UnexpectedEof` if the peer closes first; on an error the bytes already read
    /// are lost, as with `std::io::Read::read_exact`.
    pub fn read_exact<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        self.fd.read_exact(buf)
    }

    /// Scatter read (`readv`).
    pub async fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.fd.read_vectored(bufs).await
    }

    /// Reads without consuming (`MSG_PEEK`).
    pub fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.fd.peek(buf)
    }

    /// Writes some of `buf`, waiting for buffer space; returns how much was written.
    pub fn write<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.fd.write(buf)
    }

    /// Writes all of `buf`, holding the write side for the whole call, so that writes from
    /// several clones never interleave (Go's `Write`).
    ///
    /// On an error (a deadline, a reset) part of `buf` may have been written.
    pub fn write_all<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        self.fd.write_all(buf)
    }

    /// Gather write (`sendmsg` with `MSG_NOSIGNAL`).
    pub async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.fd.write_vectored(bufs).await
    }

    /// Shuts down one or both directions (half-close). Pending operations in that direction
    /// see EOF (read) or `BrokenPipe` (write).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.fd.shutdown(how)
    }

    /// Closes the connection from any clone: every pending operation fails with the closed
    /// error. Closing twice fails with the closed error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }

    /// Sets the read and write deadlines (`None` clears).
    pub fn set_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, None)
    }

    /// Sets the deadline to `d` from now: `set_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, None)
    }

    /// Sets the read deadline (`None` clears).
    pub fn set_read_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, Some(Mode::Read))
    }

    /// Sets the read deadline to `d` from now: `set_read_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_read_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, Some(Mode::Read))
    }

    /// Sets the write deadline (`None` clears).
    pub fn set_write_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, Some(Mode::Write))
    }

    /// Sets the write deadline to `d` from now: `set_write_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_write_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, Some(Mode::Write))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(socket::local_addr)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(socket::peer_addr)
    }

    /// Sets `TCP_NODELAY` (on by default, as in Go).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.set_tcp_nodelay(nodelay)))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.tcp_nodelay()))
    }

    /// Keep-alive probes after `idle` (and every `idle` after that, 9 times); `None` turns them
    /// off. Default: 15 s.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| socket::set_keepalive(s, idle)))
    }

    /// `SO_LINGER`: `Some(ZERO)` makes close send a reset.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.set_linger(linger)))
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.ttl_v4()))
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.set_ttl_v4(ttl)))
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.with_ref(socket::take_error)
    }
}

/// Go's `partialDeadline`: the deadline for one of `remaining` addresses still to try — an
/// equal share of the time left, but at least 2 s (or all of it, if less is left), so that one
/// address that hangs cannot use up the whole timeout and a long list still gives each address
/// a fair try. `None` when the deadline has passed.
fn partial_deadline(now: Instant, deadline: Instant, remaining: usize) -> Option<Instant> {
    /// Go's `saneMinimum`.
    const SANE_MINIMUM: Duration = Duration::from_secs(2);
    let left = deadline
        .checked_duration_since(now)
        .filter(|d| !d.is_zero())?;
    let share = left / u32::try_from(remaining.max(1)).unwrap_or(u32::MAX);
    let share = if share < SANE_MINIMUM {
        left.min(SANE_MINIMUM)
    } else {
        share
    };
    Some(now + share)
}

fn in_progress(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINPROGRESS) | Some(libc::EALREADY) | Some(libc::EINTR)
    )
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.fd.as_raw_fd()).finish()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        if let Ok(peer) = self.peer_addr() {
            d.field("peer", &peer);
        }
        d.field("fd", &self.fd.as_raw_fd()).finish()
    }
}

/// For the ecosystem's I/O traits (`src/compat/`), which poll the shared socket directly.
#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
impl TcpStream {
    pub(crate) fn fd(&self) -> &NetFd {
        &self.fd
    }
}

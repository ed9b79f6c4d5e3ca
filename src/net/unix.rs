//! Unix domain sockets: Go's `net.UnixListener` and `net.UnixConn` (stream and datagram).
//!
//! The three types are [`NetFd`]s like the TCP types, with the same rules (clones share one
//! socket, one reader and one writer at a time, deadlines, `close` from any clone). Addresses
//! are `std::os::unix::net::SocketAddr` — a path, an abstract name, or unnamed — converted
//! to and from the kernel's `sockaddr_un` here (`std_addr`, `kernel_addr`).
//!
//! Where we differ from Go, and why, is documented on the public types (this module is
//! private): the listener's unlink-on-close identity check ([`UnixListener`]), connecting to
//! a full backlog ([`UnixStream`]), and datagram receives ([`UnixDatagram`]).

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::fd::NetFd;
use super::socket;
use crate::pd::{Mode, PollError};

/// The first wait before retrying a `connect` that found the listener's backlog full.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(1);
/// The longest wait between two retries: a guess that keeps a waiting client's wake-ups to
/// about 16 a second while adding at most 64 ms once the server has caught up.
const CONNECT_BACKOFF_MAX: Duration = Duration::from_millis(64);

/// A Unix stream listening socket.
///
/// Clones share the socket. [`UnixListener::close`] (from any clone) wakes a pending `accept`
/// with the closed error. See the [module docs](super) for deadlines and close semantics.
///
/// **The listener removes its socket file.** A listener made by [`UnixListener::bind`] (or
/// [`UnixListener::bind_addr`] with a path) unlinks its path when it is closed, or when its
/// last clone is dropped, as Go's does — but only if the file there is still the one it
/// created (same device and inode), so it never removes a socket that someone bound after
/// it. [`UnixListener::set_unlink_on_close`] turns this off (Go's `SetUnlinkOnClose`).
/// Listeners from [`UnixListener::from_std`] do not unlink unless asked to. No other type
/// ever unlinks anything. Abstract names (Linux; build one with
/// `std::os::linux::net::SocketAddrExt::from_abstract_name` and pass it to
/// [`UnixListener::bind_addr`]) have no file and vanish with the socket.
///
/// ```
/// # let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
/// # rt.block_on(async {
/// use netpoll::net::{UnixListener, UnixStream};
/// let dir = std::env::temp_dir().join(format!("netpoll-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("echo.sock");
/// let ln = UnixListener::bind(&path)?;
/// let server = netpoll::spawn(async move {
///     let (conn, _) = ln.accept().await.unwrap();
///     let mut buf = [0; 5];
///     conn.read_exact(&mut buf).await.unwrap();
///     conn.write_all(&buf).await.unwrap();
///     // `ln` drops here: the socket file is removed.
/// });
/// let conn = UnixStream::connect(&path).await?;
/// conn.write_all(b"hello").await?;
/// let mut buf = [0; 5];
/// conn.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"hello");
/// server.await.unwrap();
/// assert!(!path.exists());
/// # std::fs::remove_dir(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct UnixListener {
    // Declared before `fd`: when the last clone drops, the path is unlinked before the socket
    // is closed (Go's order in `UnixListener.close`).
    path: Option<Arc<SocketPath>>,
    fd: NetFd,
}

/// A Unix stream connection.
///
/// Clones share the connection: one task can read while another writes, and any clone can
/// close it. See the [module docs](super) for deadlines and close semantics.
///
/// **Connecting to a full backlog waits.** Linux fails a non-blocking `connect` with `EAGAIN`
/// while the listener's accept queue is full, and — unlike TCP's `EINPROGRESS` — the socket
/// then gets no readiness event when the queue drains (the connector is on no wait queue),
/// so waiting for writability would never end. Go returns that `EAGAIN` to the caller;
/// [`UnixStream::connect`] instead retries on a timer, backing off from 1 ms to 64 ms, so a
/// burst of clients gets through once the server catches up, without spinning.
/// [`UnixStream::connect_timeout`] bounds the wait.
#[derive(Clone)]
pub struct UnixStream {
    fd: NetFd,
}

/// A Unix datagram socket.
///
/// Clones share the socket, like [`UdpSocket`](super::UdpSocket), and receives follow the
/// same datagram rules: every receive is a real `recvfrom`, also into an empty buffer (an
/// empty datagram is a message: `Ok(0)` is not end of file), and a datagram longer than the
/// buffer is truncated. Sockets bound to a path never unlink it.
///
/// A send to a peer whose queue is full waits. A *connected* socket is woken when the peer
/// drains its queue; an unconnected `send_to` is woken only when one of its own queued
/// datagrams is consumed, so give it a write deadline if other senders may keep the peer's
/// queue full.
///
/// A datagram socket never sees end of file: when a connected peer closes, `recv` keeps
/// waiting (give it a deadline) and `send` fails with `ConnectionRefused`.
#[derive(Clone)]
pub struct UnixDatagram {
    fd: NetFd,
}

/// The credentials of the process at the other end of a Unix socket (`SO_PEERCRED`): taken
/// when the connection was made (or the pair created), not when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UCred {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

impl UCred {
    /// The peer's effective user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The peer's effective group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The peer's process id, if the kernel knows it (it may be in another pid namespace).
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
}

/// The socket file a listener created, and whether to unlink it (Go's `UnixListener.path`,
/// `unlink` and `unlinkOnce`).
struct SocketPath {
    path: PathBuf,
    /// Identity of the file right after `bind`: unlink only while the path still names it.
    dev: u64,
    ino: u64,
    unlink: AtomicBool,
    done: AtomicBool,
}

impl SocketPath {
    /// Records `path` if it names a socket file we can stat; `None` otherwise.
    fn new(path: &Path, unlink: bool) -> Option<Arc<SocketPath>> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(Arc::new(SocketPath {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            unlink: AtomicBool::new(unlink),
            done: AtomicBool::new(false),
        }))
    }

    /// Unlinks the file once, if asked to and if it is still ours. Errors are ignored, as in
    /// Go: the file may already be gone.
    fn unlink_once(&self) {
        if self.done.swap(true, Ordering::AcqRel) || !self.unlink.load(Ordering::Acquire) {
            return;
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                let _ = std::fs::remove_file(&self.path);
            }
            _ => {}
        }
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        self.unlink_once();
    }
}

/// The unnamed address (a socket that never bound). std has no constructor for it; an empty
/// pathname has exactly its representation (`sun_family` alone), which `is_unnamed` reports.
fn unnamed() -> io::Result<SocketAddr> {
    SocketAddr::from_pathname("")
}

/// A kernel address (from `accept`, `recvfrom`, `getsockname`) as std's type.
fn std_addr(addr: &SockAddr) -> io::Result<SocketAddr> {
    if let Some(path) = addr.as_pathname() {
        return SocketAddr::from_pathname(path);
    }
    if let Some(name) = addr.as_abstract_namespace() {
        return SocketAddr::from_abstract_name(name);
    }
    // recvfrom reports an unnamed sender with a zero length (no family at all).
    if addr.len() == 0 || addr.is_unnamed() {
        return unnamed();
    }
    Err(io::Error::other("not a unix socket address"))
}

/// A std address as a kernel address. Unnamed maps to the bare family, which `bind` treats
/// as "autobind to a fresh abstract name" on Linux.
fn kernel_addr(addr: &SocketAddr) -> io::Result<SockAddr> {
    if let Some(path) = addr.as_pathname() {
        return SockAddr::unix(path);
    }
    if let Some(name) = addr.as_abstract_name() {
        let mut bytes = Vec::with_capacity(name.len() + 1);
        bytes.push(0);
        bytes.extend_from_slice(name);
        return SockAddr::unix(OsStr::from_bytes(&bytes));
    }
    SockAddr::unix("")
}

/// A filesystem path as a kernel address. Like std, a path with a NUL byte is refused (socket2
/// would read a leading NUL as an abstract name; use the `*_addr` methods for those).
fn path_addr(path: &Path) -> io::Result<SockAddr> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "paths must not contain NUL bytes",
        ));
    }
    SockAddr::unix(path)
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    socket::with_socket(fd, |s| s.local_addr()).and_then(|a| std_addr(&a))
}

fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    socket::with_socket(fd, |s| s.peer_addr()).and_then(|a| std_addr(&a))
}

fn timed_out() -> io::Error {
    PollError::Timeout.into()
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

fn shutdown(fd: &NetFd, how: Shutdown) -> io::Result<()> {
    fd.with_ref(|fd| socket::with_socket(fd, |s| s.shutdown(how)))
}

impl UnixListener {
    /// Creates a socket file at `path`, binds and listens with the system's maximum backlog.
    /// The file is removed again when the listener is closed or dropped (see
    /// [`UnixListener`]); an existing file at `path` makes this fail with `AddrInUse`.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let mut ln = Self::bind_sockaddr(&path_addr(path)?)?;
        ln.path = SocketPath::new(path, true);
        Ok(ln)
    }

    /// Binds to `addr`, which may be an abstract name. A pathname address is unlinked on close
    /// as with [`UnixListener::bind`].
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        let mut ln = Self::bind_sockaddr(&kernel_addr(addr)?)?;
        if let Some(path) = addr.as_pathname() {
            ln.path = SocketPath::new(path, true);
        }
        Ok(ln)
    }

    #[track_caller]
    fn bind_sockaddr(addr: &SockAddr) -> io::Result<UnixListener> {
        let handle = crate::sched::context::current();
        let s = socket::new_socket(Domain::UNIX, Type::STREAM)?;
        s.bind(addr)?;
        let created = addr.as_pathname().map(Path::to_owned);
        // From here on the file exists: remove it again if we fail (Go's `listenUnix` closes,
        // and `Close` unlinks, on the same error paths).
        let cleanup = |e: io::Error| {
            if let Some(path) = &created {
                let _ = std::fs::remove_file(path);
            }
            e
        };
        s.listen(socket::listen_backlog()).map_err(cleanup)?;
        let fd = NetFd::with_handle(OwnedFd::from(s), &handle).map_err(cleanup)?;
        Ok(UnixListener { path: None, fd })
    }

    /// Wraps a listening `std` socket (made non-blocking here). Its file is not unlinked on
    /// close unless [`UnixListener::set_unlink_on_close`] asks for it.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().and_then(|p| SocketPath::new(p, false)));
        Ok(UnixListener {
            path,
            fd: NetFd::new(OwnedFd::from(listener))?,
        })
    }

    /// Waits for a connection; returns it with the client's address (usually unnamed). The
    /// new stream belongs to the listener's runtime.
    ///
    /// Running out of file descriptors (`EMFILE`, `ENFILE`) is returned to the caller; the
    /// listener keeps working once descriptors are free again.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = self
            .fd
            .read_op(|fd| loop {
                match socket::accept(fd) {
                    Err(e) if socket::is_aborted(&e) => continue,
                    other => return other,
                }
            })
            .await?;
        let addr = std_addr(&addr)?;
        let fd = NetFd::with_handle(fd, self.fd.handle())?;
        Ok((UnixStream { fd }, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(local_addr)
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

    /// Whether closing (or dropping) the listener removes its socket file; shared by all
    /// clones (Go's `SetUnlinkOnClose`). Has no effect for abstract or unnamed addresses, or
    /// for a `from_std` listener whose path could not be read.
    pub fn set_unlink_on_close(&self, unlink: bool) {
        if let Some(path) = &self.path {
            path.unlink.store(unlink, Ordering::Release);
        }
    }

    /// Closes the listener: unlinks its socket file (see [`UnixListener`]), then closes the
    /// socket; a pending `accept` fails with the closed error.
    pub fn close(&self) -> io::Result<()> {
        if let Some(path) = &self.path {
            path.unlink_once();
        }
        self.fd.close()
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.with_ref(socket::take_error)
    }
}

impl UnixStream {
    /// Connects to the socket at `path`.
    ///
    /// A missing file fails with `NotFound`, a file nobody listens on with
    /// `ConnectionRefused`. While the listener's backlog is full this waits, retrying (see
    /// [`UnixStream`]).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        Self::connect_sockaddr(path_addr(path.as_ref())?, None).await
    }

    /// Connects to `addr`, which may be an abstract name.
    pub async fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        Self::connect_sockaddr(kernel_addr(addr)?, None).await
    }

    /// Connects, failing with `TimedOut` if the listener's backlog stays full for `timeout`.
    pub async fn connect_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> io::Result<UnixStream> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        Self::connect_sockaddr(path_addr(path.as_ref())?, Some(deadline)).await
    }

    /// Connects, failing with `TimedOut` if not connected by `deadline` (a past deadline fails
    /// at once).
    pub async fn connect_deadline(
        path: impl AsRef<Path>,
        deadline: Instant,
    ) -> io::Result<UnixStream> {
        Self::connect_sockaddr(path_addr(path.as_ref())?, Some(deadline)).await
    }

    async fn connect_sockaddr(addr: SockAddr, deadline: Option<Instant>) -> io::Result<UnixStream> {
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(timed_out());
        }
        let s = socket::new_socket(Domain::UNIX, Type::STREAM)?;
        let mut backoff = CONNECT_BACKOFF_MIN;
        loop {
            match s.connect(&addr) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EISCONN) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The backlog is full. The socket is left unconnected and may retry.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    let mut wake = now + backoff;
                    if let Some(deadline) = deadline {
                        if deadline <= now {
                            return Err(timed_out());
                        }
                        wake = wake.min(deadline);
                    }
                    crate::time::sleep_until(wake).await;
                    backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(UnixStream {
            fd: NetFd::new(OwnedFd::from(s))?,
        })
    }

    /// A connected pair of streams (`socketpair`), both in the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = socket_pair(Type::STREAM)?;
        Ok((UnixStream { fd: a }, UnixStream { fd: b }))
    }

    /// Wraps a connected `std` stream (made non-blocking here).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream {
            fd: NetFd::new(OwnedFd::from(stream))?,
        })
    }

    /// Reads into `buf`, waiting for data. `Ok(0)` means the peer closed its side (or `buf` is
    /// empty, which returns at once).
    pub fn read<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        // Not marked a TCP stream, so every read tries `recv` first (`fd.rs`).
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
    /// On an error (a deadline, the peer gone) part of `buf` may have been written.
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

    /// The local address (unnamed for a client that did not bind).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(local_addr)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(peer_addr)
    }

    /// The peer process's credentials (`SO_PEERCRED`).
    pub fn peer_cred(&self) -> io::Result<UCred> {
        self.fd.with_ref(peer_cred)
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.with_ref(socket::take_error)
    }
}

impl UnixDatagram {
    /// A datagram socket bound to a new socket file at `path` (never unlinked by us).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        Self::bind_sockaddr(Some(&path_addr(path.as_ref())?))
    }

    /// A datagram socket bound to `addr`, which may be an abstract name.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        Self::bind_sockaddr(Some(&kernel_addr(addr)?))
    }

    /// A datagram socket bound to nothing: it can send, and receive replies only once
    /// connected or if the kernel autobinds it (receivers then see it as unnamed).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn unbound() -> io::Result<UnixDatagram> {
        Self::bind_sockaddr(None)
    }

    #[track_caller]
    fn bind_sockaddr(addr: Option<&SockAddr>) -> io::Result<UnixDatagram> {
        let handle = crate::sched::context::current();
        let s = socket::new_socket(Domain::UNIX, Type::DGRAM)?;
        if let Some(addr) = addr {
            s.bind(addr)?;
        }
        Ok(UnixDatagram {
            fd: NetFd::with_handle(OwnedFd::from(s), &handle)?,
        })
    }

    /// A connected pair of datagram sockets (`socketpair`), both in the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = socket_pair(Type::DGRAM)?;
        Ok((UnixDatagram { fd: a }, UnixDatagram { fd: b }))
    }

    /// Wraps a `std` datagram socket (made non-blocking here).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram {
            fd: NetFd::new(OwnedFd::from(socket))?,
        })
    }

    /// Sets the default destination to the socket at `path` and receives only from it. Never
    /// blocks.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.connect_sockaddr(&path_addr(path.as_ref())?)
    }

    /// [`UnixDatagram::connect`] to `addr`, which may be an abstract name.
    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        self.connect_sockaddr(&kernel_addr(addr)?)
    }

    fn connect_sockaddr(&self, addr: &SockAddr) -> io::Result<()> {
        self.fd
            .with_ref(|fd| socket::with_socket(fd, |s| s.connect(addr)))
    }

    /// Sends one datagram to the socket at `path`. An empty `buf` sends an empty datagram.
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let addr = path_addr(path.as_ref())?;
        self.send_to_sockaddr(buf, &addr).await
    }

    /// Sends one datagram to `addr`, which may be an abstract name.
    pub async fn send_to_addr(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        let addr = kernel_addr(addr)?;
        self.send_to_sockaddr(buf, &addr).await
    }

    async fn send_to_sockaddr(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.fd.write_op(|fd| socket::send_to(fd, buf, addr)).await
    }

    /// Waits for one datagram; returns its length (truncated to `buf.len()`) and the sender
    /// (unnamed if it never bound). `Ok((0, _))` is an empty datagram, not end of file.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self.fd.read_op(|fd| socket::recv_from(fd, buf, 0)).await?;
        Ok((n, std_addr(&addr)?))
    }

    /// Like [`UnixDatagram::recv_from`], but leaves the datagram queued (`MSG_PEEK`).
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self
            .fd
            .read_op(|fd| socket::recv_from(fd, buf, libc::MSG_PEEK))
            .await?;
        Ok((n, std_addr(&addr)?))
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write_op(|fd| socket::send(fd, buf)).await
    }

    /// Waits for one datagram; `Ok(0)` is an empty datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_op(|fd| socket::recv(fd, buf, 0)).await
    }

    /// Like [`UnixDatagram::recv`], but leaves the datagram queued (`MSG_PEEK`).
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .read_op(|fd| socket::recv(fd, buf, libc::MSG_PEEK))
            .await
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.fd, how)
    }

    /// Closes the socket from any clone: every pending operation fails with the closed error.
    /// Closing twice fails with the closed error. The socket file, if any, stays.
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

    /// The local address (unnamed if not bound).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(local_addr)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(peer_addr)
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.with_ref(socket::take_error)
    }
}

/// `socketpair(AF_UNIX, ty | SOCK_NONBLOCK | SOCK_CLOEXEC)`, both ends registered.
#[track_caller]
fn socket_pair(ty: Type) -> io::Result<(NetFd, NetFd)> {
    let handle = crate::sched::context::current();
    let (a, b) = Socket::pair(Domain::UNIX, ty.nonblocking().cloexec(), None)?;
    let a = NetFd::with_handle(OwnedFd::from(a), &handle)?;
    let b = NetFd::with_handle(OwnedFd::from(b), &handle)?;
    Ok((a, b))
}

/// `getsockopt(SO_PEERCRED)`.
fn peer_cred(fd: RawFd) -> io::Result<UCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `ucred` and `len` holds its size, as SO_PEERCRED expects;
    // the caller holds a reference on the socket, so `fd` is open.
    let res = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UCred {
        uid: cred.uid,
        gid: cred.gid,
        pid: (cred.pid != 0).then_some(cred.pid),
    })
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixListener");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        d.field("fd", &self.fd.as_raw_fd()).finish()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixStream");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        if let Ok(peer) = self.peer_addr() {
            d.field("peer", &peer);
        }
        d.field("fd", &self.fd.as_raw_fd()).finish()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UnixDatagram");
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
impl UnixStream {
    pub(crate) fn fd(&self) -> &NetFd {
        &self.fd
    }
}

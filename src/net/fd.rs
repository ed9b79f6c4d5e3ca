//! The shared socket behind every net type: Go's `internal/poll.FD` plus `netFD`.
//!
//! A [`NetFd`] is a cheap clone of one socket. Every operation follows Go's shape
//! (`internal/poll/fd_unix.go`):
//!
//! 1. take the side's lock (read side: read, recv, peek, accept; write side: write, send,
//!    connect) or, for everything else, a reference — FIFO behind an operation in flight, and
//!    failing at once with the closed error after `close`;
//! 2. `prepare`: fail fast on an expired deadline (even when data is ready) and clear stale
//!    readiness;
//! 3. loop: try the system call; `EINTR` → retry; `EAGAIN` → wait for readiness (or the
//!    deadline, or close) and retry; anything else → return it;
//! 4. unlock; the last operation to leave a closed socket deregisters it from the poller and
//!    closes the fd, in that order (the fd number cannot be reused while still registered).
//!
//! `close` marks the socket closed, wakes every queued and waiting operation with the closed
//! error, and returns at once; the fd itself is closed when the last operation has left.
//! Dropping the last clone closes too.
//!
//! The operations are small hand-written futures ([`ReadStream`] for stream reads, [`Op`] for
//! the rest, [`ReadOrEmpty`] where an empty buffer returns at once) built from two steps,
//! [`LockFuture`] and [`Wait`]; see [`ReadStream`] for why not `async fn`s. Only connect's
//! steps (`lock_write`, `wait_write_locked`), which run once per socket, stay `async fn`s.
//!
//! # Skipping the read that would fail (TCP)
//!
//! With edge-triggered readiness Go must read until `EAGAIN`, so a request-response
//! connection costs three system calls per request: the read, the write, and a read that fails
//! with `EAGAIN` before the task waits. For TCP, a read that returns less than it asked for
//! has emptied the receive queue (`drained`), so the next read waits for readiness *first*:
//! any byte that arrives after that read raises a new edge, which the wait consumes (or is
//! woken by), so nothing is missed and the failing read is saved (tokio does the same).
//!
//! Two cases break "short means empty", and both are announced by an event: `recv` stops early
//! at TCP's urgent mark with data still queued (`EPOLLPRI`), and one edge may announce data and
//! a reset or FIN together, which stay pending after the read returns the data (`EPOLLHUP`,
//! `EPOLLRDHUP`, `EPOLLERR`). The poller records any such event in a sticky bit before it
//! publishes the event's readiness, and a socket with the bit never skips: a reader that
//! missed the record will find the readiness instead. Every other read-side path clears
//! `drained`, since it may leave data behind without knowing. See [`NetFd::read_stream`] and,
//! for the poll-based `AsyncRead`s, [`NetFd::poll_read_stream`].

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::fd_mutex::{Acquire, FdMutex, LockError, Side};
use crate::pd::{Mode, Registration};
use crate::sched::{context, coop, Handle};

/// Go's `maxRW`: reads and writes on stream sockets are capped at 1 GiB per system call
/// (some kernels and socket types fail above 2 GiB; 1 GiB keeps alignment).
const MAX_RW: usize = 1 << 30;

/// One socket, shared by all clones of a net handle.
#[derive(Clone)]
pub(crate) struct NetFd {
    inner: Arc<Inner>,
}

/// Laid out so that the words every operation touches share the first cache line: the
/// descriptor, the two flags, the registration (its descriptor pointer first), and the fd
/// mutex's state word and flags; 64 bytes in all, its waiter lists being allocated apart. A
/// server with many connections visits each one with its socket state out of cache, so each
/// line these words straddle is a miss: callgrind with a 512 KiB cache, HTTP at 500
/// connections, counts about 0.7 missed lines fewer per visit with the alignment than with
/// the order alone. The cost is the allocator's alignment padding.
#[repr(C, align(64))]
struct Inner {
    /// # Invariant
    ///
    /// Open, non-blocking and registered with `reg` from construction until `destroy`, which
    /// runs exactly once: when the last reference leaves a closed mutex (see `fd_mutex.rs`), or
    /// in `Drop` when that has not happened (the socket was never closed, or an operation's
    /// future was leaked with its reference). No system call uses it after `destroy`: every
    /// user holds a reference on `mutex` and borrows a handle, and `Drop` runs once no handle
    /// is left.
    fd: RawFd,
    /// A TCP stream: a short read means the receive queue is empty (module docs). Set once,
    /// before the socket is shared.
    stream: AtomicBool,
    /// The last read left the receive queue empty (module docs). Only touched under the read
    /// lock, which orders every access.
    drained: AtomicBool,
    reg: Registration,
    mutex: FdMutex,
}

impl fmt::Debug for NetFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetFd")
            .field("fd", &self.inner.fd)
            .field("closed", &self.inner.mutex.is_closed())
            .finish()
    }
}

impl NetFd {
    /// Wraps a non-blocking, close-on-exec socket and registers it with the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub(crate) fn new(fd: OwnedFd) -> io::Result<NetFd> {
        let handle = context::current();
        NetFd::with_handle(fd, &handle)
    }

    pub(crate) fn with_handle(fd: OwnedFd, handle: &Handle) -> io::Result<NetFd> {
        // On error `fd` is dropped (closed) here; it was never registered.
        let reg = Registration::new(handle, fd.as_raw_fd())?;
        Ok(NetFd {
            inner: Arc::new(Inner {
                fd: fd.into_raw_fd(),
                mutex: FdMutex::new(),
                reg,
                stream: AtomicBool::new(false),
                drained: AtomicBool::new(false),
            }),
        })
    }

    /// The fd number (for `AsRawFd`); it stays valid until the socket is closed.
    pub(crate) fn as_raw_fd(&self) -> RawFd {
        self.inner.fd
    }

    /// The runtime this socket is registered with.
    pub(crate) fn handle(&self) -> &Handle {
        self.inner.reg.handle()
    }

    /// A read-side operation: Go's `readLock` + `prepareRead` + the EAGAIN loop around `f`, as
    /// a hand-written future ([`Op`]).
    pub(crate) fn read_op<R, F>(&self, f: F) -> Op<'_, F>
    where
        F: FnMut(RawFd) -> io::Result<R> + Unpin,
    {
        self.op(Side::Read, f)
    }

    /// A write-side operation; see [`NetFd::read_op`].
    pub(crate) fn write_op<R, F>(&self, f: F) -> Op<'_, F>
    where
        F: FnMut(RawFd) -> io::Result<R> + Unpin,
    {
        self.op(Side::Write, f)
    }

    fn op<R, F>(&self, side: Side, f: F) -> Op<'_, F>
    where
        F: FnMut(RawFd) -> io::Result<R> + Unpin,
    {
        Op {
            wait: None,
            guard: None,
            lock: self.lock(side),
            f,
        }
    }

    /// A read-side operation that returns `R::default()` (`Ok(0)`) without a system call (and
    /// without failing on a deadline) when `len == 0`: Go's zero-length `Read` (issue 15735).
    pub(crate) fn read_op_or_empty<R, F>(&self, len: usize, f: F) -> ReadOrEmpty<'_, F>
    where
        R: Default,
        F: FnMut(RawFd) -> io::Result<R> + Unpin,
    {
        ReadOrEmpty {
            op: self.op(Side::Read, f),
            empty: len == 0,
        }
    }

    /// Marks the socket a TCP stream, enabling the skipped read of the module docs.
    pub(crate) fn set_tcp_stream(&self) {
        self.inner.stream.store(true, Ordering::Relaxed);
    }

    /// A stream read (`recv` into `buf`). On a TCP stream it waits for readiness first when the
    /// previous read drained the socket (module docs); other stream sockets try `recv` first.
    /// `Ok(0)` at once for an empty `buf`.
    pub(crate) fn read_stream<'a>(&'a self, buf: &'a mut [u8]) -> ReadStream<'a> {
        ReadStream {
            wait: None,
            guard: None,
            lock: self.lock(Side::Read),
            buf,
        }
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    /// One poll of a poll-based read (`AsyncRead`): takes the read lock for this poll only (see
    /// `fd_mutex.rs`, "Poll-based callers"), then runs Go's loop around `f`. On `Pending` the
    /// waker is registered with the lock or with the descriptor.
    pub(crate) fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut(RawFd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        // This read may leave data behind without knowing (module docs).
        let guard = std::task::ready!(self.poll_lock(Side::Read, cx))?;
        self.inner.drained.store(false, Ordering::Relaxed);
        self.poll_io(cx, Mode::Read, false, f, guard)
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    /// One poll of a poll-based stream read of up to `len` bytes by `f`: [`NetFd::poll_read_with`]
    /// with the skipped read of the module docs on a TCP stream, as [`ReadStream`] does. After a
    /// read that drained the socket it looks for readiness first, and returns `Pending` (the
    /// waker registered with the descriptor) without a system call when none has arrived.
    pub(crate) fn poll_read_stream(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        mut f: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let inner = &*self.inner;
        if !inner.stream.load(Ordering::Relaxed) {
            return self.poll_read_with(cx, f);
        }
        let guard = std::task::ready!(self.poll_lock(Side::Read, cx))?;
        let wait_first = inner.drained.load(Ordering::Relaxed);
        let recv = |fd| {
            let r = f(fd);
            match &r {
                Ok(n) => {
                    let drained = *n > 0 && *n < len && !inner.reg.exceptional_seen();
                    inner.drained.store(drained, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => inner.drained.store(false, Ordering::Relaxed),
            }
            r
        };
        self.poll_io(cx, Mode::Read, wait_first, recv, guard)
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    /// One poll of a poll-based write (`AsyncWrite`); see [`NetFd::poll_read_with`].
    pub(crate) fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut(RawFd) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let guard = std::task::ready!(self.poll_lock(Side::Write, cx))?;
        self.poll_io(cx, Mode::Write, false, f, guard)
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    fn poll_lock(&self, side: Side, cx: &mut Context<'_>) -> Poll<io::Result<SideGuard<'_>>> {
        // Every poll of a poll-based operation is a start (`sched/coop.rs`).
        std::task::ready!(coop::poll_proceed(cx));
        self.inner.mutex.poll_lock(side, cx).map(|r| {
            r.map(|()| SideGuard {
                fd: self,
                side,
                async_op: false,
            })
            .map_err(Into::into)
        })
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    /// Go's loop around `f` for one poll of a poll-based caller, holding the side's lock.
    /// `wait_first` (a read after a drained read) keeps the readiness that arrived since and
    /// waits for it before the first call of `f`; otherwise the readiness is reset first.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        mode: Mode,
        wait_first: bool,
        mut f: impl FnMut(RawFd) -> io::Result<R>,
        _guard: SideGuard<'_>,
    ) -> Poll<io::Result<R>> {
        let reg = &self.inner.reg;
        let side = side_of(mode);
        // The waker stays registered with the descriptor after this poll, without the lock.
        // A poll-based waker it displaces is kept, to be woken when an operation on this side
        // completes (see `fd_mutex.rs`).
        let wait = |cx: &mut Context<'_>| {
            let mut displaced = None;
            let waited = reg.poll_wait(cx, mode, Some(&mut displaced));
            if let Some(w) = displaced {
                self.inner.mutex.park_displaced(side, w);
            }
            waited
        };
        let out = (|| {
            if wait_first {
                reg.check(mode)?;
                std::task::ready!(wait(cx))?;
            } else {
                reg.prepare(mode)?;
            }
            loop {
                match f(self.inner.fd) {
                    Ok(r) => return Poll::Ready(Ok(r)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(wait(cx))?;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        })();
        if out.is_ready() {
            self.inner.mutex.wake_displaced(side);
        }
        out
    }

    fn wait(&self, mode: Mode) -> Wait<'_> {
        Wait {
            reg: &self.inner.reg,
            mode,
            waiting: false,
        }
    }

    /// Waits until the socket may be ready in `mode` (or fails on deadline or close), holding
    /// the side's lock. Used by connect, which has its own loop.
    pub(crate) async fn wait_write_locked(&self) -> io::Result<()> {
        Wait {
            reg: &self.inner.reg,
            mode: Mode::Write,
            waiting: false,
        }
        .await
    }

    /// Takes the write lock and prepares the write side (for connect's loop).
    pub(crate) async fn lock_write(&self) -> io::Result<SideGuard<'_>> {
        let guard = self.lock(Side::Write).await?;
        self.inner.reg.prepare(Mode::Write)?;
        Ok(guard)
    }

    fn lock(&self, side: Side) -> LockFuture<'_> {
        LockFuture {
            fd: self,
            side,
            state: LockState::Start,
        }
    }

    /// A misc operation (options, addresses, shutdown): Go's `incref`/`decref`.
    pub(crate) fn with_ref<R>(&self, f: impl FnOnce(RawFd) -> io::Result<R>) -> io::Result<R> {
        self.inner.mutex.incref()?;
        let out = f(self.inner.fd);
        if self.inner.mutex.decref() {
            self.inner.destroy();
        }
        out
    }

    /// Go's `SetDeadline`/`SetReadDeadline`/`SetWriteDeadline`; `mode` `None` = both.
    #[inline]
    pub(crate) fn set_deadline(
        &self,
        deadline: Option<Instant>,
        mode: Option<Mode>,
    ) -> io::Result<()> {
        self.with_registration(|reg| reg.set_deadline(deadline, mode))
    }

    /// [`set_deadline`](Self::set_deadline) to `d` from now (see
    /// `Registration::set_deadline_after`).
    #[inline]
    pub(crate) fn set_deadline_after(&self, d: Duration, mode: Option<Mode>) -> io::Result<()> {
        self.with_registration(|reg| reg.set_deadline_after(d, mode))
    }

    /// A deadline change: fails on a closed socket, else runs `f`. No reference is taken:
    /// see `Registration::set_deadline`.
    #[inline]
    fn with_registration(
        &self,
        f: impl FnOnce(&Registration) -> Result<(), crate::pd::PollError>,
    ) -> io::Result<()> {
        if self.inner.mutex.is_closed() {
            return Err(crate::pd::closed_error());
        }
        f(&self.inner.reg).map_err(Into::into)
    }

    /// Go's `FD.Close`: fails if already closed; otherwise wakes every queued and waiting
    /// operation (they fail with the closed error) and closes the fd once they have left.
    pub(crate) fn close(&self) -> io::Result<()> {
        self.inner.mutex.close()?;
        self.inner.reg.evict();
        if self.inner.mutex.decref() {
            self.inner.destroy();
        }
        Ok(())
    }
}

impl Inner {
    /// Deregisters, then closes the fd. Runs exactly once (see the invariant on `fd`).
    fn destroy(&self) {
        self.reg.deregister(self.fd);
        // SAFETY: `destroy` runs once, after the last user of the fd left (invariant), so we
        // own it; `OwnedFd::drop` closes it (not retried on EINTR: Linux always closes).
        drop(unsafe { OwnedFd::from_raw_fd(self.fd) });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone, so no operation can run any more: every operation borrows a
        // handle. A reference still held belongs to an operation whose future was leaked
        // (`mem::forget`, which is safe) and will never be polled again, so it must not keep
        // the fd open. Three cases:
        // * not closed yet: close, and destroy whatever the count says;
        // * closed, references left: `close` left the fd to those operations, which will never
        //   leave — destroy now;
        // * closed, no reference left: the last one to leave already destroyed it.
        if self.mutex.close().is_ok() {
            self.reg.evict();
            let _ = self.mutex.decref();
            self.destroy();
        } else if self.mutex.has_refs() {
            self.destroy();
        }
    }
}

/// Holds a side's lock (and a reference) for one operation.
pub(crate) struct SideGuard<'a> {
    fd: &'a NetFd,
    side: Side,
    /// An async operation: its end (done or cancelled) wakes displaced poll-based callers
    /// (`FdMutex::wake_displaced`). A poll-based one does that itself, only when it completes.
    async_op: bool,
}

impl Drop for SideGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.async_op {
            self.fd.inner.mutex.wake_displaced(self.side);
        }
        if self.fd.inner.mutex.unlock(self.side) {
            self.fd.inner.destroy();
        }
    }
}

enum LockState {
    Start,
    Queued(u64),
    Done,
}

/// Acquires a side's lock, queueing FIFO behind the operation in flight.
struct LockFuture<'a> {
    fd: &'a NetFd,
    side: Side,
    state: LockState,
}

impl<'a> Future for LockFuture<'a> {
    type Output = io::Result<SideGuard<'a>>;

    /// The common case inline: the operation starts and the side is free. Waiting in the
    /// queue, close and a spent budget are out of line: inlined, they made every lock save six
    /// registers (callgrind, echo).
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let LockState::Start = self.state {
            // The operation starts here: one unit of the task's budget (`sched/coop.rs`).
            std::task::ready!(coop::poll_proceed(cx));
            match self.fd.inner.mutex.lock(self.side) {
                Ok(Acquire::Locked) => {
                    self.state = LockState::Done;
                    return Poll::Ready(Ok(self.guard()));
                }
                Ok(Acquire::Queued(ticket)) => self.state = LockState::Queued(ticket),
                Err(e) => return Poll::Ready(Err(lock_failed(e))),
            }
        }
        self.poll_queued(cx)
    }
}

impl<'a> LockFuture<'a> {
    fn guard(&self) -> SideGuard<'a> {
        SideGuard {
            fd: self.fd,
            side: self.side,
            async_op: true,
        }
    }

    /// Waits for the lock to be handed over, FIFO (`FdMutex::poll_queued`).
    #[inline(never)]
    fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<SideGuard<'a>>> {
        let LockState::Queued(ticket) = self.state else {
            panic!("LockFuture polled after completion");
        };
        let mutex = &self.fd.inner.mutex;
        match mutex.poll_queued(self.side, ticket, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                self.state = LockState::Done;
                Poll::Ready(Ok(self.guard()))
            }
            Poll::Ready(Err(e)) => {
                self.state = LockState::Done;
                if mutex.decref() {
                    self.fd.inner.destroy();
                }
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

#[cold]
#[inline(never)]
fn lock_failed(e: LockError) -> io::Error {
    e.into()
}

impl Drop for LockFuture<'_> {
    fn drop(&mut self) {
        if let LockState::Queued(ticket) = self.state {
            if self.fd.inner.mutex.cancel_queued(self.side, ticket) {
                self.fd.inner.destroy();
            }
        }
    }
}

/// [`NetFd::read_stream`]: Go's read (lock, prepare, the `EAGAIN` loop) plus the skipped read
/// of the module docs, written out as a future rather than an `async fn`.
///
/// Why by hand: a connection's task holds its read future for as long as it waits, and an
/// `async fn` nesting others (`read` → `read_stream` → lock and wait) keeps each level's
/// arguments and awaitee side by side: the read future was 240 bytes and the echo server's
/// connection future 336. As a struct the read is 80 bytes and the connection 184, which
/// saves ~150 bytes per idle connection (`tests/tcp_future_size.rs`); a ready read also got
/// ~4% cheaper (docs/benchmarks-log.md, *Reading the 09:00 run*).
///
/// Fields drop in declaration order, which is the order a cancelled read must undo its
/// steps: withdraw the waiter from the descriptor (`wait`) before releasing the lock
/// (`guard`), so that no later reader's waiter is withdrawn instead; `lock` leaves a queued
/// place in line when it was never granted.
pub(crate) struct ReadStream<'a> {
    wait: Option<Wait<'a>>,
    /// The read lock, from the moment `lock` grants it until the result is returned.
    guard: Option<SideGuard<'a>>,
    lock: LockFuture<'a>,
    buf: &'a mut [u8],
}

impl ReadStream<'_> {
    /// Releases the lock and returns `r` (the `async fn` dropped its guard on return too).
    fn finish<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.wait = None;
        self.guard = None;
        Poll::Ready(r)
    }
}

impl Future for ReadStream<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let fd = this.lock.fd;
        let inner = &*fd.inner;
        let reg = &inner.reg;
        let stream = inner.stream.load(Ordering::Relaxed);
        if this.guard.is_none() {
            this.guard = Some(std::task::ready!(Pin::new(&mut this.lock).poll(cx))?);
            if this.buf.is_empty() {
                return this.finish(Ok(0));
            }
            let prepared = if !stream {
                // This read may leave data behind without knowing (module docs).
                inner.drained.store(false, Ordering::Relaxed);
                reg.prepare(Mode::Read)
            } else if inner.drained.load(Ordering::Relaxed) {
                // Keep any readiness that arrived since the last read: it is not stale. The
                // read that would fail is skipped: wait first.
                this.wait = Some(fd.wait(Mode::Read));
                reg.check(Mode::Read)
            } else {
                reg.prepare(Mode::Read)
            };
            if let Err(e) = prepared {
                return this.finish(Err(e.into()));
            }
        }
        let len = cap_rw(this.buf.len());
        loop {
            if let Some(wait) = &mut this.wait {
                match std::task::ready!(Pin::new(wait).poll(cx)) {
                    Ok(()) => this.wait = None,
                    Err(e) => return this.finish(Err(e)),
                }
            }
            match super::socket::recv(inner.fd, &mut this.buf[..len], 0) {
                Ok(n) => {
                    if stream {
                        let drained = n > 0 && n < len && !reg.exceptional_seen();
                        inner.drained.store(drained, Ordering::Relaxed);
                    }
                    return this.finish(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.wait = Some(fd.wait(Mode::Read));
                }
                Err(e) => {
                    inner.drained.store(false, Ordering::Relaxed);
                    return this.finish(Err(e));
                }
            }
        }
    }
}

/// One operation ([`NetFd::read_op`], [`NetFd::write_op`]): Go's side lock, `prepareRead` or
/// `prepareWrite`, and the `EAGAIN` loop around `f`, written out as a future for the same
/// reason as [`ReadStream`] and with the same drop order. `f` runs the system calls; it keeps
/// its own progress (`write_all`'s count) between polls. The loop is [`ReadStream`]'s written
/// out again on purpose: one shared function for both cost a ready read 15–30 ns (774–788 vs
/// 788–813 ns in the micro-benchmark's bare read, 3 interleaved runs), even `#[inline(always)]`.
pub(crate) struct Op<'a, F> {
    wait: Option<Wait<'a>>,
    guard: Option<SideGuard<'a>>,
    lock: LockFuture<'a>,
    f: F,
}

impl<R, F> Future for Op<'_, F>
where
    F: FnMut(RawFd) -> io::Result<R> + Unpin,
{
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let this = self.get_mut();
        let fd = this.lock.fd;
        let mode = match this.lock.side {
            Side::Read => Mode::Read,
            Side::Write => Mode::Write,
        };
        if this.guard.is_none() {
            this.guard = Some(std::task::ready!(Pin::new(&mut this.lock).poll(cx))?);
            if mode == Mode::Read {
                // This read may leave data behind without knowing (module docs).
                fd.inner.drained.store(false, Ordering::Relaxed);
            }
            if let Err(e) = fd.inner.reg.prepare(mode) {
                this.guard = None;
                return Poll::Ready(Err(e.into()));
            }
        }
        let out = loop {
            if let Some(wait) = &mut this.wait {
                match std::task::ready!(Pin::new(wait).poll(cx)) {
                    Ok(()) => this.wait = None,
                    Err(e) => break Err(e),
                }
            }
            match (this.f)(fd.inner.fd) {
                Ok(r) => break Ok(r),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.wait = Some(fd.wait(mode));
                }
                Err(e) => break Err(e),
            }
        };
        this.wait = None;
        this.guard = None;
        Poll::Ready(out)
    }
}

/// [`NetFd::read_op_or_empty`]: an [`Op`] that, for an empty buffer, only takes the read lock
/// (so it still fails on a closed socket, and waits its turn) and returns `R::default()`.
pub(crate) struct ReadOrEmpty<'a, F> {
    op: Op<'a, F>,
    empty: bool,
}

impl<R, F> Future for ReadOrEmpty<'_, F>
where
    R: Default,
    F: FnMut(RawFd) -> io::Result<R> + Unpin,
{
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let this = self.get_mut();
        if this.empty {
            let guard = std::task::ready!(Pin::new(&mut this.op.lock).poll(cx))?;
            drop(guard);
            return Poll::Ready(Ok(R::default()));
        }
        Pin::new(&mut this.op).poll(cx)
    }
}

/// Go's `pollWait`: one wait for readiness, a deadline or close.
struct Wait<'a> {
    reg: &'a Registration,
    mode: Mode,
    waiting: bool,
}

impl Future for Wait<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = if self.waiting {
            self.reg.poll_wait_resumed(cx, self.mode)
        } else {
            self.reg.poll_wait(cx, self.mode, None)
        };
        match polled {
            Poll::Pending => {
                self.waiting = true;
                Poll::Pending
            }
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r.map_err(Into::into))
            }
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.reg.cancel_wait(self.mode);
        }
    }
}

fn side_of(mode: Mode) -> Side {
    match mode {
        Mode::Read => Side::Read,
        Mode::Write => Side::Write,
    }
}

/// Converts a `libc` return value into `io::Result`.
pub(crate) fn cvt(res: isize) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res as usize)
    }
}

/// Caps a stream read or write at [`MAX_RW`].
pub(crate) fn cap_rw(len: usize) -> usize {
    len.min(MAX_RW)
}

//! Layer 1: the OS poller.
//!
//! It turns "the kernel says this fd is ready" into `(token, readable, writable)` events and
//! knows nothing about tasks, descriptors or timers; the layers above give meaning to the tokens.
//! This is Go's `runtime/netpoll_epoll.go` (and the header of `runtime/netpoll.go`) with the
//! pollDesc pointer replaced by an opaque `u64` token.
//!
//! # Backend contract
//!
//! A backend is one module, selected at compile time as `backend` below, that exports exactly
//! these items. There is no trait: the hot path has no `dyn` and no type parameter, and a new
//! backend (kqueue, io_uring) is a new file plus one `cfg_attr` line.
//!
//! * `Poller` — `Send + Sync`; owns the kernel queue and the wake fd(s); `Drop` closes them all.
//! * `Poller::new() -> io::Result<Poller>` — a close-on-exec kernel queue with the waker already
//!   registered under [`WAKE_TOKEN`].
//! * `Poller::register(&self, fd, token: u64) -> io::Result<()>` — one registration for the fd's
//!   whole life: both directions, edge-triggered, peer half-close included; `token` comes back in
//!   every event for `fd`. `token == WAKE_TOKEN` fails with `InvalidInput`. The fd must be open.
//! * `Poller::deregister(&self, fd) -> io::Result<()>` — stop reporting `fd`; call it before the
//!   fd number is closed (a `dup` would otherwise keep the registration alive).
//! * `Poller::wait(&self, &mut Events, Option<Duration>) -> io::Result<bool>` — clears the events,
//!   waits, fills them. `None` blocks indefinitely, `Some(ZERO)` does not block, any other timeout
//!   is rounded *up* to the backend's resolution (never returns early) and capped (epoll: 1e9 ms,
//!   as Go). An interrupted finite wait returns `Ok` with no events (the caller recomputes its
//!   timeout); an interrupted infinite or zero wait is retried. Wake-ups are never reported as
//!   events. Returns `Ok(true)` iff this call consumed a pending `wake()`; only a blocking wait
//!   (timeout ≠ `Some(ZERO)`) consumes one, so a non-blocking poll never steals the wake-up meant
//!   for the blocked poller (Go's `netpoll(0)`).
//! * `Poller::wake(&self) -> io::Result<bool>` — makes the current blocking wait return, or the
//!   next one return at once. Deduplicated: at most one signal is pending however often it is
//!   called; returns whether this call wrote it.
//!   Everything the caller wrote before `wake()` is visible to the caller of the `wait()` that
//!   consumes it (see the protocol in `waker.rs`).
//! * `Events` — `new()` (room for [`EVENTS_CAPACITY`]), `len()`, `is_empty()`,
//!   `iter() -> impl Iterator<Item = Event>`.
//! * `Event` — `Copy + Eq + Debug`; `token()`, `is_readable()`, `is_writable()`,
//!   `is_error_only()`, `is_exceptional()` (hang-up, peer half-close, error or urgent data). Hang-up and error count as both readable and writable, so a waiter in
//!   either direction retries its system call and sees the EOF or the error itself. Events are
//!   hints: readiness is only ever consumed by the caller's system call returning `EAGAIN`.
//! * `Poller::fds()` (tests only) — every fd the poller owns, to check that `Drop` closes them.
//!
//! The caller guarantees that at most one thread is in a *blocking* `wait` at a time (Go's
//! `sched.lastpoll` swap); concurrent blocking waits are memory-safe but may take a spurious
//! wake-up. Non-blocking waits may run concurrently with anything.

/// Runs one system call expression and maps the C convention `-1` + `errno` to `io::Error`.
///
/// The `unsafe` block is written at the call site (with its `// SAFETY:` comment), e.g.
/// `syscall!(unsafe { libc::close(fd) })`; works for `c_int` and `ssize_t` results.
macro_rules! syscall {
    ($call:expr) => {{
        let res = $call;
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// One line per backend. Each must export the items of the contract above.
#[cfg_attr(target_os = "linux", path = "epoll.rs")]
#[cfg(target_os = "linux")]
mod backend;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "netpoll has no OS poller backend for this target: a backend must provide the items listed \
     in the contract at the top of src/sys/mod.rs (Poller, Events, Event)"
);

#[cfg(target_os = "linux")]
mod waker;

#[cfg(all(test, not(loom)))]
mod tests;

// `Event` is named by the descriptor layer's dispatch, which lands after this module.
#[allow(unused_imports)]
pub(crate) use backend::{Event, Events, Poller};

/// The token under which the waker is registered; `register` rejects it.
///
/// All ones, a value the descriptor layer's (slot index, generation) tokens must never take;
/// Go marks its wake fd the same way, with the address of its `netpollEventFd` variable.
pub(crate) const WAKE_TOKEN: u64 = u64::MAX;

/// Events returned by one `wait` at most: Go's `netpoll` reads a batch of 128 `epollevent`s.
/// Readiness beyond it stays queued in the kernel for the next wait.
pub(crate) const EVENTS_CAPACITY: usize = 128;

/// The contract requires a shareable poller: workers poll and wake it from any thread.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_send_sync::<Poller>();
    assert_send::<Events>();
};

//! Go's `internal/poll.fdMutex` for tasks: one read-side and one write-side operation at a time
//! per socket, a reference count of operations in flight, and close.
//!
//! # The state word
//!
//! | bits | meaning |
//! |---|---|
//! | 0 `CLOSED` | `close` has run: every later lock or reference fails |
//! | 1 `RLOCK` | a read-side operation (read, recv, accept, peek) holds the read lock |
//! | 2 `WLOCK` | a write-side operation (write, send, connect) holds the write lock |
//! | 3–22 | references: operations in flight or queued, plus misc operations and close |
//! | 23–42 | tasks queued for the read lock |
//! | 43–62 | tasks queued for the write lock |
//!
//! # Protocol
//!
//! * **Fast paths** are one CAS on `state` and succeed only when nobody is queued on that side:
//!   lock = "side unlocked → locked, references + 1"; unlock = "locked → unlocked, references
//!   − 1".
//! * **Slow paths** run under `waiters` (a mutex). A task that finds the side locked adds itself
//!   to the side's FIFO queue and counts itself in the state's wait field, in one critical
//!   section; an unlock that sees a non-zero wait count hands the lock directly to the first
//!   queued task (the lock bit stays set; the wait count drops by one) and wakes it. Because
//!   the wait count only changes under `waiters`, and a fast-path unlock's CAS fails when the
//!   count is non-zero, a queued task is never forgotten.
//! * **Close** sets `CLOSED` (one CAS, failing if already closed), then under `waiters` clears
//!   both wait counts and wakes every queued task, which fails with the closed error.
//! * The last reference to leave a closed mutex (the CAS that makes it "closed, zero
//!   references") reports it to its caller, which then destroys the fd: deregister, close.
//!   That happens exactly once.
//!
//! Queued tasks hold a reference, so the fd cannot be destroyed under them. Handing the lock
//! over directly keeps the queue FIFO (Go re-races woken waiters against newcomers).
//!
//! The fast paths against the slow ones and close are model-checked with loom
//! (`src/tests/loom_fd_mutex.rs`): one holder per side, no forgotten queued task, and the
//! destroy verdict given exactly once.
//!
//! # Poll-based callers
//!
//! `AsyncRead`/`AsyncWrite` implementations have no future to keep a queue place in (a caller
//! may stop polling at any time without telling us), so they lock only for the duration of one
//! poll ([`FdMutex::poll_lock`]). Finding the side locked, they leave a *poller* waker (counted in
//! the wait field, but holding no reference and no queue place); the next unlock wakes every
//! poller and they race for the lock again. A poller that never comes back therefore blocks
//! nobody.
//!
//! A poll-based caller that returns `Pending` leaves its waker in the descriptor's wait slot.
//! When a second poll-based caller on the same side registers there, it displaces the first;
//! the displaced waker is kept here ([`FdMutex::park_displaced`]) and woken when an operation
//! on that side completes, or at close ([`FdMutex::wake_displaced`]): woken at once, two idle
//! poll-based readers would wake each other forever.

use std::collections::VecDeque;
use std::io;
use std::task::{Context, Poll, Waker};

use crate::loom::{AtomicBool, AtomicU64, Mutex, Ordering};

const CLOSED: u64 = 1 << 0;
const RLOCK: u64 = 1 << 1;
const WLOCK: u64 = 1 << 2;
const REF: u64 = 1 << 3;
const REF_MASK: u64 = ((1 << 20) - 1) << 3;
const RWAIT: u64 = 1 << 23;
const RWAIT_MASK: u64 = ((1 << 20) - 1) << 23;
const WWAIT: u64 = 1 << 43;
const WWAIT_MASK: u64 = ((1 << 20) - 1) << 43;

/// Which side of the socket an operation locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Read = 0,
    Write = 1,
}

impl Side {
    fn lock_bit(self) -> u64 {
        match self {
            Side::Read => RLOCK,
            Side::Write => WLOCK,
        }
    }

    fn wait_unit(self) -> u64 {
        match self {
            Side::Read => RWAIT,
            Side::Write => WWAIT,
        }
    }

    fn wait_mask(self) -> u64 {
        match self {
            Side::Read => RWAIT_MASK,
            Side::Write => WWAIT_MASK,
        }
    }
}

/// Why a lock or reference failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockError {
    /// The socket is closed (Go's `ErrNetClosing`).
    Closed,
    /// 2^20 − 1 operations are already in flight or queued (Go panics here; we refuse).
    TooMany,
}

impl From<LockError> for io::Error {
    fn from(e: LockError) -> io::Error {
        match e {
            LockError::Closed => crate::pd::closed_error(),
            LockError::TooMany => {
                io::Error::other("too many concurrent operations on a single socket (max 1048575)")
            }
        }
    }
}

/// The words every operation touches come first (`repr(C)`), so that they share a cache line
/// with the rest of the socket's hot state (see `net::fd::Inner`).
#[repr(C)]
pub(crate) struct FdMutex {
    state: AtomicU64,
    /// Whether `waiters` holds displaced wakers for each side: a cheap check for every
    /// completed operation. Set under `waiters`; cleared there when the list is taken.
    displaced: [AtomicBool; 2],
    /// The lists, allocated the first time a task queues, a poller waits or a waker is
    /// displaced (about 200 bytes, which most sockets never need); `None` reads as empty.
    waiters: Mutex<Option<Box<Waiters>>>,
}

#[derive(Default)]
struct Waiters {
    read: VecDeque<Waiter>,
    write: VecDeque<Waiter>,
    /// The queued task the read lock was handed to, until it notices.
    read_granted: Option<u64>,
    write_granted: Option<u64>,
    next_ticket: u64,
    /// Poll-based callers to wake at the next unlock of each side (module docs).
    read_pollers: Vec<Waker>,
    write_pollers: Vec<Waker>,
    /// Poll-based callers displaced from the wait slot, to wake when an operation on the side
    /// completes (module docs).
    read_displaced: Vec<Waker>,
    write_displaced: Vec<Waker>,
}

/// Wakers to wake once the waiters lock is released.
#[must_use]
struct Wakeups {
    handoff: Option<Waker>,
    pollers: Vec<Waker>,
}

impl Wakeups {
    fn wake(self) {
        if let Some(w) = self.handoff {
            w.wake();
        }
        for w in self.pollers {
            w.wake();
        }
    }
}

struct Waiter {
    ticket: u64,
    waker: Waker,
}

impl Waiters {
    fn queue(&mut self, side: Side) -> &mut VecDeque<Waiter> {
        match side {
            Side::Read => &mut self.read,
            Side::Write => &mut self.write,
        }
    }

    fn granted(&mut self, side: Side) -> &mut Option<u64> {
        match side {
            Side::Read => &mut self.read_granted,
            Side::Write => &mut self.write_granted,
        }
    }

    fn displaced(&mut self, side: Side) -> &mut Vec<Waker> {
        match side {
            Side::Read => &mut self.read_displaced,
            Side::Write => &mut self.write_displaced,
        }
    }

    fn pollers(&mut self, side: Side) -> &mut Vec<Waker> {
        match side {
            Side::Read => &mut self.read_pollers,
            Side::Write => &mut self.write_pollers,
        }
    }
}

/// The outcome of a lock attempt.
pub(crate) enum Acquire {
    /// The lock is held.
    Locked,
    /// Queued with this ticket: poll with [`FdMutex::poll_queued`].
    Queued(u64),
}

impl FdMutex {
    pub(crate) fn new() -> FdMutex {
        FdMutex {
            state: AtomicU64::new(0),
            waiters: Mutex::new(None),
            displaced: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Whether any reference is held. Once the last handle of a socket is gone, a reference
    /// can only belong to an operation whose future was leaked (`mem::forget`), which will
    /// never run again.
    pub(crate) fn has_refs(&self) -> bool {
        self.state.load(Ordering::Acquire) & REF_MASK != 0
    }

    /// Go's `incref`: a reference for an operation that takes no lock.
    pub(crate) fn incref(&self) -> Result<(), LockError> {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return Err(LockError::Closed);
            }
            if old & REF_MASK == REF_MASK {
                return Err(LockError::TooMany);
            }
            match self.state.compare_exchange_weak(
                old,
                old + REF,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => old = actual,
            }
        }
    }

    /// Go's `decref`. Returns true when this was the last reference of a closed mutex: the
    /// caller must destroy the fd.
    #[must_use]
    pub(crate) fn decref(&self) -> bool {
        let old = self.state.fetch_sub(REF, Ordering::AcqRel);
        debug_assert!(
            old & REF_MASK != 0,
            "inconsistent fd mutex: decref with no reference"
        );
        (old - REF) & (REF_MASK | CLOSED) == CLOSED
    }

    /// Go's `rwlock`, first attempt: takes a reference and either the lock or a queue place.
    ///
    /// The fast path is inlined into the operations: one load and one CAS. Everything else
    /// (a failed CAS, a locked side, close, the reference limit) takes [`lock_slow`]: out of
    /// line, each call paid ~20 instructions of register saving for a path that is almost
    /// never taken (callgrind, HTTP pipelined).
    ///
    /// [`lock_slow`]: Self::lock_slow
    #[inline]
    pub(crate) fn lock(&self, side: Side) -> Result<Acquire, LockError> {
        let bit = side.lock_bit();
        let old = self.state.load(Ordering::Relaxed);
        if old & (CLOSED | bit | side.wait_mask()) == 0
            && old & REF_MASK != REF_MASK
            && self
                .state
                .compare_exchange_weak(old, (old | bit) + REF, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(Acquire::Locked);
        }
        self.lock_slow(side)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, side: Side) -> Result<Acquire, LockError> {
        let bit = side.lock_bit();
        let mut old = self.state.load(Ordering::Relaxed);
        // Fast path again: side unlocked and nobody queued.
        loop {
            if old & CLOSED != 0 {
                return Err(LockError::Closed);
            }
            if old & REF_MASK == REF_MASK {
                return Err(LockError::TooMany);
            }
            if old & bit != 0 || old & side.wait_mask() != 0 {
                break;
            }
            match self.state.compare_exchange_weak(
                old,
                (old | bit) + REF,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Acquire::Locked),
                Err(actual) => old = actual,
            }
        }
        // Slow path, under the waiters lock (module docs).
        let mut guard = self.waiters.lock();
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return Err(LockError::Closed);
            }
            if old & REF_MASK == REF_MASK || old & side.wait_mask() == side.wait_mask() {
                return Err(LockError::TooMany);
            }
            let (new, queued) = if old & bit == 0 {
                ((old | bit) + REF, false)
            } else {
                (old + REF + side.wait_unit(), true)
            };
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if !queued => return Ok(Acquire::Locked),
                Ok(_) => break,
                Err(actual) => old = actual,
            }
        }
        let waiters = guard.get_or_insert_with(Box::default);
        let ticket = waiters.next_ticket;
        waiters.next_ticket += 1;
        // The waker is filled in by the first `poll_queued`; a no-op one until then.
        waiters.queue(side).push_back(Waiter {
            ticket,
            waker: Waker::noop().clone(),
        });
        Ok(Acquire::Queued(ticket))
    }

    /// Polls a queued lock attempt. `Ready(Ok)` = the lock is now held; `Ready(Err(Closed))` =
    /// the socket was closed while queued (the reference is still held: release it with
    /// `decref`).
    pub(crate) fn poll_queued(
        &self,
        side: Side,
        ticket: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), LockError>> {
        let mut guard = self.waiters.lock();
        // Queued, so the lists exist.
        let waiters = guard.get_or_insert_with(Box::default);
        if *waiters.granted(side) == Some(ticket) {
            *waiters.granted(side) = None;
            return Poll::Ready(Ok(()));
        }
        match waiters.queue(side).iter_mut().find(|w| w.ticket == ticket) {
            Some(w) => {
                if !w.waker.will_wake(cx.waker()) {
                    w.waker = cx.waker().clone();
                }
                Poll::Pending
            }
            // Not queued and not granted: close emptied the queue.
            None => Poll::Ready(Err(LockError::Closed)),
        }
    }

    /// A queued attempt was abandoned (its future dropped). Returns true when the caller must
    /// destroy the fd (see `decref`).
    #[must_use]
    pub(crate) fn cancel_queued(&self, side: Side, ticket: u64) -> bool {
        let mut guard = self.waiters.lock();
        // Queued, so the lists exist.
        let waiters = guard.get_or_insert_with(Box::default);
        if *waiters.granted(side) == Some(ticket) {
            // The lock was handed to us: pass it on.
            *waiters.granted(side) = None;
            let wake = self.unlock_locked(side, waiters);
            drop(guard);
            wake.wake();
            return self.decref();
        }
        let queue = waiters.queue(side);
        if let Some(i) = queue.iter().position(|w| w.ticket == ticket) {
            queue.remove(i);
            self.state.fetch_sub(side.wait_unit(), Ordering::AcqRel);
        }
        drop(guard);
        self.decref()
    }

    /// Go's `rwunlock`. Returns true when the caller must destroy the fd.
    ///
    /// Inlined fast path (one load, one CAS) as in [`lock`](Self::lock).
    #[must_use]
    #[inline]
    pub(crate) fn unlock(&self, side: Side) -> bool {
        let bit = side.lock_bit();
        let old = self.state.load(Ordering::Relaxed);
        debug_assert!(old & bit != 0, "inconsistent fd mutex: unlock without lock");
        let new = (old & !bit) - REF;
        if old & side.wait_mask() == 0
            && self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return new & (REF_MASK | CLOSED) == CLOSED;
        }
        self.unlock_slow(side)
    }

    #[cold]
    #[inline(never)]
    #[must_use]
    fn unlock_slow(&self, side: Side) -> bool {
        let bit = side.lock_bit();
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert!(old & bit != 0, "inconsistent fd mutex: unlock without lock");
            if old & side.wait_mask() != 0 {
                break;
            }
            match self.state.compare_exchange_weak(
                old,
                (old & !bit) - REF,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return ((old & !bit) - REF) & (REF_MASK | CLOSED) == CLOSED,
                Err(actual) => old = actual,
            }
        }
        let mut guard = self.waiters.lock();
        // A non-zero wait count means a task queued or a poller waits: the lists exist.
        let wake = self.unlock_locked(side, guard.get_or_insert_with(Box::default));
        drop(guard);
        wake.wake();
        self.decref()
    }

    /// Releases the side's lock under `waiters`: hands it to the first queued task if there is
    /// one (returning its waker), else clears the lock bit. The caller still holds its
    /// reference.
    fn unlock_locked(&self, side: Side, waiters: &mut Waiters) -> Wakeups {
        // Every poller is woken to race again (module docs).
        let pollers = std::mem::take(waiters.pollers(side));
        if !pollers.is_empty() {
            self.state
                .fetch_sub(side.wait_unit() * pollers.len() as u64, Ordering::AcqRel);
        }
        let handoff = match waiters.queue(side).pop_front() {
            Some(next) => {
                self.state.fetch_sub(side.wait_unit(), Ordering::AcqRel);
                *waiters.granted(side) = Some(next.ticket);
                Some(next.waker)
            }
            None => {
                self.state.fetch_and(!side.lock_bit(), Ordering::AcqRel);
                None
            }
        };
        Wakeups { handoff, pollers }
    }

    // Only the ecosystem traits (`src/compat/`, behind features) poll the socket.
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code)
    )]
    /// Takes the side's lock for the duration of one poll of a poll-based caller (module
    /// docs). `Ready(Ok)`: the lock and a reference are held; release them with `unlock`.
    /// `Pending`: the side is locked; `cx`'s waker is woken at its next unlock or at close.
    pub(crate) fn poll_lock(
        &self,
        side: Side,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), LockError>> {
        let bit = side.lock_bit();
        // Fast path, as in `lock`: side unlocked and nobody waiting.
        let mut old = self.state.load(Ordering::Relaxed);
        while old & (CLOSED | bit | side.wait_mask()) == 0 && old & REF_MASK != REF_MASK {
            match self.state.compare_exchange_weak(
                old,
                (old | bit) + REF,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(actual) => old = actual,
            }
        }
        let mut guard = self.waiters.lock();
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return Poll::Ready(Err(LockError::Closed));
            }
            if old & REF_MASK == REF_MASK {
                return Poll::Ready(Err(LockError::TooMany));
            }
            let (new, lock) = if old & bit == 0 {
                ((old | bit) + REF, true)
            } else if guard
                .as_mut()
                .is_some_and(|lists| lists.pollers(side).iter().any(|w| w.will_wake(cx.waker())))
            {
                return Poll::Pending; // already asked to be woken
            } else if old & side.wait_mask() == side.wait_mask() {
                return Poll::Ready(Err(LockError::TooMany));
            } else {
                (old + side.wait_unit(), false)
            };
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if lock => return Poll::Ready(Ok(())),
                Ok(_) => break,
                Err(actual) => old = actual,
            }
        }
        guard
            .get_or_insert_with(Box::default)
            .pollers(side)
            .push(cx.waker().clone());
        Poll::Pending
    }

    /// Keeps a poll-based caller's waker that another poll-based caller displaced from the
    /// descriptor's wait slot (module docs).
    pub(crate) fn park_displaced(&self, side: Side, waker: Waker) {
        let mut guard = self.waiters.lock();
        let list = guard.get_or_insert_with(Box::default).displaced(side);
        if !list.iter().any(|w| w.will_wake(&waker)) {
            list.push(waker);
        }
        self.displaced[side as usize].store(true, Ordering::Release);
    }

    /// An operation on `side` completed: wakes the displaced poll-based callers, which find out
    /// whether there is anything left for them. One relaxed load when there are none.
    #[inline]
    pub(crate) fn wake_displaced(&self, side: Side) {
        if self.displaced[side as usize].load(Ordering::Relaxed) {
            self.wake_displaced_slow(side);
        }
    }

    /// Out of line: inlined, its lock and loop made every operation's end save six registers
    /// (callgrind, echo: about 100 instructions per request, two operations).
    #[cold]
    #[inline(never)]
    fn wake_displaced_slow(&self, side: Side) {
        let list = {
            let mut guard = self.waiters.lock();
            self.displaced[side as usize].store(false, Ordering::Relaxed);
            guard
                .as_mut()
                .map(|w| std::mem::take(w.displaced(side)))
                .unwrap_or_default()
        };
        for w in list {
            w.wake();
        }
    }

    /// Go's `increfAndClose`: marks the mutex closed (failing if it already was), takes a
    /// reference for the closer, and fails every queued task. The caller then unblocks the
    /// operations in flight (evicts the descriptor) and calls `decref`.
    pub(crate) fn close(&self) -> Result<(), LockError> {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return Err(LockError::Closed);
            }
            if old & REF_MASK == REF_MASK {
                return Err(LockError::TooMany);
            }
            let new = ((old | CLOSED) + REF) & !(RWAIT_MASK | WWAIT_MASK);
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => old = actual,
            }
        }
        let mut guard = self.waiters.lock();
        // No lists: nobody ever queued, polled or was displaced, so nobody is to be woken.
        let Some(waiters) = guard.as_mut() else {
            return Ok(());
        };
        let queued: Vec<Waker> = waiters
            .read
            .drain(..)
            .chain(waiters.write.drain(..))
            .map(|w| w.waker)
            .chain(waiters.read_pollers.drain(..))
            .chain(waiters.write_pollers.drain(..))
            .chain(waiters.read_displaced.drain(..))
            .chain(waiters.write_displaced.drain(..))
            .collect();
        drop(guard);
        for w in queued {
            w.wake();
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    // Go: TestMutexLock
    #[test]
    fn lock_and_reference_on_an_open_mutex_are_not_last() {
        let mu = FdMutex::new();
        mu.incref().unwrap();
        assert!(!mu.decref());
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
        assert!(!mu.unlock(Side::Read));
        assert!(matches!(mu.lock(Side::Write), Ok(Acquire::Locked)));
        assert!(!mu.unlock(Side::Write));
    }

    // Go: TestMutexClose
    #[test]
    fn everything_fails_after_close() {
        let mu = FdMutex::new();
        mu.close().unwrap();
        assert_eq!(mu.incref(), Err(LockError::Closed));
        assert!(matches!(mu.lock(Side::Read), Err(LockError::Closed)));
        assert!(matches!(mu.lock(Side::Write), Err(LockError::Closed)));
        assert_eq!(mu.close(), Err(LockError::Closed));
        assert!(mu.decref(), "the closer's reference is the last");
    }

    // Go: TestMutexCloseUnblock
    #[test]
    fn close_fails_every_queued_task_and_the_last_unlock_destroys() {
        let mu = FdMutex::new();
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        let tickets: Vec<u64> = (0..4)
            .map(|_| match mu.lock(Side::Read).unwrap() {
                Acquire::Queued(t) => t,
                Acquire::Locked => panic!("the read lock is held"),
            })
            .collect();
        for &t in &tickets {
            assert!(mu.poll_queued(Side::Read, t, &mut cx).is_pending());
        }
        mu.close().unwrap();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 4);
        for &t in &tickets {
            assert_eq!(
                mu.poll_queued(Side::Read, t, &mut cx),
                Poll::Ready(Err(LockError::Closed))
            );
            assert!(!mu.decref());
        }
        assert!(!mu.decref(), "the closer's reference");
        assert!(
            mu.unlock(Side::Read),
            "the last operation to leave destroys"
        );
    }

    #[test]
    fn unlock_hands_the_lock_to_queued_tasks_in_fifo_order() {
        let mu = FdMutex::new();
        assert!(matches!(mu.lock(Side::Write), Ok(Acquire::Locked)));
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let a = match mu.lock(Side::Write).unwrap() {
            Acquire::Queued(t) => t,
            _ => unreachable!(),
        };
        let b = match mu.lock(Side::Write).unwrap() {
            Acquire::Queued(t) => t,
            _ => unreachable!(),
        };
        assert!(mu.poll_queued(Side::Write, b, &mut cx).is_pending());
        assert!(!mu.unlock(Side::Write));
        assert!(mu.poll_queued(Side::Write, b, &mut cx).is_pending());
        assert_eq!(mu.poll_queued(Side::Write, a, &mut cx), Poll::Ready(Ok(())));
        // A newcomer cannot barge ahead of b.
        assert!(matches!(mu.lock(Side::Write), Ok(Acquire::Queued(_))));
        assert!(!mu.unlock(Side::Write));
        assert_eq!(mu.poll_queued(Side::Write, b, &mut cx), Poll::Ready(Ok(())));
    }

    #[test]
    fn read_and_write_sides_are_independent() {
        let mu = FdMutex::new();
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
        assert!(matches!(mu.lock(Side::Write), Ok(Acquire::Locked)));
        assert!(!mu.unlock(Side::Read));
        assert!(!mu.unlock(Side::Write));
    }

    #[test]
    fn an_abandoned_grant_passes_the_lock_on() {
        let mu = FdMutex::new();
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let a = match mu.lock(Side::Read).unwrap() {
            Acquire::Queued(t) => t,
            _ => unreachable!(),
        };
        let b = match mu.lock(Side::Read).unwrap() {
            Acquire::Queued(t) => t,
            _ => unreachable!(),
        };
        assert!(!mu.unlock(Side::Read)); // granted to a
        assert!(!mu.cancel_queued(Side::Read, a)); // a gives up: b gets it
        assert_eq!(mu.poll_queued(Side::Read, b, &mut cx), Poll::Ready(Ok(())));
        assert!(!mu.unlock(Side::Read));
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
    }

    #[test]
    fn a_poller_is_woken_by_the_next_unlock_and_holds_no_place() {
        let mu = FdMutex::new();
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(mu.poll_lock(Side::Read, &mut cx), Poll::Ready(Ok(())));
        assert!(mu.poll_lock(Side::Read, &mut cx).is_pending());
        assert!(
            mu.poll_lock(Side::Read, &mut cx).is_pending(),
            "the same waker is registered once"
        );
        assert!(!mu.unlock(Side::Read));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The poller never came back: the lock is free for anyone.
        assert!(matches!(mu.lock(Side::Read), Ok(Acquire::Locked)));
        assert!(!mu.unlock(Side::Read));
        assert_eq!(mu.poll_lock(Side::Read, &mut cx), Poll::Ready(Ok(())));
        assert!(!mu.unlock(Side::Read));
    }

    #[test]
    fn an_unlock_hands_off_to_a_queued_task_and_wakes_pollers() {
        let mu = FdMutex::new();
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert!(matches!(mu.lock(Side::Write), Ok(Acquire::Locked)));
        let t = match mu.lock(Side::Write).unwrap() {
            Acquire::Queued(t) => t,
            Acquire::Locked => unreachable!(),
        };
        assert!(mu.poll_lock(Side::Write, &mut cx).is_pending());
        assert!(!mu.unlock(Side::Write));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            mu.poll_lock(Side::Write, &mut cx).is_pending(),
            "the queued task owns the lock now"
        );
        assert_eq!(mu.poll_queued(Side::Write, t, &mut cx), Poll::Ready(Ok(())));
        assert!(!mu.unlock(Side::Write));
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(mu.poll_lock(Side::Write, &mut cx), Poll::Ready(Ok(())));
        assert!(!mu.unlock(Side::Write));
    }

    #[test]
    fn close_wakes_pollers_and_they_see_closed() {
        let mu = FdMutex::new();
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(mu.poll_lock(Side::Read, &mut cx), Poll::Ready(Ok(())));
        let (other, w2) = waker();
        assert!(mu
            .poll_lock(Side::Read, &mut Context::from_waker(&w2))
            .is_pending());
        mu.close().unwrap();
        assert_eq!(other.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            mu.poll_lock(Side::Read, &mut Context::from_waker(&w2)),
            Poll::Ready(Err(LockError::Closed))
        );
        assert!(!mu.decref(), "the closer's reference");
        assert!(mu.unlock(Side::Read), "the last holder destroys");
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    // Go: TestMutexOverflowPanic, as an error instead of a panic.
    #[test]
    fn too_many_references_is_an_error_not_a_panic() {
        let mu = FdMutex::new();
        for _ in 0..(1 << 20) - 1 {
            mu.incref().unwrap();
        }
        assert_eq!(mu.incref(), Err(LockError::TooMany));
        let e: io::Error = LockError::TooMany.into();
        assert!(e.to_string().contains("too many"));
    }

    // Go: TestMutexStress — mutual exclusion per side under contention.
    #[test]
    fn each_side_admits_one_holder_at_a_time_under_contention() {
        use std::sync::atomic::AtomicBool;
        let mu = Arc::new(FdMutex::new());
        let inside = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let mu = mu.clone();
                let inside = inside.clone();
                std::thread::spawn(move || {
                    let side = if i % 2 == 0 { Side::Read } else { Side::Write };
                    let flag = &inside[i % 2];
                    let (_, w) = waker();
                    let mut cx = Context::from_waker(&w);
                    for _ in 0..2000 {
                        match mu.lock(side).unwrap() {
                            Acquire::Locked => {}
                            Acquire::Queued(t) => loop {
                                match mu.poll_queued(side, t, &mut cx) {
                                    Poll::Ready(r) => break r.unwrap(),
                                    Poll::Pending => std::thread::yield_now(),
                                }
                            },
                        }
                        assert!(!flag.swap(true, std::sync::atomic::Ordering::SeqCst));
                        flag.store(false, std::sync::atomic::Ordering::SeqCst);
                        assert!(!mu.unlock(side));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        mu.close().unwrap();
        assert!(mu.decref());
    }
}

//! Layer 2: poll descriptors — Go's `runtime.pollDesc` for Rust tasks.
//!
//! A [`PollDesc`] is the runtime's state for one registered socket: a read [`Slot`] and a write
//! [`Slot`] (Go's `rg`/`wg` binary semaphores, see `slot.rs`), the `info` word that summarises
//! the error state for waiters, and the deadline state with its two timers.
//!
//! # The `info` word (Go's `atomicInfo`)
//!
//! | bits | meaning |
//! |---|---|
//! | 0 `CLOSING` | the socket is being closed: every wait fails with the closed error |
//! | 1 `EVENT_ERR` | the last event was exactly `EPOLLERR`: readers fail with "not pollable" |
//! | 2 `EXPIRED_READ` | the read deadline has passed: reads fail with `TimedOut` |
//! | 3 `EXPIRED_WRITE` | the write deadline has passed: writes fail with `TimedOut` |
//! | 4 `EXCEPTIONAL` | an event reported hang-up, peer half-close, an error or urgent data (sticky) |
//! | 32–63 | the descriptor's generation (Go's `fdseq`), the upper half of every epoll token |
//!
//! Priority when several apply: closing, then timeout, then event error (Go's
//! `netpollcheckerr`).
//!
//! # Ground rules
//!
//! * `locked` (a mutex, Go's `pd.lock`) owns `closing`, the deadlines and the timer state. After
//!   changing anything the summary depends on, the holder publishes `info` **before** it
//!   unblocks waiters (Go's `publishInfo` then `netpollunblock`); waiters re-read `info` after
//!   announcing that they wait. Both sides touch the slot's state with read-modify-writes, which
//!   makes the Dekker pair (`slot.rs`): no wake-up is lost.
//! * `EVENT_ERR` is owned by `info` alone: the poller sets or clears it with a CAS that only
//!   succeeds while the generation in `info` still matches the event's token, so a late event for
//!   an earlier socket can never poison the next one (Go #59545).
//! * The generation changes only in [`PollDesc::retire`], when a [`Registration`] drops (the
//!   descriptor is freed), and from 0 to 1 in [`PollDesc::reuse`], both while no operation is in
//!   flight. A descriptor stays its registration's until then, closed or not, so no handle of a
//!   socket can ever reach the descriptor of the socket that reuses it.
//! * A late event's *readiness* can still reach the next socket: the poller checks the
//!   generation, then sets the slot, and the descriptor may change hands in between. That is a
//!   spurious wake-up, which the woken operation absorbs (its system call finds nothing and it
//!   waits again); Go's `netpoll` loop has the same window. The error bits above cannot leak
//!   that way (`src/tests/loom_cache.rs` checks both).
//! * The slots follow `slot.rs`. At most one task waits on each (the net layer's fd mutex
//!   guarantees it, as Go's `fdMutex` does).
//!
//! # Deadlines (Go's `poll_runtime_pollSetDeadline` and `netpolldeadlineimpl`)
//!
//! `rd`/`wd`: 0 = none, > 0 = the deadline in clock nanoseconds, -1 = expired. Each direction has
//! a timer in the runtime's wheel, allocated once per descriptor and reused by every later socket
//! that gets this descriptor, so setting a deadline never allocates. Each timer firing carries the
//! sequence number it was armed with; a firing whose sequence is stale is dropped.
//!
//! Moving a deadline *later* does not touch the wheel: the armed timer fires at the old time, sees
//! the deadline has moved, and re-arms itself for the new one (Go 1.23 makes timer changes lazy
//! the same way). Only a deadline moved *earlier* than the armed time re-arms at once. So a
//! server that pushes its read deadline forward on every request pays one compare-and-swap: a
//! positive deadline moved later takes no lock at all (`deadline.rs` has the protocol).

pub(crate) mod cache;
pub(crate) mod deadline;
pub(crate) mod driver;
pub(crate) mod slot;

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::loom::{AtomicU64, Mutex, Ordering};
use crate::sched::inject::Batch;
use crate::sched::{Handle, Shared};
use crate::time::wheel::TimerId;
use deadline::{Deadline, Fired};
use slot::Slot;

const CLOSING: u64 = 1 << 0;
const EVENT_ERR: u64 = 1 << 1;
const EXPIRED_READ: u64 = 1 << 2;
const EXPIRED_WRITE: u64 = 1 << 3;
/// Set by the poller, like `EVENT_ERR` and under the same generation check, and never cleared
/// while the socket lives: it tells a reader that an error, end-of-stream or data behind the
/// urgent mark may be pending that no later event will announce (see `net/fd.rs`, "Skipping
/// the read that would fail").
const EXCEPTIONAL: u64 = 1 << 4;
const GEN_SHIFT: u32 = 32;

/// The direction of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

/// Why a wait failed (Go's `pollErrClosing`, `pollErrTimeout`, `pollErrNotPollable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollError {
    Closing,
    Timeout,
    NotPollable,
}

impl From<PollError> for io::Error {
    fn from(e: PollError) -> io::Error {
        match e {
            PollError::Closing => closed_error(),
            // Without a payload: no allocation, since idle timeouts are routine for servers.
            PollError::Timeout => io::Error::from(io::ErrorKind::TimedOut),
            PollError::NotPollable => io::Error::other("not pollable"),
        }
    }
}

/// The payload of "use of closed network connection" errors (Go's `net.ErrClosed`).
#[derive(Debug)]
pub(crate) struct NetClosing;

impl fmt::Display for NetClosing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("use of closed network connection")
    }
}

impl std::error::Error for NetClosing {}

pub(crate) fn closed_error() -> io::Error {
    io::Error::other(NetClosing)
}

/// Whether `err` reports the use of a closed connection.
pub(crate) fn is_closed(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<NetClosing>())
}

/// One cache line holds what every operation and every event touches: `info`, the two
/// deadline words and the two slots' states (the write slot's waker straddles into the second
/// line, which holds the lock and the timer state).
#[repr(C, align(64))]
pub(crate) struct PollDesc {
    info: AtomicU64,
    /// The read and write deadlines (Go's `rd`/`wd`): written under `locked`, except that a
    /// positive one may be moved later without it (`deadline.rs`).
    rd: Deadline,
    wd: Deadline,
    rg: Slot,
    wg: Slot,
    locked: Mutex<Locked>,
}

#[derive(Default)]
struct Locked {
    closing: bool,
    rseq: u64,
    wseq: u64,
    /// The read timer, once allocated (kept for the descriptor's life).
    rt: Option<TimerId>,
    wt: Option<TimerId>,
    /// When the read timer is armed to fire (0 = not armed, or fired and not re-armed).
    rt_when: u64,
    wt_when: u64,
}

impl PollDesc {
    fn new() -> PollDesc {
        PollDesc {
            rg: Slot::new(),
            wg: Slot::new(),
            info: AtomicU64::new(0),
            rd: Deadline::new(),
            wd: Deadline::new(),
            locked: Mutex::new(Locked::default()),
        }
    }

    pub(crate) fn slot(&self, mode: Mode) -> &Slot {
        match mode {
            Mode::Read => &self.rg,
            Mode::Write => &self.wg,
        }
    }

    fn deadline(&self, mode: Mode) -> &Deadline {
        match mode {
            Mode::Read => &self.rd,
            Mode::Write => &self.wd,
        }
    }

    pub(crate) fn generation(&self) -> u32 {
        (self.info.load(Ordering::Acquire) >> GEN_SHIFT) as u32
    }

    /// Go's `netpollcheckerr` on the current `info`: how an operation in `mode` fails now.
    pub(crate) fn check_now(&self, mode: Mode) -> Result<(), PollError> {
        PollDesc::check(self.info.load(Ordering::Acquire), mode)
    }

    /// Whether the sticky `EXCEPTIONAL` bit is set (see [`Registration::exceptional_seen`]).
    pub(crate) fn exceptional(&self) -> bool {
        self.info.load(Ordering::Acquire) & EXCEPTIONAL != 0
    }

    /// Readies a descriptor just taken from the cache for a new socket (the reset in Go's
    /// `pollOpen`): no waiter, no readiness, no deadline, not closing, timer firings of the
    /// previous use stale. Returns the generation for the socket's token. The error and
    /// exceptional bits are cleared by storing `info` whole: a late event of the previous
    /// socket can no longer set them, since [`PollDesc::retire`] moved the generation on.
    pub(crate) fn reuse(&self) -> u32 {
        self.rg.init();
        self.wg.init();
        let mut locked = self.locked.lock();
        locked.closing = false;
        self.rd.set(0);
        self.wd.set(0);
        locked.rseq = locked.rseq.wrapping_add(1);
        locked.wseq = locked.wseq.wrapping_add(1);
        let mut generation = self.generation();
        if generation == 0 {
            generation = 1; // 0 never appears in a token, like Go's fdseq
        }
        self.info
            .store((generation as u64) << GEN_SHIFT, Ordering::Release);
        generation
    }

    /// Ends a socket's use of the descriptor, before it goes back to the cache (the first half
    /// of Go's `pollCache.free`, which moves `fdseq` on): closing for good, and a new
    /// generation, so events and timer firings of this use are stale from now on.
    pub(crate) fn retire(&self) {
        {
            let mut locked = self.locked.lock();
            locked.closing = true;
            self.publish_info(&locked);
            let _ = self
                .info
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                    let generation = ((old >> GEN_SHIFT) as u32).wrapping_add(1);
                    Some(((generation as u64) << GEN_SHIFT) | (old & 0xffff_ffff))
                });
        }
        debug_assert!(
            !self.rg.has_waiter() && !self.wg.has_waiter(),
            "netpoll: freeing a poll descriptor with a waiter"
        );
    }

    /// Go's `netpollcheckerr` on an `info` value.
    fn check(info: u64, mode: Mode) -> Result<(), PollError> {
        if info & CLOSING != 0 {
            return Err(PollError::Closing);
        }
        let expired = match mode {
            Mode::Read => EXPIRED_READ,
            Mode::Write => EXPIRED_WRITE,
        };
        if info & expired != 0 {
            return Err(PollError::Timeout);
        }
        if mode == Mode::Read && info & EVENT_ERR != 0 {
            return Err(PollError::NotPollable);
        }
        Ok(())
    }

    /// Go's `publishInfo`: recomputes the summary bits from the locked state, keeping
    /// `EVENT_ERR` and the generation. A read-modify-write, as the ground rules require.
    /// (A deadline's sign, which sets its bit, only changes under the lock.)
    fn publish_info(&self, locked: &Locked) {
        let mut bits = 0;
        if locked.closing {
            bits |= CLOSING;
        }
        if self.rd.get() < 0 {
            bits |= EXPIRED_READ;
        }
        if self.wd.get() < 0 {
            bits |= EXPIRED_WRITE;
        }
        // Kept: EVENT_ERR, EXCEPTIONAL and the generation.
        let keep = !(CLOSING | EXPIRED_READ | EXPIRED_WRITE);
        // No write when nothing changes (a deadline moved within the future, the common case).
        let _ = self
            .info
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                let new = (old & keep) | bits;
                (new != old).then_some(new)
            });
    }

    /// Go's `setEventErr`: only while the generation still matches the event's token.
    pub(crate) fn set_event_err(&self, err: bool, generation: u32) {
        let _ = self
            .info
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                if (old >> GEN_SHIFT) as u32 != generation || ((old & EVENT_ERR != 0) == err) {
                    return None;
                }
                Some(if err {
                    old | EVENT_ERR
                } else {
                    old & !EVENT_ERR
                })
            });
    }

    /// Runtime shutdown: fail every current and later wait as if the socket were closed.
    fn shutdown(&self) {
        let mut locked = self.locked.lock();
        if locked.closing {
            return;
        }
        locked.closing = true;
        // A closing descriptor has no deadline to extend (`deadline.rs`).
        self.rd.set(0);
        self.wd.set(0);
        self.publish_info(&locked);
        let rw = self.rg.unblock();
        let ww = self.wg.unblock();
        drop(locked);
        for w in [rw, ww].into_iter().flatten() {
            w.wake();
        }
    }

    /// Go's `setEventErr` for the sticky `EXCEPTIONAL` bit: only while the generation matches.
    pub(crate) fn set_exceptional(&self, generation: u32) {
        if self.info.load(Ordering::Relaxed) & EXCEPTIONAL != 0 {
            return;
        }
        let _ = self
            .info
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                ((old >> GEN_SHIFT) as u32 == generation && old & EXCEPTIONAL == 0)
                    .then_some(old | EXCEPTIONAL)
            });
    }

    /// The poller saw readiness in `mode`; returns the waker to wake (after locks are dropped).
    pub(crate) fn notify_ready(&self, mode: Mode) -> Option<Waker> {
        self.slot(mode).notify_ready()
    }

    /// Deadline timer callback (Go's `netpolldeadlineimpl`): runs on whichever thread runs
    /// timers, never under the wheel lock. Wakers go to `batch` or are woken directly.
    pub(crate) fn deadline_fired(&self, shared: &Shared, mode: Mode, seq: u64, batch: &mut Batch) {
        let time = &shared.driver.time;
        let mut guard = self.locked.lock();
        let locked = &mut *guard;
        let current = match mode {
            Mode::Read => locked.rseq,
            Mode::Write => locked.wseq,
        };
        if seq != current {
            return; // closed, reused, or the deadline moved earlier meanwhile
        }
        let (timer, armed_at) = match mode {
            Mode::Read => (locked.rt, &mut locked.rt_when),
            Mode::Write => (locked.wt, &mut locked.wt_when),
        };
        *armed_at = 0;
        match self
            .deadline(mode)
            .on_timer(|| shared.driver.clock.now_ns())
        {
            Fired::Nothing => return, // cleared, or already expired by a past deadline
            Fired::Rearm(when) => {
                // Moved later since the timer was armed (lazy extension). A later extension
                // finds it armed no later than itself.
                *armed_at = when;
                if let Some(id) = timer {
                    if time.arm_deadline(id, when, seq) {
                        shared.timer_added(when);
                    }
                }
                return;
            }
            Fired::Expired => {}
        }
        self.publish_info(locked);
        let waker = self.slot(mode).unblock();
        drop(guard);
        if let Some(waker) = waker {
            driver::route(waker, batch);
        }
    }
}

/// A socket's registration with the runtime: its descriptor, and the runtime that owns it.
///
/// # Invariant
///
/// `pd` points into the descriptor cache of `handle`'s I/O driver. The cache never frees or
/// moves a descriptor while the driver lives, and `handle` keeps the driver alive, so `pd` is
/// valid for as long as the registration exists. From [`Registration::new`] until it drops,
/// this registration is the descriptor's only user.
#[repr(C)]
pub(crate) struct Registration {
    /// First: the one field every operation reads (see `net::fd::Inner`'s layout).
    pd: NonNull<PollDesc>,
    handle: Handle,
    index: u32,
    /// The descriptor's generation while it belongs to this registration.
    generation: u32,
}

// SAFETY: the descriptor is made of atomics and a mutex (`Sync`), and the registration only
// hands out shared references to it; `Handle` is `Send + Sync`.
unsafe impl Send for Registration {}
// SAFETY: as above.
unsafe impl Sync for Registration {}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("index", &self.index)
            .field("generation", &self.pd().generation())
            .finish()
    }
}

impl Registration {
    /// Go's `pollOpen`: takes a descriptor and registers `fd` with the poller, edge-triggered
    /// for both directions, for the fd's whole life.
    pub(crate) fn new(handle: &Handle, fd: std::os::fd::RawFd) -> io::Result<Registration> {
        if handle.shared.is_shutdown() {
            return Err(io::Error::other("the netpoll runtime has shut down"));
        }
        let io = &handle.shared.driver.io;
        let (index, pd) = io.cache.alloc();
        let generation = pd.reuse();
        let token = ((generation as u64) << GEN_SHIFT) | index as u64;
        if let Err(e) = io.poller.register(fd, token) {
            pd.retire();
            io.cache.free(index);
            return Err(e);
        }
        io.count_registration(1);
        Ok(Registration {
            handle: handle.clone(),
            pd: NonNull::from(pd),
            index,
            generation,
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn pd(&self) -> &PollDesc {
        // SAFETY: see the type's invariant.
        unsafe { self.pd.as_ref() }
    }

    /// Go's `pollReset`, at the start of every operation: fails fast on a closed socket or an
    /// expired deadline (even when data is ready), and clears a stale readiness notification.
    pub(crate) fn prepare(&self, mode: Mode) -> Result<(), PollError> {
        let deadline = self.check_info(mode)?;
        if deadline > 0 {
            return self.prepare_with_deadline(mode, deadline);
        }
        self.pd().slot(mode).reset();
        Ok(())
    }

    /// Whether an event for this socket reported hang-up, peer half-close, an error or urgent
    /// data. The poller sets the bit before it publishes the readiness of that event, so a
    /// reader that consumed or cleared that readiness sees it.
    pub(crate) fn exceptional_seen(&self) -> bool {
        self.pd().exceptional()
    }

    /// Go's `netpollcheckerr`: `prepare` without clearing readiness, for an operation that
    /// knows a pending notification is not stale.
    ///
    /// Unlike Go, it also fails with the timeout when the deadline has passed but its timer
    /// has not run yet (within a tick normally, later on a loaded machine), so an operation
    /// that starts after its deadline always times out, even with data ready. Go looks only at
    /// the expired bit the timer sets. The cost is a load of the deadline word, and a read of
    /// the coarse clock when a deadline is set.
    pub(crate) fn check(&self, mode: Mode) -> Result<(), PollError> {
        let deadline = self.check_info(mode)?;
        if deadline > 0 {
            return self.check_deadline(deadline);
        }
        Ok(())
    }

    /// The `info` half of [`Registration::check`]; returns the deadline word in `mode`.
    #[inline]
    fn check_info(&self, mode: Mode) -> Result<i64, PollError> {
        let pd = self.pd();
        pd.check_now(mode)?;
        Ok(pd.deadline(mode).get())
    }

    /// The clock half of [`Registration::check`], for a set deadline (`deadline > 0`).
    ///
    /// Out of line, and reached by a tail call from `check` and `prepare`: inlined, its
    /// register saves cost every operation about 10 instructions, deadline or not (callgrind,
    /// echo).
    #[inline(never)]
    fn check_deadline(&self, deadline: i64) -> Result<(), PollError> {
        if self.handle.shared.driver.clock.is_past(deadline as u64) {
            return Err(PollError::Timeout);
        }
        Ok(())
    }

    /// [`Registration::prepare`] for a set deadline (`deadline > 0`).
    #[inline(never)]
    fn prepare_with_deadline(&self, mode: Mode, deadline: i64) -> Result<(), PollError> {
        self.check_deadline(deadline)?;
        self.pd().slot(mode).reset();
        Ok(())
    }

    /// Go's `pollWait` as a poll function: Ready(Ok) when the fd may be ready again (retry the
    /// system call), Ready(Err) on close or deadline, Pending with the waker stored otherwise.
    /// A caller that stops polling before Ready must call [`Registration::cancel_wait`].
    /// A poll-based caller passes `displaced` to receive the waker its registration displaces,
    /// if any; otherwise that waker is woken (see `Slot::poll_wait`).
    pub(crate) fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        mode: Mode,
        displaced: Option<&mut Option<Waker>>,
    ) -> Poll<Result<(), PollError>> {
        let pd = self.pd();
        if let Err(e) = PollDesc::check(pd.info.load(Ordering::Acquire), mode) {
            pd.slot(mode).cancel_wait();
            return Poll::Ready(Err(e));
        }
        // The re-check after announcing the wait (slot.rs: the slot's read-modify-writes make
        // the Dekker pair; an `Acquire` load of `info` suffices here).
        pd.slot(mode).poll_wait(cx, displaced, || {
            PollDesc::check(pd.info.load(Ordering::Acquire), mode).err()
        })
    }

    /// `poll_wait` for a wait that was parked and has been polled again: readiness delivered to
    /// it wins over an error published since (Go's `netpollblock` returns "ready" after its
    /// wake-up; the next operation sees the error).
    pub(crate) fn poll_wait_resumed(
        &self,
        cx: &mut Context<'_>,
        mode: Mode,
    ) -> Poll<Result<(), PollError>> {
        if self.pd().slot(mode).take_ready() {
            return Poll::Ready(Ok(()));
        }
        self.poll_wait(cx, mode, None)
    }

    /// Withdraws a waker left by `poll_wait` (a dropped operation), keeping any readiness.
    pub(crate) fn cancel_wait(&self, mode: Mode) {
        self.pd().slot(mode).cancel_wait();
    }

    /// Go's `pollSetDeadline`. `mode` `None` sets both directions.
    ///
    /// Fails with the closed error once the socket is closed. It takes no reference on the
    /// socket: racing a close, it touches only this socket's descriptor, which is not reused
    /// before the registration drops.
    #[inline]
    pub(crate) fn set_deadline(
        &self,
        deadline: Option<Instant>,
        mode: Option<Mode>,
    ) -> Result<(), PollError> {
        let clock = &self.handle.shared.driver.clock;
        let d: i64 = match deadline {
            None => 0,
            Some(t) => {
                let ns = clock.instant_ns(t);
                if clock.is_past(ns) {
                    -1
                } else {
                    ns.min(i64::MAX as u64) as i64
                }
            }
        };
        self.store_deadline(d, mode)
    }

    /// [`set_deadline`](Self::set_deadline) to `d` from now, as [`Clock::after`] measures it
    /// (from the coarse clock for a second or more: no precise clock read). A zero `d` is
    /// now, which has passed.
    ///
    /// [`Clock::after`]: crate::driver::Clock::after
    #[inline]
    pub(crate) fn set_deadline_after(
        &self,
        d: Duration,
        mode: Option<Mode>,
    ) -> Result<(), PollError> {
        let d = if d.is_zero() {
            -1
        } else {
            let ns = self.handle.shared.driver.clock.after(d);
            ns.min(i64::MAX as u64) as i64
        };
        self.store_deadline(d, mode)
    }

    /// Stores a deadline in Go's encoding (0: none, −1: passed, else clock ns), arms its
    /// timers and wakes the waits a passed one fails.
    #[inline]
    fn store_deadline(&self, d: i64, mode: Option<Mode>) -> Result<(), PollError> {
        let pd = self.pd();
        let read = mode != Some(Mode::Write);
        let write = mode != Some(Mode::Read);
        // A deadline moved later: one compare-and-swap per direction, no lock. A positive
        // deadline is never a closing socket's (`deadline.rs`), so this cannot miss a close.
        if d > 0 && (!read || pd.rd.extend(d)) && (!write || pd.wd.extend(d)) {
            return Ok(());
        }
        self.store_deadline_locked(d, read, write)
    }

    /// Every other deadline change: under the descriptor lock.
    #[inline(never)]
    fn store_deadline_locked(&self, d: i64, read: bool, write: bool) -> Result<(), PollError> {
        let pd = self.pd();
        let shared = &self.handle.shared;
        let mut locked = pd.locked.lock();
        if locked.closing {
            return Err(PollError::Closing);
        }
        debug_assert_eq!(pd.generation(), self.generation);
        if read {
            pd.rd.set(d);
        }
        if write {
            pd.wd.set(d);
        }
        pd.publish_info(&locked);
        let mut earliest = None;
        if read && d > 0 {
            earliest = self.arm(&mut locked, Mode::Read, d as u64);
        }
        if write && d > 0 {
            earliest = earliest.or(self.arm(&mut locked, Mode::Write, d as u64));
        }
        let rw = if read && d < 0 { pd.rg.unblock() } else { None };
        let ww = if write && d < 0 {
            pd.wg.unblock()
        } else {
            None
        };
        drop(locked);
        if let Some(when) = earliest {
            shared.timer_added(when);
        }
        if let Some(w) = rw {
            w.wake();
        }
        if let Some(w) = ww {
            w.wake();
        }
        Ok(())
    }

    /// Makes sure the `mode` timer fires no later than `when`. Returns `Some(when)` if it
    /// became the earliest timer of the runtime.
    fn arm(&self, locked: &mut Locked, mode: Mode, when: u64) -> Option<u64> {
        let time = &self.handle.shared.driver.time;
        let pd = self.pd.as_ptr() as *const PollDesc;
        let (timer, armed_at, seq) = match mode {
            Mode::Read => (&mut locked.rt, &mut locked.rt_when, &mut locked.rseq),
            Mode::Write => (&mut locked.wt, &mut locked.wt_when, &mut locked.wseq),
        };
        if *armed_at != 0 && *armed_at <= when {
            return None; // fires no later than needed; it re-arms itself (lazy extension)
        }
        if *armed_at != 0 {
            // Moving earlier: the pending firing must be ignored.
            *seq = seq.wrapping_add(1);
        }
        let id = *timer.get_or_insert_with(|| time.new_deadline_timer(pd, mode));
        *armed_at = when;
        time.arm_deadline(id, when, *seq).then_some(when)
    }

    /// Go's `pollUnblock` (the first step of close): marks the descriptor closing and wakes both
    /// waiters, who fail with the closed error. Later waits fail at once.
    pub(crate) fn evict(&self) {
        let pd = self.pd();
        let time = &self.handle.shared.driver.time;
        let mut guard = pd.locked.lock();
        let locked = &mut *guard;
        if locked.closing {
            return;
        }
        locked.closing = true;
        locked.rseq = locked.rseq.wrapping_add(1);
        locked.wseq = locked.wseq.wrapping_add(1);
        // A closing descriptor has no deadline to extend (`deadline.rs`); closing outranks an
        // expired one in every check anyway.
        pd.rd.set(0);
        pd.wd.set(0);
        pd.publish_info(locked);
        let rw = pd.rg.unblock();
        let ww = pd.wg.unblock();
        for (timer, when) in [
            (locked.rt, &mut locked.rt_when),
            (locked.wt, &mut locked.wt_when),
        ] {
            if *when != 0 {
                if let Some(id) = timer {
                    time.disarm(id);
                }
                *when = 0;
            }
        }
        drop(guard);
        if let Some(w) = rw {
            w.wake();
        }
        if let Some(w) = ww {
            w.wake();
        }
    }

    /// Go's `pollClose`: removes `fd` from the poller. Must run after
    /// [`Registration::evict`], once no operation is in flight, and before `fd` is closed. The
    /// descriptor stays this registration's, closing, until the registration drops.
    pub(crate) fn deregister(&self, fd: std::os::fd::RawFd) {
        let io = &self.handle.shared.driver.io;
        // The fd may already be gone from the interest list (e.g. the runtime shut down); there
        // is nothing useful to do with an error here.
        let _ = io.poller.deregister(fd);
        io.count_registration(-1);
    }
}

impl Drop for Registration {
    /// Frees the descriptor for reuse: the last handle on the socket is gone, so nothing can
    /// reach the descriptor through this registration any more.
    fn drop(&mut self) {
        self.pd().retire();
        self.handle.shared.driver.io.cache.free(self.index);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A descriptor in use with generation `generation`, as `Registration::new` leaves it.
    fn in_use(generation: u32) -> PollDesc {
        let pd = PollDesc::new();
        pd.info
            .store((generation as u64) << GEN_SHIFT, Ordering::Release);
        pd
    }

    #[test]
    fn an_error_event_of_an_earlier_generation_does_not_mark_the_descriptor() {
        let pd = in_use(7);
        pd.set_event_err(true, 6);
        assert_eq!(
            PollDesc::check(pd.info.load(Ordering::Acquire), Mode::Read),
            Ok(())
        );
        pd.set_event_err(true, 7);
        assert_eq!(
            PollDesc::check(pd.info.load(Ordering::Acquire), Mode::Read),
            Err(PollError::NotPollable)
        );
        // Writers never see the error-only flag (Go: only reads report it).
        assert_eq!(
            PollDesc::check(pd.info.load(Ordering::Acquire), Mode::Write),
            Ok(())
        );
        // A later normal event of the same generation clears it; a stale one does not.
        pd.set_event_err(false, 6);
        assert_ne!(pd.info.load(Ordering::Acquire) & EVENT_ERR, 0);
        pd.set_event_err(false, 7);
        assert_eq!(pd.info.load(Ordering::Acquire) & EVENT_ERR, 0);
        assert_eq!(pd.generation(), 7);
    }

    #[test]
    fn the_exceptional_bit_is_set_only_by_the_current_generation_and_sticks() {
        let pd = in_use(3);
        pd.set_exceptional(2);
        assert_eq!(pd.info.load(Ordering::Acquire) & EXCEPTIONAL, 0);
        pd.set_exceptional(3);
        assert_ne!(pd.info.load(Ordering::Acquire) & EXCEPTIONAL, 0);
        // A deadline publish recomputes the summary bits but keeps the sticky ones.
        pd.rd.set(-1);
        pd.set_event_err(true, 3);
        pd.publish_info(&Locked::default());
        let info = pd.info.load(Ordering::Acquire);
        assert_ne!(info & EXCEPTIONAL, 0);
        assert_ne!(info & EVENT_ERR, 0);
        assert_ne!(info & EXPIRED_READ, 0);
        assert_eq!(pd.generation(), 3);
        assert_eq!(PollDesc::check(info, Mode::Read), Err(PollError::Timeout));
    }
}

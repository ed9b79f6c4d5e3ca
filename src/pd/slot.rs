//! One direction (read or write) of a poll descriptor: Go's `pollDesc.rg` / `pollDesc.wg`.
//!
//! Model-checked by the loom models in `src/tests/loom_slot.rs` (`.ci/run` runs them).
//!
//! A [`Slot`] is a binary semaphore with Go's states (`runtime/netpoll.go`, spec §1.2–§1.5),
//! where Go's "parked goroutine pointer" is a [`Waker`] stored in the slot without allocating.
//! It is an atomic state word plus an `UnsafeCell<Option<Waker>>`; the state says who may touch
//! the cell.
//!
//! # States
//!
//! | state             | meaning                                               | cell owner          | cell    |
//! |-------------------|-------------------------------------------------------|---------------------|---------|
//! | `NIL`             | nothing pending, nobody waiting (Go `pdNil`)          | nobody (see note)   | empty   |
//! | `READY`           | a readiness notification is pending (Go `pdReady`)    | nobody (see note)   | empty   |
//! | `WAIT`            | the waiter is about to park (Go `pdWait`)             | the waiter          | any     |
//! | `PARKED`          | a waker is stored (Go's `*g`)                         | nobody: whoever CASes `PARKED` away takes it | full |
//! | `NOTIFYING`       | a notifier won `PARKED` and is taking the waker       | that notifier       | full→empty |
//! | `NOTIFYING_READY` | as `NOTIFYING`, and a `notify_ready` arrived meanwhile: settle to `READY` | that notifier | full→empty |
//!
//! Note: a notifier may move `WAIT` to `READY` or `NIL` while the waiter still holds a waker in
//! the cell (between storing it and its `WAIT -> PARKED` commit). Notifiers never touch the cell
//! in those states, so the waiter's ownership lasts until *its own* next write of the state
//! (its commit CAS or its withdrawing swap/CAS), and it empties the cell before any such write
//! that leaves the state `NIL` or `READY`. Outside a call of the waiter, the cell is empty in
//! `NIL` and `READY`.
//!
//! # Actors
//!
//! * **The waiter**: [`Slot::poll_wait`] and [`Slot::cancel_wait`], called by the single
//!   operation in flight in this direction (the net layer's fd lock serialises them, as Go's
//!   `fdMutex` does). These two never run concurrently with each other.
//! * **Notifiers**: [`Slot::notify_ready`] (the poller saw readiness, Go's
//!   `netpollunblock(ioready=true)`) and [`Slot::unblock`] (close or deadline, Go's
//!   `netpollunblock(ioready=false)`), from any thread, any number at once.
//! * **The operation owner** with no waiter in flight: [`Slot::reset`] (Go's `pollReset`) and
//!   [`Slot::init`] (Go's `pollOpen` on a reused descriptor).
//!
//! # Transitions
//!
//! | actor          | from                  | to                    | why |
//! |----------------|-----------------------|-----------------------|-----|
//! | waiter         | `READY`               | `NIL`                 | consume a pending notification: `Ready(Ok)` (only if `check_err` finds no error; with an error `READY` stays) |
//! | waiter         | `NIL`                 | `WAIT`                | announce; then `check_err` (the Dekker re-check, below) |
//! | waiter         | `PARKED`              | `WAIT`                | re-polled: own the cell again (keep or replace the waker), then as from `NIL` |
//! | waiter         | `WAIT`                | `PARKED`              | commit the stored waker: `Pending` (Go's `netpollblockcommit`) |
//! | waiter         | `WAIT`/`READY`/`NIL`  | `NIL` (swap)          | withdraw: `check_err` reported an error, or the commit CAS failed; empties the cell first; `Ready(Ok)` iff the swap returned `READY` |
//! | waiter         | `WAIT` (at entry)     | —                     | a second concurrent waiter: panic "double wait" (Go's `throw`) |
//! | waiter, cancel | `PARKED`              | `WAIT`, then `NIL`    | future dropped: take the waker out; the second step is a CAS from `WAIT`, so a `READY` that raced in is kept |
//! | `notify_ready` | `NIL`, `WAIT`         | `READY`               | readiness; from `WAIT` the waiter's commit fails and it returns `Ready(Ok)` |
//! | `notify_ready` | `PARKED`              | `NOTIFYING` → `READY` | take the waker, settle, return the waker to be woken |
//! | `notify_ready` | `NOTIFYING`           | `NOTIFYING_READY`     | readiness during a hand-off; it matters when the owner is an `unblock`, which then settles to `READY` instead of `NIL` |
//! | `notify_ready` | `READY`, `NOTIFYING_READY` | unchanged        | coalesce: a binary semaphore; readiness is never consumed by a notifier |
//! | `unblock`      | `WAIT`                | `NIL`                 | the waiter's commit fails; it re-runs `check_err` |
//! | `unblock`      | `PARKED`              | `NOTIFYING` → `NIL` (or `READY` if `NOTIFYING_READY`) | take the waker, settle, return it |
//! | `unblock`      | `NIL`, `READY`, `NOTIFYING*` | unchanged (CAS to itself) | nothing to wake: the error lives in the caller's info word; a `NOTIFYING*` owner wakes the waiter anyway |
//! | `reset`        | `READY`               | `NIL`                 | discard a stale notification before the syscall (Go's `pollReset`) |
//! | `init`         | `NIL`, `READY`        | `NIL`                 | descriptor reused (Go's `pollOpen`) |
//!
//! # Orderings and what pairs with what
//!
//! Every read-modify-write on the state is `AcqRel` (failure `Acquire`) and every load
//! `Acquire`. There are no plain stores: the settling write of a hand-off is a swap. (A plain
//! store would do under the C++ model, but it races the `NOTIFYING_READY` mark and `unblock`'s
//! CAS-to-itself, and loom orders a plain store against a concurrent RMW more loosely than RMW
//! atomicity allows, so it could strand the state in `NOTIFYING*`; the swap costs the same on
//! x86, on a path that runs once per wake-up.) The pairs that matter:
//!
//! * Cell hand-off waiter → notifier: the waiter writes the waker, then its `WAIT -> PARKED`
//!   CAS releases; the notifier's `PARKED -> NOTIFYING` CAS acquires it before reading the cell.
//! * Cell hand-off notifier → waiter: the notifier empties the cell, then its settling swap or
//!   CAS (to `READY`/`NIL`) releases; the waiter's next load or CAS of the state acquires it
//!   (directly, or through later read-modify-writes, which continue the release sequence) before
//!   it writes the cell again. A waiter that re-polls while the notifier still holds
//!   `NOTIFYING*` spins until the settling write.
//! * Waiter re-poll / cancel: `PARKED -> WAIT` is a CAS by the thread that wrote `PARKED`; it
//!   fails if a notifier got there first, so at most one side ever takes the waker.
//! * **The Dekker pair (Go spec §1.5), store → load on both sides.** Waiter: its CAS into `WAIT`
//!   (W), then `check_err` reads the caller's error word (R). Unblocker: it publishes its error
//!   bit (E), then [`Slot::unblock`] reads the state (U). `AcqRel` does not order a store before
//!   a later load on another location (and loom treats SeqCst as AcqRel), so the pair is closed
//!   on the state word, where W and U are both read-modify-writes: U is a CAS even when nothing
//!   changes (a CAS to the same value), and every other write to the state is an RMW too, so
//!   release sequences are never broken. The two RMWs are totally ordered:
//!   - U before W: W reads U's write or a later RMW's, so U synchronises with W; E is sequenced
//!     before U, hence E happens before R, and R sees the error (write-read coherence).
//!   - W before U: U reads `WAIT` or a later state. `WAIT`: U moves it to `NIL`, the waiter's
//!     commit CAS fails reading U's write, and its re-check sees E. `PARKED`: U takes the waker;
//!     the woken waiter's re-poll acquires the settling swap, which follows U, and sees E.
//!     `NOTIFYING*`: a `notify_ready` is handing the waker off; its settling swap reads U's
//!     write (or the mark after it), so the same holds. `READY`/`NIL`: the waiter's wait is
//!     over or ending with readiness, see the last point below.
//!
//!   So `check_err` needs only a load (`Acquire`; an RMW such as `fetch_or(0, AcqRel)` works
//!   too), and E needs only to be sequenced before `unblock` (publishing it with an RMW, as Go's
//!   `publishInfo` CAS loop does, is still what keeps concurrent publishers from losing each
//!   other's bits). The loom models check a load in `check_err`; they fail if `unblock` decides
//!   on a plain load instead of its CAS.
//!
//! # Why no readiness is lost and no waker is woken twice for one event
//!
//! * Notifiers only ever *produce* `READY` (or keep it); only the waiter and `reset` consume it.
//!   A notification that meets `WAIT` turns it into `READY`, which makes the waiter's commit CAS
//!   fail; the waiter then sees `READY` in its swap. One that meets `PARKED` takes the waker and
//!   settles to `READY`, so the woken waiter (or the next one) finds it. One that meets a
//!   `NOTIFYING` owned by an `unblock` marks `NOTIFYING_READY`, and the owner settles to `READY`.
//! * A stored waker leaves the cell exactly once: by the single successful CAS out of `PARKED`
//!   (a notifier's to `NOTIFYING`, which then returns it; or the waiter's own to `WAIT`, which
//!   keeps, replaces or drops it). So a waker is returned at most once per park, never after it
//!   was replaced, and the slot itself never wakes anything: callers wake the returned wakers
//!   after dropping their locks (house rule: never wake under a lock).
//! * A waiter woken by `notify_ready` while an `unblock` overlapped may return `Ready(Ok)` once,
//!   when U came after the hand-off had settled to `READY` (as Go's `netpollblock` returns true
//!   on `pdReady` without looking at errors). The error is then seen by its next wait, whose W
//!   comes after U in the state's modification order.

use std::fmt;
use std::task::{Context, Poll, Waker};

use crate::loom::{spin_loop, AtomicUsize, Ordering, UnsafeCell};

/// Nothing pending, nobody waiting (Go `pdNil`). The cell is empty.
const NIL: usize = 0;
/// A readiness notification is pending and has not been consumed (Go `pdReady`). Set only by
/// notifiers; cleared only by the waiter and `reset`. The cell is empty.
const READY: usize = 1;
/// The waiter has announced that it is about to park and owns the cell (Go `pdWait`). Set only by
/// the waiter; a notifier may move it to `READY` or `NIL`, never into a cell-owning state.
const WAIT: usize = 2;
/// A waker is stored (Go's goroutine pointer). Set only by the waiter's commit CAS from `WAIT`;
/// whoever CASes it to anything else takes the waker.
const PARKED: usize = 3;
/// A notifier won the CAS from `PARKED` and is taking the waker out. Left only by that notifier's
/// settling write; others may only add the readiness mark (`NOTIFYING_READY`), or CAS it to
/// itself (`unblock`), and the waiter and `cancel_wait` spin until it settles.
const NOTIFYING: usize = 4;
/// `NOTIFYING` plus "a `notify_ready` arrived meanwhile": the owner settles to `READY`. Same
/// ownership rules as `NOTIFYING`.
const NOTIFYING_READY: usize = 5;

/// Rounds of exponential spinning before [`backoff`] starts yielding the thread. A guess, not
/// tuned: the `NOTIFYING` window it waits out is a 16-byte move and one swap, so 2^6 − 1 spin
/// hints in total cover it unless the notifier was preempted, which yielding then handles.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 6;

/// One direction of a poll descriptor: Go's `rg`/`wg` binary semaphore holding a [`Waker`].
///
/// See the module documentation for the protocol.
pub(crate) struct Slot {
    /// One of `NIL`, `READY`, `WAIT`, `PARKED`, `NOTIFYING`, `NOTIFYING_READY`.
    state: AtomicUsize,
    /// The parked waiter's waker.
    ///
    /// # Invariant
    /// Accessed only by the owner named by `state` (module docs): the waiter from its
    /// successful transition into `WAIT` until its own next write of the state, or a notifier
    /// between its `PARKED -> NOTIFYING` CAS and its settling write. Full in `PARKED`; empty in
    /// `NIL` and `READY` whenever no waiter call is in progress.
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the only non-`Sync` part is the waker cell, and the state protocol gives exactly one
// thread access to it at a time, with acquire/release hand-offs between owners (module docs).
// `Waker` is `Send + Sync`, so moving it between those threads is fine.
unsafe impl Sync for Slot {}

/// Wakes a waker displaced from the slot, or hands it to the caller that asked for it (see
/// `Slot::poll_wait`).
fn hand_over_displaced(waker: Waker, place: Option<&mut Option<Waker>>) {
    match place {
        Some(place) => {
            if let Some(earlier) = place.replace(waker) {
                earlier.wake();
            }
        }
        None => waker.wake(),
    }
}

impl Slot {
    /// An empty slot (`NIL`).
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Slot {
        Slot {
            state: AtomicUsize::new(NIL),
            waker: UnsafeCell::new(None),
        }
    }

    /// An empty slot (`NIL`). loom's atomics cannot be built in a `const fn`.
    #[cfg(loom)]
    pub(crate) fn new() -> Slot {
        Slot {
            state: AtomicUsize::new(NIL),
            waker: UnsafeCell::new(None),
        }
    }

    /// The waiter: Go's `pollWait`/`netpollblock` as a poll function.
    ///
    /// `check_err` reports the caller's closing / expired-deadline / event-error state (Go's
    /// `netpollcheckerr`). It is the waiter's half of the Dekker pair: it must read the caller's
    /// error word **afresh on every call**, with at least an `Acquire` load (an RMW such as
    /// `info.fetch_or(0, AcqRel)` also works), and the unblocker must publish its error before
    /// calling [`Slot::unblock`] (module docs). It may be called several times per poll.
    ///
    /// Returns `Ready(Ok(()))` when a readiness notification was consumed, `Ready(Err(e))` when
    /// `check_err` reported `e`, and `Pending` once `cx`'s waker is committed; the caller is then
    /// woken through the waker that `notify_ready` or `unblock` returns. A pending `READY` at
    /// entry loses to an error (and stays pending), as Go's `pollWait` checks errors first.
    ///
    /// One waiter per slot at a time is the caller's invariant (the fd lock, Go's `fdMutex`).
    /// A second waiter that arrives while the first is in `WAIT` panics; one that arrives while
    /// the first is `PARKED` cannot be told from a re-poll and takes over the registration.
    /// A waker displaced that way (by one that does not `will_wake` it) must not be stranded: a
    /// poll-based reader (`AsyncRead`) leaves its waker here between polls without holding the
    /// fd lock. With `displaced` `None` it is woken at once, so that its owner polls again (an
    /// async operation, which holds the fd lock, displaced it). A poll-based caller passes a
    /// place instead and keeps the waker to wake later (`net/fd.rs`): woken at once, two
    /// poll-based readers of one socket would wake each other forever. For a re-poll by the
    /// same task the wake-up is spurious.
    ///
    /// # Panics
    /// If another wait is in progress on this slot ("double wait", Go's `throw`).
    pub(crate) fn poll_wait<E>(
        &self,
        cx: &mut Context<'_>,
        mut displaced: Option<&mut Option<Waker>>,
        check_err: impl Fn() -> Option<E>,
    ) -> Poll<Result<(), E>> {
        let mut spins = 0;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            match cur {
                READY => {
                    if let Some(e) = check_err() {
                        return Poll::Ready(Err(e));
                    }
                    match self.cas(READY, NIL) {
                        Ok(_) => return Poll::Ready(Ok(())),
                        // Only `reset` could have consumed it, and it does not run with a
                        // waiter in flight; re-examine rather than assume.
                        Err(actual) => cur = actual,
                    }
                }
                NIL | PARKED => match self.cas(cur, WAIT) {
                    Ok(_) => {
                        match self.wait_holding_cell(
                            cx,
                            &check_err,
                            cur == PARKED,
                            displaced.as_deref_mut(),
                        ) {
                            Some(done) => return done,
                            // Unblocked with no error left to report: Go's "deadline was extended
                            // meanwhile". Start over.
                            None => cur = self.state.load(Ordering::Acquire),
                        }
                    }
                    Err(actual) => cur = actual,
                },
                NOTIFYING | NOTIFYING_READY => {
                    backoff(&mut spins);
                    cur = self.state.load(Ordering::Acquire);
                }
                WAIT => panic!("netpoll: double wait on a poll descriptor"),
                _ => corrupted(cur),
            }
        }
    }

    /// Consumes a pending readiness (`READY` → `NIL`) without looking at errors, for a waiter
    /// that was parked and has been woken: Go's `netpollblock` returns "ready" after its
    /// wake-up without re-checking errors, so readiness delivered before a deadline passed still
    /// wins. Waits out a hand-off in progress. Returns whether there was one.
    pub(crate) fn take_ready(&self) -> bool {
        let mut spins = 0;
        loop {
            match self.state.load(Ordering::Acquire) {
                READY => {
                    if self.cas(READY, NIL).is_ok() {
                        return true;
                    }
                }
                NOTIFYING | NOTIFYING_READY => backoff(&mut spins),
                _ => return false,
            }
        }
    }

    /// The second half of `poll_wait`, entered in `WAIT` and owning the cell (`cell_full` if we
    /// came from `PARKED` and the previous waker is still inside). Returns `None` to start over.
    fn wait_holding_cell<E>(
        &self,
        cx: &mut Context<'_>,
        check_err: &impl Fn() -> Option<E>,
        cell_full: bool,
        displaced: Option<&mut Option<Waker>>,
    ) -> Option<Poll<Result<(), E>>> {
        // The Dekker re-check: `WAIT` is published, now look at the error word.
        if let Some(e) = check_err() {
            // SAFETY: we are in `WAIT` by our own CAS and have not written the state since.
            let stale = if cell_full {
                unsafe { self.take_waker() }
            } else {
                None
            };
            let prev = self.state.swap(NIL, Ordering::AcqRel);
            debug_assert!(matches!(prev, WAIT | READY | NIL), "state {prev}");
            // Its owner must learn about the error too (see `poll_wait`).
            if let Some(w) = stale {
                if !w.will_wake(cx.waker()) {
                    hand_over_displaced(w, displaced);
                }
            }
            return Some(Poll::Ready(if prev == READY { Ok(()) } else { Err(e) }));
        }

        // SAFETY: we are the waiter in `WAIT` (our CAS into it succeeded and we have not written
        // the state since), so we own the cell; no reference into it outlives this closure.
        let replaced = self.waker.with_mut(|cell| unsafe {
            match &mut *cell {
                Some(w) if w.will_wake(cx.waker()) => None,
                cell => cell.replace(cx.waker().clone()),
            }
        });
        // A displaced waiter must not be stranded (see `poll_wait`). Waking or dropping a
        // waker may run arbitrary code: do it outside the cell access.
        if let Some(w) = replaced {
            hand_over_displaced(w, displaced);
        }

        match self.cas(WAIT, PARKED) {
            Ok(_) => Some(Poll::Pending),
            Err(_) => {
                // A notifier moved `WAIT` to `READY` or `NIL`. We still own the cell until our
                // next state write: empty it first.
                // SAFETY: as said, the cell is ours until the swap below.
                let ours = unsafe { self.take_waker() };
                let prev = self.state.swap(NIL, Ordering::AcqRel);
                debug_assert!(matches!(prev, READY | NIL), "state {prev}");
                drop(ours);
                if prev == READY {
                    return Some(Poll::Ready(Ok(())));
                }
                check_err().map(|e| Poll::Ready(Err(e)))
            }
        }
    }

    /// The waiting future was dropped: withdraw its waker and keep any pending `READY`.
    ///
    /// Afterwards the slot is `NIL` or `READY` and the cell is empty. Must be called only by the
    /// current waiter (or when there is none), never concurrently with `poll_wait`.
    ///
    /// # Panics
    /// If a wait is in progress (state `WAIT`): a caller bug, as for `poll_wait`.
    pub(crate) fn cancel_wait(&self) {
        let mut spins = 0;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            match cur {
                NIL | READY => return,
                PARKED => match self.cas(PARKED, WAIT) {
                    Ok(_) => {
                        // SAFETY: our CAS moved `PARKED` to `WAIT`: the cell (holding our
                        // waker) is ours until the CAS below.
                        let ours = unsafe { self.take_waker() };
                        // A CAS, not a swap: a `READY` that a notifier put in meanwhile stays.
                        let _ = self.cas(WAIT, NIL);
                        drop(ours);
                        return;
                    }
                    Err(actual) => cur = actual,
                },
                NOTIFYING | NOTIFYING_READY => {
                    backoff(&mut spins);
                    cur = self.state.load(Ordering::Acquire);
                }
                WAIT => panic!("netpoll: cancel_wait during a wait on the same poll descriptor"),
                _ => corrupted(cur),
            }
        }
    }

    /// The poller saw readiness (Go's `netpollunblock(ioready=true)`): leave `READY` for the
    /// waiter and return the parked waiter's waker, if any, for the caller to wake.
    ///
    /// Never consumes readiness; repeated notifications coalesce.
    pub(crate) fn notify_ready(&self) -> Option<Waker> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let next = match cur {
                READY | NOTIFYING_READY => return None,
                NIL | WAIT => READY,
                PARKED => NOTIFYING,
                NOTIFYING => NOTIFYING_READY,
                _ => corrupted(cur),
            };
            match self.cas(cur, next) {
                // SAFETY: our CAS just moved `PARKED` to `NOTIFYING`.
                Ok(_) if cur == PARKED => return unsafe { self.finish_hand_off(READY) },
                Ok(_) => return None,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Close or deadline (Go's `netpollunblock(ioready=false)`): make a waiter re-check its
    /// errors, returning the parked waiter's waker, if any, for the caller to wake.
    ///
    /// The caller must have published its error bit (an atomic write, best an RMW so that
    /// concurrent publishers keep each other's bits) **before** calling this: the state CAS here
    /// is the unblocker's half of the Dekker pair (module docs). `NIL` and `READY` are left
    /// unchanged.
    pub(crate) fn unblock(&self) -> Option<Waker> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let next = match cur {
                WAIT => NIL,
                PARKED => NOTIFYING,
                // Nothing to do, but decide on a value read by an RMW (the latest in the
                // state's modification order), and write it back so that a later waiter's CAS
                // synchronises with us: the Dekker argument needs U to be an RMW.
                NIL | READY | NOTIFYING | NOTIFYING_READY => cur,
                _ => corrupted(cur),
            };
            match self.cas(cur, next) {
                // SAFETY: our CAS just moved `PARKED` to `NOTIFYING`.
                Ok(_) if cur == PARKED => return unsafe { self.finish_hand_off(NIL) },
                Ok(_) => return None,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Go's `pollReset`: at the start of an operation, by its owner with no waiter in flight,
    /// discard a stale `READY` (the syscall is tried first, so nothing is lost).
    ///
    /// An async waiter never leaves a waker behind, but a poll-based one (`AsyncRead`) may: it
    /// returns `Pending` with its waker `PARKED` and releases the fd lock, and may never poll
    /// again. So the state may also be `PARKED` or mid-hand-off here; `reset` leaves those alone
    /// and the next wait takes the registration over. Only `WAIT` (a wait in progress) is a
    /// protocol violation. A CAS from `READY` rather than a blind store, so that nothing can
    /// clobber a hand-off; one load and no RMW when already `NIL`.
    pub(crate) fn reset(&self) {
        let cur = self.state.load(Ordering::Acquire);
        debug_assert!(cur != WAIT, "reset during a wait: state {cur}");
        if cur == READY {
            let _ = self.cas(READY, NIL);
        }
    }

    /// Go's `pollOpen` for a reused descriptor: set `NIL`.
    ///
    /// # Panics
    /// If a waiter is still parked or in flight (Go throws "blocked read/write on free
    /// polldesc"): its waker would be stranded.
    pub(crate) fn init(&self) {
        let prev = self.state.swap(NIL, Ordering::AcqRel);
        assert!(
            matches!(prev, NIL | READY),
            "netpoll: blocked read/write on a free poll descriptor (state {prev})"
        );
    }

    /// Whether a waiter is registered or in flight (state `WAIT`, `PARKED` or `NOTIFYING*`): a
    /// snapshot for assertions such as Go's "close polldesc w/o unblock" check.
    pub(crate) fn has_waiter(&self) -> bool {
        !matches!(self.state.load(Ordering::Acquire), NIL | READY)
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// Whether a readiness notification is pending (a snapshot, for tests and assertions).
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// The rest of a notifier's hand-off after its `PARKED -> NOTIFYING` CAS: take the waker and
    /// settle to `settle` (`READY` or `NIL`), or to `READY` if a `notify_ready` marked
    /// `NOTIFYING_READY` meanwhile. Returns the waker for the caller to wake.
    ///
    /// # Safety
    /// The caller's own CAS must have just moved the state from `PARKED` to `NOTIFYING`, and the
    /// caller must not have written the state since.
    unsafe fn finish_hand_off(&self, settle: usize) -> Option<Waker> {
        debug_assert!(matches!(settle, READY | NIL));
        // SAFETY: by the contract we won `PARKED -> NOTIFYING`, so the cell is ours until the
        // settling write below.
        let waker = unsafe { self.take_waker() };
        debug_assert!(waker.is_some(), "PARKED with an empty cell");
        if settle == READY {
            // Overwrites a `NOTIFYING_READY` mark too: we settle to `READY` anyway.
            let prev = self.state.swap(READY, Ordering::AcqRel);
            debug_assert!(matches!(prev, NOTIFYING | NOTIFYING_READY), "state {prev}");
        } else if let Err(actual) = self.cas(NOTIFYING, NIL) {
            // Only `notify_ready` changes our `NOTIFYING`, and only to this mark (an `unblock`
            // CASes it to itself); nobody changes the mark, so we settle to `READY`.
            debug_assert_eq!(actual, NOTIFYING_READY);
            self.state.swap(READY, Ordering::AcqRel);
        }
        waker
    }

    /// Takes the waker out of the cell.
    ///
    /// # Safety
    /// The caller must own the cell by the state protocol: the waiter after its successful CAS
    /// into `WAIT` and before its next write of the state, or the notifier whose CAS moved
    /// `PARKED` to `NOTIFYING` before its settling write.
    unsafe fn take_waker(&self) -> Option<Waker> {
        // SAFETY: the caller owns the cell (contract above), so no other thread accesses it
        // concurrently, and no reference into it outlives this closure.
        self.waker.with_mut(|cell| unsafe { (*cell).take() })
    }

    /// The state CAS used everywhere: `AcqRel` on success, `Acquire` on failure.
    #[inline]
    fn cas(&self, current: usize, new: usize) -> Result<usize, usize> {
        self.state
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
}

impl Default for Slot {
    fn default() -> Slot {
        Slot::new()
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            NIL => "NIL",
            READY => "READY",
            WAIT => "WAIT",
            PARKED => "PARKED",
            NOTIFYING => "NOTIFYING",
            NOTIFYING_READY => "NOTIFYING_READY",
            _ => "corrupted",
        };
        f.debug_struct("Slot").field("state", &state).finish()
    }
}

/// Waits out a notifier's `NOTIFYING` window: spin with growing rounds, then yield the thread.
#[cfg(not(loom))]
fn backoff(step: &mut u32) {
    if *step < SPIN_ROUNDS {
        for _ in 0..1u32 << *step {
            spin_loop();
        }
        *step += 1;
    } else {
        crate::loom::thread::yield_now();
    }
}

/// Under loom every spin must yield to the model's scheduler, once.
#[cfg(loom)]
fn backoff(_step: &mut u32) {
    spin_loop();
}

#[cold]
#[track_caller]
fn corrupted(state: usize) -> ! {
    panic!("netpoll: corrupted poll descriptor slot (state {state})")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wake-ups; `Arc::strong_count` tells how many copies exist.
    #[derive(Default)]
    struct Counter {
        wakes: StdAtomicUsize,
    }

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    fn wakes(counter: &Arc<Counter>) -> usize {
        counter.wakes.load(Ordering::SeqCst)
    }

    #[derive(Debug, PartialEq)]
    struct Closed;

    fn no_err() -> Option<Closed> {
        None
    }

    fn closed() -> Option<Closed> {
        Some(Closed)
    }

    fn wait(slot: &Slot, waker: &Waker) -> Poll<Result<(), Closed>> {
        slot.poll_wait(&mut Context::from_waker(waker), None, no_err)
    }

    fn state(slot: &Slot) -> usize {
        slot.state.load(Ordering::SeqCst)
    }

    #[test]
    fn slot_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Slot>();
    }

    #[test]
    fn new_slot_parks_the_first_waiter_with_one_clone_of_its_waker() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        assert_eq!(state(&slot), PARKED);
        assert!(slot.has_waiter());
        assert_eq!(
            Arc::strong_count(&counter),
            3,
            "ours, `waker`, the stored clone"
        );
        assert_eq!(wakes(&counter), 0);
    }

    #[test]
    fn notify_on_an_idle_slot_leaves_ready_and_returns_no_waker() {
        let slot = Slot::new();
        assert!(slot.notify_ready().is_none());
        assert!(slot.is_ready());
    }

    #[test]
    fn waiter_consumes_a_pending_ready_without_parking() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        slot.notify_ready();
        assert_eq!(wait(&slot, &waker), Poll::Ready(Ok(())));
        assert_eq!(state(&slot), NIL);
        assert_eq!(Arc::strong_count(&counter), 2, "nothing stored");
        assert_eq!(wait(&slot, &waker), Poll::Pending, "consumed exactly once");
    }

    #[test]
    fn notifications_coalesce_into_one_ready() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        assert!(slot.notify_ready().is_none());
        assert!(slot.notify_ready().is_none());
        assert_eq!(wait(&slot, &waker), Poll::Ready(Ok(())));
        assert_eq!(wait(&slot, &waker), Poll::Pending);
    }

    #[test]
    fn pending_error_wins_over_ready_at_entry_and_ready_is_kept() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        slot.notify_ready();
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, closed);
        assert_eq!(r, Poll::Ready(Err(Closed)));
        assert!(slot.is_ready());
    }

    #[test]
    fn error_seen_after_announcing_wait_returns_err_and_leaves_nil() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            assert_eq!(
                state(&slot),
                WAIT,
                "the re-check runs after WAIT is published"
            );
            Some(Closed)
        });
        assert_eq!(r, Poll::Ready(Err(Closed)));
        assert_eq!(state(&slot), NIL);
        assert_eq!(Arc::strong_count(&counter), 2, "nothing stored");
    }

    #[test]
    fn readiness_in_the_wait_window_fails_the_commit_and_returns_ok() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            // WAIT -> READY: no waker to return, the waiter's commit will fail.
            assert!(slot.notify_ready().is_none());
            None::<Closed>
        });
        assert_eq!(r, Poll::Ready(Ok(())));
        assert_eq!(state(&slot), NIL, "the READY was consumed by this wait");
        assert_eq!(
            Arc::strong_count(&counter),
            2,
            "the stored clone was taken back"
        );
        assert_eq!(wakes(&counter), 0);
    }

    #[test]
    fn unblock_in_the_wait_window_makes_the_waiter_recheck_and_return_err() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        let calls = Cell::new(0);
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                // The closer publishes its bit just after our check, then unblocks: WAIT -> NIL.
                assert!(slot.unblock().is_none());
                assert_eq!(state(&slot), NIL);
                None
            } else {
                Some(Closed)
            }
        });
        assert_eq!(r, Poll::Ready(Err(Closed)));
        assert_eq!(calls.get(), 2);
        assert_eq!(state(&slot), NIL);
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn unblock_without_an_error_left_makes_the_waiter_wait_again() {
        // Go's "deadline extended meanwhile": unblocked, but the re-check finds no error.
        let slot = Slot::new();
        let (counter, waker) = counting();
        let calls = Cell::new(0);
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                slot.unblock();
            }
            None::<Closed>
        });
        assert_eq!(r, Poll::Pending);
        assert_eq!(
            calls.get(),
            3,
            "check, re-check after the failed commit, check again"
        );
        assert_eq!(state(&slot), PARKED);
        assert_eq!(Arc::strong_count(&counter), 3);
    }

    #[test]
    fn readiness_racing_an_error_in_the_wait_window_returns_ok() {
        // Go's netpollblock: after the re-check fails it swaps to nil and reports pdReady.
        let slot = Slot::new();
        let (_counter, waker) = counting();
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            slot.notify_ready();
            Some(Closed)
        });
        assert_eq!(r, Poll::Ready(Ok(())));
        assert_eq!(state(&slot), NIL);
    }

    #[test]
    fn notify_ready_returns_the_parked_waker_once_and_leaves_ready() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        let taken = slot.notify_ready().expect("the parked waker");
        assert!(taken.will_wake(&waker));
        assert!(slot.is_ready());
        assert!(
            slot.notify_ready().is_none(),
            "no second waker for the same park"
        );
        assert_eq!(wakes(&counter), 0, "the slot does not wake by itself");
        taken.wake();
        assert_eq!(wakes(&counter), 1);
        assert_eq!(wait(&slot, &waker), Poll::Ready(Ok(())));
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn unblock_returns_the_parked_waker_and_leaves_nil() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        let err = Cell::new(false);
        let check = || err.get().then_some(Closed);
        let mut cx = Context::from_waker(&waker);
        assert_eq!(slot.poll_wait(&mut cx, None, check), Poll::Pending);
        err.set(true);
        let taken = slot.unblock().expect("the parked waker");
        assert!(taken.will_wake(&waker));
        assert_eq!(state(&slot), NIL);
        assert!(slot.unblock().is_none());
        drop(taken);
        assert_eq!(
            slot.poll_wait(&mut cx, None, check),
            Poll::Ready(Err(Closed))
        );
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn unblock_leaves_nil_and_ready_unchanged() {
        let slot = Slot::new();
        assert!(slot.unblock().is_none());
        assert_eq!(state(&slot), NIL);
        slot.notify_ready();
        assert!(slot.unblock().is_none());
        assert!(slot.is_ready(), "unblock never consumes readiness");
    }

    #[test]
    fn repoll_with_the_same_waker_keeps_the_stored_clone() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        assert_eq!(wait(&slot, &waker.clone()), Poll::Pending);
        assert_eq!(state(&slot), PARKED);
        assert_eq!(Arc::strong_count(&counter), 3, "not cloned again");
    }

    #[test]
    fn repoll_with_a_new_waker_replaces_the_old_one_and_wakes_it() {
        let slot = Slot::new();
        let (old, old_waker) = counting();
        let (new, new_waker) = counting();
        assert_eq!(wait(&slot, &old_waker), Poll::Pending);
        assert_eq!(wait(&slot, &new_waker), Poll::Pending);
        assert_eq!(Arc::strong_count(&old), 2, "the old clone was consumed");
        assert_eq!(wakes(&old), 1, "the displaced waiter is told to poll again");
        assert_eq!(Arc::strong_count(&new), 3);
        slot.notify_ready().expect("the new waker").wake();
        assert_eq!(
            wakes(&old),
            1,
            "the notification goes to the new waker only"
        );
        assert_eq!(wakes(&new), 1);
    }

    #[test]
    fn a_woken_waiter_takes_readiness_even_after_an_error_is_published() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        slot.notify_ready().expect("the parked waker").wake();
        assert_eq!(wakes(&counter), 1);
        // The deadline passes before the woken task runs: poll_wait would report the error…
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, closed);
        assert_eq!(r, Poll::Ready(Err(Closed)));
        assert!(slot.is_ready(), "…and leave the readiness pending");
        // …while the resumed waiter takes the readiness delivered to it (Go).
        assert!(slot.take_ready());
        assert!(!slot.take_ready(), "consumed once");
    }

    #[test]
    fn a_poll_based_waiter_is_handed_the_waker_it_displaces() {
        let slot = Slot::new();
        let (old, old_waker) = counting();
        let (new, new_waker) = counting();
        assert_eq!(wait(&slot, &old_waker), Poll::Pending);
        let mut displaced = None;
        let r = slot.poll_wait(
            &mut Context::from_waker(&new_waker),
            Some(&mut displaced),
            no_err,
        );
        assert_eq!(r, Poll::Pending);
        assert_eq!(wakes(&old), 0, "poll-based callers do not wake each other");
        assert!(displaced
            .expect("the displaced waker is handed over")
            .will_wake(&old_waker));
        slot.notify_ready().expect("the new waker").wake();
        assert_eq!(wakes(&new), 1);
    }

    #[test]
    fn repoll_of_a_parked_waiter_sees_a_new_error_and_drops_its_waker() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        let r = slot.poll_wait(&mut Context::from_waker(&waker), None, closed);
        assert_eq!(r, Poll::Ready(Err(Closed)));
        assert_eq!(state(&slot), NIL);
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    #[should_panic(expected = "double wait")]
    fn second_concurrent_waiter_panics() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        let _ = slot.poll_wait(&mut Context::from_waker(&waker), None, || {
            // Another waiter arrives while this one is in WAIT.
            let _ = wait(&slot, &waker);
            None::<Closed>
        });
    }

    #[test]
    fn cancel_wait_withdraws_the_parked_waker() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        slot.cancel_wait();
        assert_eq!(state(&slot), NIL);
        assert!(!slot.has_waiter());
        assert_eq!(Arc::strong_count(&counter), 2);
        assert!(slot.notify_ready().is_none(), "nobody left to wake");
        assert!(slot.is_ready());
    }

    #[test]
    fn cancel_wait_keeps_a_pending_ready() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        assert_eq!(wait(&slot, &waker), Poll::Pending);
        slot.notify_ready();
        slot.cancel_wait();
        assert!(slot.is_ready());
        slot.cancel_wait();
        assert!(slot.is_ready());
    }

    #[test]
    fn cancel_wait_on_an_idle_slot_does_nothing() {
        let slot = Slot::new();
        slot.cancel_wait();
        assert_eq!(state(&slot), NIL);
    }

    #[test]
    fn reset_clears_a_stale_ready_and_keeps_nil() {
        let slot = Slot::new();
        slot.reset();
        assert_eq!(state(&slot), NIL);
        slot.notify_ready();
        slot.reset();
        assert_eq!(state(&slot), NIL);
    }

    #[test]
    fn init_sets_nil_on_a_reused_slot() {
        let slot = Slot::new();
        slot.notify_ready();
        slot.init();
        assert_eq!(state(&slot), NIL);
    }

    #[test]
    #[should_panic(expected = "blocked read/write on a free poll descriptor")]
    fn init_with_a_parked_waiter_panics() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        let _ = wait(&slot, &waker);
        slot.init();
    }

    /// Parks a waiter, then plays a notifier that has won `PARKED -> NOTIFYING` but not yet
    /// finished its hand-off.
    fn mid_hand_off(slot: &Slot, waker: &Waker) {
        assert_eq!(wait(slot, waker), Poll::Pending);
        assert_eq!(slot.cas(PARKED, NOTIFYING), Ok(PARKED));
    }

    #[test]
    fn readiness_during_an_unblock_hand_off_settles_to_ready() {
        let slot = Slot::new();
        let (counter, waker) = counting();
        mid_hand_off(&slot, &waker);
        assert!(slot.notify_ready().is_none(), "the owner returns the waker");
        assert_eq!(state(&slot), NOTIFYING_READY);
        assert!(slot.notify_ready().is_none());
        assert!(slot.unblock().is_none());
        assert_eq!(state(&slot), NOTIFYING_READY);
        // SAFETY: `mid_hand_off` made this thread the `PARKED -> NOTIFYING` winner.
        let taken = unsafe { slot.finish_hand_off(NIL) };
        assert!(taken.expect("the parked waker").will_wake(&waker));
        assert!(slot.is_ready(), "the readiness was not lost");
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn unblock_hand_off_without_readiness_settles_to_nil() {
        let slot = Slot::new();
        let (_counter, waker) = counting();
        mid_hand_off(&slot, &waker);
        assert!(slot.unblock().is_none(), "the owner wakes the waiter");
        assert_eq!(state(&slot), NOTIFYING);
        // SAFETY: `mid_hand_off` made this thread the `PARKED -> NOTIFYING` winner.
        assert!(unsafe { slot.finish_hand_off(NIL) }.is_some());
        assert_eq!(state(&slot), NIL);
    }

    #[test]
    fn waiter_repolled_during_a_hand_off_waits_for_it_then_consumes_ready() {
        let slot = Arc::new(Slot::new());
        let (counter, waker) = counting();
        mid_hand_off(&slot, &waker);
        let waiter = {
            let slot = slot.clone();
            let waker = waker.clone();
            std::thread::spawn(move || wait(&slot, &waker))
        };
        // SAFETY: `mid_hand_off` made this thread the `PARKED -> NOTIFYING` winner.
        let taken = unsafe { slot.finish_hand_off(READY) };
        assert_eq!(waiter.join().unwrap(), Poll::Ready(Ok(())));
        drop(taken);
        assert_eq!(state(&slot), NIL);
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn cancel_during_a_hand_off_waits_for_it_and_keeps_ready() {
        let slot = Arc::new(Slot::new());
        let (counter, waker) = counting();
        mid_hand_off(&slot, &waker);
        let canceller = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.cancel_wait())
        };
        // SAFETY: `mid_hand_off` made this thread the `PARKED -> NOTIFYING` winner.
        let taken = unsafe { slot.finish_hand_off(READY) };
        canceller.join().unwrap();
        assert!(slot.is_ready());
        drop(taken);
        assert_eq!(Arc::strong_count(&counter), 2);
    }

    #[test]
    fn debug_names_the_state() {
        let slot = Slot::new();
        slot.notify_ready();
        assert_eq!(format!("{slot:?}"), r#"Slot { state: "READY" }"#);
    }
}

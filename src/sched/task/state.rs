//! The task's state word: six flag bits and a reference count, in one `AtomicUsize`.
//!
//! ```text
//!  usize bits:  | 63 .. 6         | 5          | 4             | 3         | 2        | 1        | 0       |
//!               | reference count | JOIN_WAKER | JOIN_INTEREST | CANCELLED | NOTIFIED | COMPLETE | RUNNING |
//! ```
//!
//! Every transition is one atomic read-modify-write (a `fetch_*` or a CAS loop), so a thread
//! decides what to do from the exact value it replaced. Orderings: every transition is `AcqRel`
//! (failed CAS: `Acquire`) and every plain load is `Acquire`, so whatever a thread wrote into
//! the cell before publishing a bit is visible to the thread that observes that bit — the stage
//! before `RUNNING` is released or `COMPLETE` is set, the join waker before `JOIN_WAKER` is set.
//! The single exception is [`State::ref_inc`], `Relaxed` like `Arc::clone`: a new reference is
//! always made from an existing one, which already orders it; and the final decrement is
//! `AcqRel`, so deallocation happens after every other holder's last access.

use std::fmt;

use crate::loom::{AtomicUsize, Ordering::*};

/// The task holds the right to touch its future: it is being polled, or being cancelled.
///
/// Set by exactly one of: [`State::transition_to_running`] (the holder of the task's
/// `Notified` runs it) or [`State::transition_to_shutdown`] (a canceller claims an idle
/// task). May be set only while neither `RUNNING` nor `COMPLETE` is set. Cleared by
/// [`State::transition_to_idle`] (the poll returned `Pending`) or swapped for `COMPLETE` by
/// [`State::transition_to_complete`]. While it is set, only its setter touches the stage.
const RUNNING: usize = 1 << 0;

/// The task has finished: its future is dropped and its output (or `JoinError`) is stored,
/// unless the `JoinHandle` was already gone, in which case the output is dropped too.
///
/// Set once, together with clearing `RUNNING`, by whoever held `RUNNING`; never cleared.
/// Once set, the stage belongs to the `JoinHandle` (if `JOIN_INTEREST` is set).
const COMPLETE: usize = 1 << 1;

/// The task is scheduled: a `Notified` for it exists (in a run queue, or held by a waker
/// that is about to queue it), or the task was woken while running and will be queued again
/// when its poll ends.
///
/// Set by a wake or an abort, and then by the transition that creates the `Notified` (the
/// first one at spawn). Cleared when the `Notified` starts running the task. Must not be
/// set again by a wake while already set: that is what makes a wake of an already-scheduled
/// task a no-op and keeps at most one `Notified` in existence. Left set (harmlessly) when the
/// task completes.
const NOTIFIED: usize = 1 << 2;

/// The task must stop: its future is to be dropped instead of polled again.
///
/// Set by `JoinHandle::abort` or by a shutdown (`OwnedTasks::close_and_shutdown_all`,
/// `Notified::shutdown`), at any time before `COMPLETE`; never cleared. Setting it has no effect
/// once `COMPLETE` is set (an abort after completion does nothing).
const CANCELLED: usize = 1 << 3;

/// The `JoinHandle` still exists, so the output must be kept for it.
///
/// Set at creation; cleared once, when the `JoinHandle` is dropped; never set again.
const JOIN_INTEREST: usize = 1 << 4;

/// The join waker slot in the trailer holds the `JoinHandle`'s waker, and the task may read it.
///
/// Clear: the `JoinHandle` owns the slot exclusively (may write it). Set: the slot is
/// shared-read-only, and the thread completing the task wakes the waker in it. The
/// `JoinHandle` sets and clears it only while `COMPLETE` is clear (CAS); after `COMPLETE` only
/// the completing thread clears it, once it has finished waking.
const JOIN_WAKER: usize = 1 << 5;

/// All flag bits; the reference count sits above them.
const FLAGS: usize = (1 << REF_SHIFT) - 1;

/// Where the reference count starts: right above the six flag bits.
const REF_SHIFT: usize = 6;

/// One reference: a `Task`, `Notified`, `JoinHandle` or `Waker` each hold one.
const REF_ONE: usize = 1 << REF_SHIFT;

/// Guard against a reference-count overflow (e.g. wakers leaked with `mem::forget` in a
/// loop): beyond this many references, abort like `Arc` does, rather than wrap around and free
/// a live task. Half the representable range, so concurrent increments cannot reach the top.
const MAX_REFS: usize = (usize::MAX >> REF_SHIFT) / 2;

/// The state word.
pub(super) struct State {
    val: AtomicUsize,
}

/// A copy of the state word at one instant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot(usize);

/// What [`State::transition_to_running`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TransitionToRunning {
    /// We hold `RUNNING`: poll the future.
    Success,
    /// We hold `RUNNING` but `CANCELLED` is set: drop the future and complete.
    Cancelled,
    /// The task is running or complete already (a canceller claimed it): our reference is dropped.
    Failed,
    /// As `Failed`, and ours was the last reference: deallocate.
    Dealloc,
}

/// What [`State::transition_to_idle`] decided after a `Pending` poll.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TransitionToIdle {
    /// The task is idle; the runner's reference is dropped.
    Ok,
    /// The task was woken during its poll: the runner's reference becomes a new `Notified`,
    /// which must be queued (with `Schedule::yield_now`).
    OkNotified,
    /// The task is idle and the runner held the last reference: deallocate.
    OkDealloc,
    /// `CANCELLED` was set during the poll: the runner keeps `RUNNING` and must cancel.
    Cancelled,
}

/// What a wake decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TransitionToNotified {
    /// Nothing to queue (already notified, running or complete).
    DoNothing,
    /// The task was idle: a reference now belongs to a new `Notified`, which must be scheduled.
    Submit,
    /// Nothing to queue, and the waker's reference was the last: deallocate.
    Dealloc,
}

/// What [`State::transition_to_join_handle_dropped`] leaves to the `JoinHandle`.
pub(super) struct JoinHandleDropped {
    /// The task was complete: the output is the handle's to drop.
    pub(super) drop_output: bool,
    /// `JOIN_WAKER` is now clear: the waker slot is the handle's to clear.
    pub(super) drop_waker: bool,
}

impl State {
    /// A new task: `NOTIFIED` (its first `Notified` exists), `JOIN_INTEREST`, and `refs`
    /// references.
    pub(super) fn new(refs: usize) -> State {
        debug_assert!(refs > 0);
        State {
            val: AtomicUsize::new((refs * REF_ONE) | NOTIFIED | JOIN_INTEREST),
        }
    }

    pub(super) fn load(&self) -> Snapshot {
        Snapshot(self.val.load(Acquire))
    }

    /// Runs `f` on the current value until its result is installed with a CAS. `f` returns
    /// the outcome and the new value, or `None` to leave the word as it is.
    fn transition<T>(&self, mut f: impl FnMut(Snapshot) -> (T, Option<Snapshot>)) -> T {
        let mut curr = self.load();
        loop {
            let (outcome, next) = f(curr);
            let Some(next) = next else { return outcome };
            match self
                .val
                .compare_exchange_weak(curr.0, next.0, AcqRel, Acquire)
            {
                Ok(_) => return outcome,
                Err(actual) => curr = Snapshot(actual),
            }
        }
    }

    /// The holder of the `Notified` starts running the task.
    pub(super) fn transition_to_running(&self) -> TransitionToRunning {
        self.transition(|mut s| {
            debug_assert!(s.is_notified(), "running a task that is not notified");
            if s.is_running() || s.is_complete() {
                // A canceller claimed the task after it was queued; the stage is not ours.
                s.ref_dec();
                let action = if s.ref_count() == 0 {
                    TransitionToRunning::Dealloc
                } else {
                    TransitionToRunning::Failed
                };
                return (action, Some(s));
            }
            s.0 |= RUNNING;
            s.0 &= !NOTIFIED;
            let action = if s.is_cancelled() {
                TransitionToRunning::Cancelled
            } else {
                TransitionToRunning::Success
            };
            (action, Some(s))
        })
    }

    /// The runner's poll returned `Pending`: release `RUNNING`.
    pub(super) fn transition_to_idle(&self) -> TransitionToIdle {
        self.transition(|mut s| {
            debug_assert!(s.is_running() && !s.is_complete());
            if s.is_cancelled() {
                return (TransitionToIdle::Cancelled, None);
            }
            s.0 &= !RUNNING;
            if s.is_notified() {
                // The runner's reference is handed to the new `Notified`.
                return (TransitionToIdle::OkNotified, Some(s));
            }
            s.ref_dec();
            let action = if s.ref_count() == 0 {
                TransitionToIdle::OkDealloc
            } else {
                TransitionToIdle::Ok
            };
            (action, Some(s))
        })
    }

    /// The holder of `RUNNING` swaps it for `COMPLETE`. Returns the new value, whose
    /// `JOIN_INTEREST` and `JOIN_WAKER` tell the completer what it must do about the output
    /// and the join waker.
    pub(super) fn transition_to_complete(&self) -> Snapshot {
        const DELTA: usize = RUNNING | COMPLETE;
        let prev = Snapshot(self.val.fetch_xor(DELTA, AcqRel));
        debug_assert!(prev.is_running() && !prev.is_complete());
        Snapshot(prev.0 ^ DELTA)
    }

    /// The completer drops `count` references at once (its own and, for an owned task, the
    /// list's). Returns `true` if they were the last: deallocate.
    pub(super) fn transition_to_terminal(&self, count: usize) -> bool {
        let prev = Snapshot(self.val.fetch_sub(count * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= count, "task reference count underflow");
        prev.ref_count() == count
    }

    /// A wake that consumes the waker's reference.
    pub(super) fn transition_to_notified_by_val(&self) -> TransitionToNotified {
        self.transition(|mut s| {
            if s.is_running() {
                // The runner will queue the task again when its poll ends (and holds a
                // reference itself, so ours cannot be the last).
                s.0 |= NOTIFIED;
                s.ref_dec();
                debug_assert!(s.ref_count() > 0);
                (TransitionToNotified::DoNothing, Some(s))
            } else if s.is_complete() || s.is_notified() {
                s.ref_dec();
                let action = if s.ref_count() == 0 {
                    TransitionToNotified::Dealloc
                } else {
                    TransitionToNotified::DoNothing
                };
                (action, Some(s))
            } else {
                // Idle: the waker's reference moves to the new `Notified`.
                s.0 |= NOTIFIED;
                (TransitionToNotified::Submit, Some(s))
            }
        })
    }

    /// A wake through a borrowed waker.
    pub(super) fn transition_to_notified_by_ref(&self) -> TransitionToNotified {
        self.transition(|mut s| {
            if s.is_complete() || s.is_notified() {
                (TransitionToNotified::DoNothing, None)
            } else if s.is_running() {
                s.0 |= NOTIFIED;
                (TransitionToNotified::DoNothing, Some(s))
            } else {
                // Idle: a new reference for the new `Notified`.
                s.0 |= NOTIFIED;
                s.ref_inc_unchecked();
                (TransitionToNotified::Submit, Some(s))
            }
        })
    }

    /// `JoinHandle::abort`. Returns `true` if the task was idle: a reference now belongs to a
    /// new `Notified`, which must be scheduled so that the scheduler's `run` cancels it.
    /// Otherwise whoever runs the task next (or is running it) sees `CANCELLED`.
    pub(super) fn transition_to_notified_for_cancel(&self) -> bool {
        self.transition(|mut s| {
            if s.is_cancelled() || s.is_complete() {
                // Nothing to do, or someone already took care of it.
                (false, None)
            } else if s.is_running() || s.is_notified() {
                s.0 |= CANCELLED;
                (false, Some(s))
            } else {
                s.0 |= CANCELLED | NOTIFIED;
                s.ref_inc_unchecked();
                (true, Some(s))
            }
        })
    }

    /// A shutdown cancels the task. Returns `true` if the caller claimed `RUNNING` (the task
    /// was neither running nor complete; it may be queued): it must now drop the future and
    /// complete the task. Otherwise the current runner sees `CANCELLED` when its poll ends.
    pub(super) fn transition_to_shutdown(&self) -> bool {
        self.transition(|mut s| {
            if s.is_complete() {
                return (false, None);
            }
            let claimed = !s.is_running();
            s.0 |= CANCELLED | RUNNING;
            (claimed, Some(s))
        })
    }

    /// The `JoinHandle` stores its waker: sets `JOIN_WAKER`, unless the task completed
    /// meanwhile (`Err`, with the current value).
    pub(super) fn set_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.transition(|mut s| {
            debug_assert!(s.is_join_interested() && !s.is_join_waker_set());
            if s.is_complete() {
                return (Err(s), None);
            }
            s.0 |= JOIN_WAKER;
            (Ok(s), Some(s))
        })
    }

    /// The `JoinHandle` takes its waker slot back to replace the waker: clears `JOIN_WAKER`,
    /// unless the task completed meanwhile (`Err`).
    pub(super) fn unset_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.transition(|mut s| {
            debug_assert!(s.is_join_interested());
            if s.is_complete() {
                // The completer may already have handed the slot back (`JOIN_WAKER` clear).
                return (Err(s), None);
            }
            debug_assert!(s.is_join_waker_set());
            s.0 &= !JOIN_WAKER;
            (Ok(s), Some(s))
        })
    }

    /// The completer has finished with the join waker and hands the slot back. Returns the
    /// new value: if `JOIN_INTEREST` is gone, the completer must clear the slot itself.
    pub(super) fn unset_join_waker_after_complete(&self) -> Snapshot {
        let prev = Snapshot(self.val.fetch_and(!JOIN_WAKER, AcqRel));
        debug_assert!(prev.is_complete() && prev.is_join_waker_set());
        Snapshot(prev.0 & !JOIN_WAKER)
    }

    /// The `JoinHandle` is dropped: clears `JOIN_INTEREST` (and `JOIN_WAKER` if the task has
    /// not completed, since the completer will not look at the slot then).
    pub(super) fn transition_to_join_handle_dropped(&self) -> JoinHandleDropped {
        self.transition(|s| {
            debug_assert!(s.is_join_interested());
            let mut next = s;
            next.0 &= !JOIN_INTEREST;
            if !s.is_complete() {
                next.0 &= !JOIN_WAKER;
            }
            let outcome = JoinHandleDropped {
                drop_output: s.is_complete(),
                drop_waker: !next.is_join_waker_set(),
            };
            (outcome, Some(next))
        })
    }

    /// Adds a reference (a waker clone). See the module doc for why `Relaxed` suffices.
    pub(super) fn ref_inc(&self) {
        let prev = self.val.fetch_add(REF_ONE, Relaxed);
        if Snapshot(prev).ref_count() > MAX_REFS {
            std::process::abort();
        }
    }

    /// Drops a reference. Returns `true` if it was the last: deallocate.
    pub(super) fn ref_dec(&self) -> bool {
        let prev = Snapshot(self.val.fetch_sub(REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= 1, "task reference count underflow");
        prev.ref_count() == 1
    }
}

impl Snapshot {
    pub(super) fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }

    pub(super) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }

    pub(super) fn is_notified(self) -> bool {
        self.0 & NOTIFIED != 0
    }

    pub(super) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }

    pub(super) fn is_join_interested(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }

    pub(super) fn is_join_waker_set(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }

    pub(super) fn ref_count(self) -> usize {
        self.0 >> REF_SHIFT
    }

    fn ref_dec(&mut self) {
        debug_assert!(self.ref_count() > 0);
        self.0 -= REF_ONE;
    }

    /// Inside a CAS loop, for a new `Notified`. Unchecked: at most one `Notified` exists at a
    /// time, so this adds at most one reference beyond those that `ref_inc` checked.
    fn ref_inc_unchecked(&mut self) {
        self.0 += REF_ONE;
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("cancelled", &self.is_cancelled())
            .field("join_interest", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("refs", &self.ref_count())
            .field("flags", &(self.0 & FLAGS))
            .finish()
    }
}

//! The typed operations on a task: run, complete, cancel, join. The state machine they drive
//! is in `state.rs`; who may touch which field is in the module doc of `task/mod.rs`.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use super::core::{Cell, Core, Header, Trailer};
use super::raw::RawTask;
use super::state::{Snapshot, TransitionToIdle, TransitionToRunning};
use super::{waker, JoinError, Notified, Schedule, Task};

/// A typed view of a task cell.
pub(super) struct Harness<F: Future, S: 'static> {
    cell: NonNull<Cell<F, S>>,
}

impl<F: Future, S: Schedule> Harness<F, S> {
    /// # Safety
    ///
    /// `ptr` is the header of a live `Cell<F, S>`.
    pub(super) unsafe fn from_raw(ptr: NonNull<Header>) -> Harness<F, S> {
        Harness { cell: ptr.cast() }
    }

    fn raw(&self) -> RawTask {
        // SAFETY: the cell is live (constructor's contract).
        unsafe { RawTask::from_header(self.cell.cast()) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the cell is live; the header is only accessed through atomics and cells.
        unsafe { &self.cell.as_ref().header }
    }

    fn core(&self) -> &Core<F, S> {
        // SAFETY: as in `header`; the stage is behind an `UnsafeCell` governed by the state.
        unsafe { &self.cell.as_ref().core }
    }

    fn trailer(&self) -> &Trailer {
        // SAFETY: as in `header`.
        unsafe { &self.cell.as_ref().trailer }
    }

    /// Runs the task once, consuming a `Notified` reference. See `Notified::run`.
    pub(super) fn poll(self) {
        match self.header().state.transition_to_running() {
            TransitionToRunning::Success => {
                // The waker lent to the future borrows the runner's reference: no count
                // change, no allocation. Clones of it take their own references.
                let waker = waker::waker_ref(self.cell.cast());
                let mut cx = Context::from_waker(&waker);
                if self.poll_future(&mut cx).is_ready() {
                    self.complete();
                    return;
                }
                match self.header().state.transition_to_idle() {
                    TransitionToIdle::Ok => {}
                    TransitionToIdle::OkNotified => {
                        // SAFETY: the runner's reference became this `Notified`'s.
                        let notified = unsafe { Notified::<S>::from_raw(self.raw()) };
                        self.core().scheduler.yield_now(notified);
                    }
                    // SAFETY: the runner's reference was the last.
                    TransitionToIdle::OkDealloc => unsafe { self.dealloc() },
                    TransitionToIdle::Cancelled => {
                        self.cancel();
                        self.complete();
                    }
                }
            }
            TransitionToRunning::Cancelled => {
                self.cancel();
                self.complete();
            }
            TransitionToRunning::Failed => {}
            // SAFETY: the `Notified` reference was the last.
            TransitionToRunning::Dealloc => unsafe { self.dealloc() },
        }
    }

    /// Polls the future under `catch_unwind`. On `Ready` (or a panic) the future is dropped
    /// and the result stored, ready for `complete`. Requires `RUNNING`.
    fn poll_future(&self, cx: &mut Context<'_>) -> Poll<()> {
        let id = self.header().id;
        let core = self.core();
        // SAFETY: we hold `RUNNING`, set by `transition_to_running`, and the stage is `Running`
        // (it stays so until the holder of `RUNNING` completes or cancels the task).
        let polled = panic::catch_unwind(AssertUnwindSafe(|| unsafe { core.poll(cx) }));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            // SAFETY: we hold `RUNNING`, so the stage is ours.
            Ok(Poll::Ready(output)) => match unsafe { core.drop_stage() } {
                Ok(()) => Ok(output),
                Err(payload) => {
                    // The future panicked while being dropped: report that instead, and
                    // drop the output it had produced (its own panic has nowhere to go).
                    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(output)));
                    Err(JoinError::panic(id, payload))
                }
            },
            Err(payload) => {
                // A second panic from dropping the broken future is lost: the first one is
                // the one worth reporting.
                // SAFETY: we hold `RUNNING`, so the stage is ours.
                let _ = unsafe { core.drop_stage() };
                Err(JoinError::panic(id, payload))
            }
        };
        // SAFETY: we hold `RUNNING` and the stage is `Consumed`.
        unsafe { core.store_output(output) };
        Poll::Ready(())
    }

    /// Drops the future and stores the cancellation (or the panic its drop raised).
    /// Requires `RUNNING`.
    fn cancel(&self) {
        let id = self.header().id;
        // SAFETY: we hold `RUNNING`, so the stage is ours.
        let err = match unsafe { self.core().drop_stage() } {
            Ok(()) => JoinError::cancelled(id),
            Err(payload) => JoinError::panic(id, payload),
        };
        // SAFETY: we hold `RUNNING` and the stage is `Consumed`.
        unsafe { self.core().store_output(Err(err)) };
    }

    /// The holder of `RUNNING`, with the result stored, finishes the task: sets `COMPLETE`,
    /// drops the output if nobody will read it or wakes the `JoinHandle`, leaves the owned
    /// list, and drops its own reference (and the list's).
    fn complete(self) {
        let snapshot = self.header().state.transition_to_complete();
        if !snapshot.is_join_interested() {
            // The `JoinHandle` is gone, and it dropped `JOIN_INTEREST` before `COMPLETE` was
            // set, so it left the output to us. A panic from the output's drop has nobody to
            // report to.
            // SAFETY: after `COMPLETE` without `JOIN_INTEREST`, the stage is the completer's.
            let _ = unsafe { self.core().drop_stage() };
        } else if snapshot.is_join_waker_set() {
            // SAFETY: `JOIN_WAKER` is set, so the slot holds the handle's waker and is
            // read-only until we clear the bit below.
            let woken =
                panic::catch_unwind(AssertUnwindSafe(|| unsafe { self.trailer().wake_join() }));
            let after = self.header().state.unset_join_waker_after_complete();
            if !after.is_join_interested() {
                // The handle was dropped after `COMPLETE` while `JOIN_WAKER` was still set,
                // so it left the waker to us.
                // SAFETY: `JOIN_INTEREST` is gone: the slot is ours.
                unsafe { self.trailer().set_waker(None) };
            }
            drop(woken);
        }
        let refs = self.release();
        if self.header().state.transition_to_terminal(refs) {
            // SAFETY: those were the last references.
            unsafe { self.dealloc() };
        }
    }

    /// Removes the task from its owned list. Returns how many references the completer must
    /// drop: its own, plus the list's if the list gave it back.
    fn release(&self) -> usize {
        if self.header().owner_id.is_none() {
            return 1;
        }
        // A borrowed `Task` (no reference of its own) to show the scheduler.
        // SAFETY: the completer's reference keeps the task alive during the call.
        let me = ManuallyDrop::new(unsafe { Task::<S>::from_raw(self.raw()) });
        match self.core().scheduler.release(&me) {
            Some(task) => {
                debug_assert_eq!(task.raw(), self.raw());
                // Its reference is dropped together with ours in `transition_to_terminal`.
                std::mem::forget(task);
                2
            }
            None => 1,
        }
    }

    /// Gives a new `Notified` (whose reference the caller made) to the scheduler.
    pub(super) fn schedule(self) {
        // SAFETY: the caller's reference is this `Notified`'s (vtable contract).
        let notified = unsafe { Notified::<S>::from_raw(self.raw()) };
        self.core().scheduler.schedule(notified);
    }

    /// Cancels the task, consuming a reference: if it is idle or queued, drops the future here
    /// and completes it; if it is running, its runner cancels it after the current poll.
    pub(super) fn shutdown(self) {
        if !self.header().state.transition_to_shutdown() {
            // SAFETY: we give up the caller's reference (vtable contract).
            unsafe { self.raw().drop_reference() };
            return;
        }
        // We hold `RUNNING` now; the caller's reference serves as the completer's.
        self.cancel();
        self.complete();
    }

    /// `JoinHandle::abort`: see `State::transition_to_notified_for_cancel`.
    pub(super) fn remote_abort(self) {
        if self.header().state.transition_to_notified_for_cancel() {
            self.schedule();
        }
    }

    /// `JoinHandle::poll`: writes the output to `dst` if the task is complete, else leaves
    /// `waker` to be woken on completion.
    pub(super) fn try_read_output(
        self,
        dst: *mut Poll<Result<F::Output, JoinError>>,
        waker: &Waker,
    ) {
        if can_read_output(self.header(), self.trailer(), waker) {
            // SAFETY: `COMPLETE` is set and we are the `JoinHandle` (vtable contract).
            let output = unsafe { self.core().take_output() };
            // SAFETY: `dst` is valid for writes (vtable contract); the old value is `Pending`
            // or an earlier output that the caller already moved out of, either way fine to drop.
            unsafe { *dst = Poll::Ready(output) };
        }
    }

    /// Drops the `JoinHandle`, consuming its reference.
    pub(super) fn drop_join_handle(self) {
        let dropped = self.header().state.transition_to_join_handle_dropped();
        if dropped.drop_output {
            // The task completed while we held `JOIN_INTEREST`: the output is ours to drop.
            // A panic from it is swallowed, as a panic in a destructor would be fatal anyway
            // if we were already unwinding.
            // SAFETY: `COMPLETE` was set while we held `JOIN_INTEREST`: the stage is ours.
            let _ = unsafe { self.core().drop_stage() };
        }
        if dropped.drop_waker {
            // SAFETY: `JOIN_WAKER` is clear and we were the `JoinHandle`: the slot is ours.
            unsafe { self.trailer().set_waker(None) };
        }
        // SAFETY: the handle's reference.
        unsafe { self.raw().drop_reference() };
    }

    /// Frees the cell, dropping whatever it still holds.
    ///
    /// # Safety
    ///
    /// No reference to the task is left.
    pub(super) unsafe fn dealloc(self) {
        // SAFETY: the cell was made by `Box::new` in `Cell::allocate` with this very type, and
        // nobody else can reach it any more (caller's contract).
        drop(unsafe { Box::from_raw(self.cell.as_ptr()) });
    }
}

/// The `JoinHandle`'s side of the join-waker protocol (see `JOIN_WAKER` in `state.rs`).
/// Returns `true` if the task is complete and the output can be taken; otherwise `waker` is
/// stored and will be woken on completion.
fn can_read_output(header: &Header, trailer: &Trailer, waker: &Waker) -> bool {
    let snapshot = header.state.load();
    debug_assert!(snapshot.is_join_interested());
    if snapshot.is_complete() {
        return true;
    }
    if snapshot.is_join_waker_set() {
        // SAFETY: we are the `JoinHandle`; while `JOIN_WAKER` is set others only read the slot.
        if unsafe { trailer.will_wake(waker) } {
            return false;
        }
        // A different waker: take the slot back before replacing it.
        if let Err(s) = header.state.unset_join_waker() {
            debug_assert!(s.is_complete());
            return true;
        }
    }
    set_join_waker(header, trailer, waker.clone()).is_err()
}

/// Stores `waker` in the slot (which the handle owns: `JOIN_WAKER` clear) and publishes it.
/// `Err` if the task completed first; the slot is then emptied again.
fn set_join_waker(header: &Header, trailer: &Trailer, waker: Waker) -> Result<Snapshot, Snapshot> {
    // SAFETY: `JOIN_WAKER` is clear and we are the `JoinHandle`: the slot is ours.
    unsafe { trailer.set_waker(Some(waker)) };
    let res = header.state.set_join_waker();
    if res.is_err() {
        // SAFETY: the bit was not set, so the slot is still ours.
        unsafe { trailer.set_waker(None) };
    }
    res
}

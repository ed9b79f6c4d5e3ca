//! The task's `Waker`: a pointer to the task header plus one static vtable, no allocation.
//!
//! Cloning a waker adds a reference to the task and dropping it removes one, so a waker kept
//! after the task completed stays valid (waking it does nothing) and the cell is freed only
//! when the last waker is gone. A wake is one CAS on the state word (`State::transition_to_
//! notified_*`); only a wake that finds the task idle queues it.
//!
//! One vtable serves every task type: the functions reach the typed code through the task's
//! own vtable. Being a `static`, it has one address, which is how [`take_notified`] recognises
//! our wakers; the scheduler type is then checked through `Vtable::scheduler_type`.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::core::Header;
use super::raw::RawTask;
use super::state::TransitionToNotified;
use super::{Notified, Schedule};

/// The vtable of every task waker. The data pointer is the task's `NonNull<Header>`, and each
/// waker owns one reference to the task.
static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_by_val, wake_by_ref, drop_waker);

/// The waker lent to the future while it is polled: it borrows the runner's reference, so
/// it must not be dropped (hence `ManuallyDrop`) and must not outlive the poll.
pub(super) fn waker_ref(header: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(header.as_ptr() as *const (), &WAKER_VTABLE);
    // SAFETY: `WAKER_VTABLE`'s functions uphold the `RawWaker` contract for a pointer to a
    // live task header with a reference behind it (the runner's, which outlives the poll);
    // `ManuallyDrop` keeps this borrowed waker from giving that reference up.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

/// # Safety
///
/// `ptr` is the data pointer of a waker built by this module: the header of a live task on
/// which the waker holds a reference. The four vtable functions below have this same
/// contract, which `Waker` upholds by calling them only with its own data pointer.
unsafe fn task_of(ptr: *const ()) -> RawTask {
    // SAFETY: the pointer is a non-null header pointer of a live task (contract above).
    unsafe { RawTask::from_header(NonNull::new_unchecked(ptr as *mut Header)) }
}

/// A new waker: one more reference.
///
/// # Safety
///
/// As for `task_of`.
unsafe fn clone_waker(ptr: *const ()) -> RawWaker {
    // SAFETY: see `task_of`.
    let task = unsafe { task_of(ptr) };
    task.ref_inc();
    RawWaker::new(ptr, &WAKER_VTABLE)
}

/// `Waker::wake`: the wake consumes the waker's reference.
///
/// # Safety
///
/// As for `task_of`.
unsafe fn wake_by_val(ptr: *const ()) {
    // SAFETY: see `task_of`; `wake` consumes the waker, whose reference we give up.
    unsafe { task_of(ptr).wake_by_val() }
}

/// `Waker::wake_by_ref`.
///
/// # Safety
///
/// As for `task_of`.
unsafe fn wake_by_ref(ptr: *const ()) {
    // SAFETY: see `task_of`.
    unsafe { task_of(ptr) }.wake_by_ref();
}

/// Drops the waker's reference.
///
/// # Safety
///
/// As for `task_of`.
unsafe fn drop_waker(ptr: *const ()) {
    // SAFETY: see `task_of`; the dropped waker's reference is given up.
    unsafe { task_of(ptr).drop_reference() }
}

/// The poller's batch path: performs the wake of `waker` without calling `S::schedule`.
///
/// If `waker` is a waker of a task whose scheduler type is `S`, it is consumed and the wake
/// transition is done here: `Ok(Some(notified))` when the task was idle and must now be queued
/// by the caller, `Ok(None)` when there is nothing to queue (the task was already notified,
/// is running — it will be queued again when its poll ends — or is complete). Any other waker
/// comes back untouched as `Err(waker)`, for the caller to `wake()`.
pub(crate) fn take_notified<S: Schedule>(waker: Waker) -> Result<Option<Notified<S>>, Waker> {
    if !std::ptr::eq(waker.vtable(), &WAKER_VTABLE) {
        return Err(waker);
    }
    // SAFETY: the vtable is ours, so the data pointer is the header of a live task on which
    // this waker holds a reference.
    let task = unsafe { task_of(waker.data()) };
    if !task.has_scheduler::<S>() {
        return Err(waker);
    }
    // From here on the waker's reference is handled by hand.
    let _ = ManuallyDrop::new(waker);
    match task.header().state.transition_to_notified_by_val() {
        // SAFETY: the waker's reference became the new `Notified`'s, and the task's
        // scheduler type is `S` (checked above).
        TransitionToNotified::Submit => Ok(Some(unsafe { Notified::from_raw(task) })),
        TransitionToNotified::DoNothing => Ok(None),
        TransitionToNotified::Dealloc => {
            // SAFETY: the waker's reference was the last.
            unsafe { task.dealloc() };
            Ok(None)
        }
    }
}

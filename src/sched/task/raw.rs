//! [`RawTask`]: a type-erased pointer to a task, and the vtable through which it reaches the
//! code that knows the task's future and scheduler types.

use std::any::TypeId;
use std::future::Future;
use std::ptr::NonNull;
use std::task::Waker;

use super::core::{Cell, Header, Trailer};
use super::harness::Harness;
use super::state::TransitionToNotified;
use super::{Id, Schedule};

/// The functions of one `(F, S)` task type, plus its layout facts.
pub(crate) struct Vtable {
    /// Runs the task once (consumes a `Notified`'s reference).
    pub(super) poll: unsafe fn(NonNull<Header>),
    /// Hands a new `Notified` (whose reference the caller already took) to `S::schedule`.
    pub(super) schedule: unsafe fn(NonNull<Header>),
    /// Frees the cell (the last reference is gone).
    pub(super) dealloc: unsafe fn(NonNull<Header>),
    /// `JoinHandle::poll`: writes `Poll<Result<F::Output, JoinError>>` to the pointer if ready.
    pub(super) try_read_output: unsafe fn(NonNull<Header>, *mut (), &Waker),
    /// Drops the `JoinHandle` (consumes its reference).
    pub(super) drop_join_handle: unsafe fn(NonNull<Header>),
    /// Cancels the task (consumes a reference).
    pub(super) shutdown: unsafe fn(NonNull<Header>),
    /// `JoinHandle::abort`.
    pub(super) remote_abort: unsafe fn(NonNull<Header>),
    /// `TypeId::of::<S>`, to recognise tasks of one scheduler type in `take_notified`.
    pub(super) scheduler_type: fn() -> TypeId,
    /// Offset of the `Trailer` inside the cell.
    pub(super) trailer_offset: usize,
}

/// The vtable of tasks of type `(F, S)`.
pub(super) fn vtable<F: Future, S: Schedule>() -> &'static Vtable {
    &VtableOf::<F, S>::VTABLE
}

struct VtableOf<F, S>(F, S);

impl<F: Future, S: Schedule> VtableOf<F, S> {
    const VTABLE: Vtable = Vtable {
        poll: poll::<F, S>,
        schedule: schedule::<F, S>,
        dealloc: dealloc::<F, S>,
        try_read_output: try_read_output::<F, S>,
        drop_join_handle: drop_join_handle::<F, S>,
        shutdown: shutdown::<F, S>,
        remote_abort: remote_abort::<F, S>,
        scheduler_type: TypeId::of::<S>,
        trailer_offset: std::mem::offset_of!(Cell<F, S>, trailer),
    };
}

// The vtable entries, monomorphised for one `(F, S)`.

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::poll`.
unsafe fn poll<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: `ptr` points to a live `Cell<F, S>` (this is its vtable), and the caller gives
    // up a `Notified` reference.
    unsafe { Harness::<F, S>::from_raw(ptr) }.poll();
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::schedule`.
unsafe fn schedule<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: as in `poll`; the caller owns a reference for the new `Notified`.
    unsafe { Harness::<F, S>::from_raw(ptr) }.schedule();
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::dealloc`.
unsafe fn dealloc<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: as in `poll`; no reference is left.
    unsafe { Harness::<F, S>::from_raw(ptr).dealloc() };
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::try_read_output`.
unsafe fn try_read_output<F: Future, S: Schedule>(
    ptr: NonNull<Header>,
    dst: *mut (),
    waker: &Waker,
) {
    // SAFETY: as in `poll`; the caller is the `JoinHandle<F::Output>` and `dst` points to a
    // `Poll<Result<F::Output, JoinError>>`.
    unsafe { Harness::<F, S>::from_raw(ptr).try_read_output(dst.cast(), waker) };
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::drop_join_handle`.
unsafe fn drop_join_handle<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: as in `poll`; the caller is the `JoinHandle` and gives up its reference.
    unsafe { Harness::<F, S>::from_raw(ptr) }.drop_join_handle();
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::shutdown`.
unsafe fn shutdown<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: as in `poll`; the caller gives up a reference.
    unsafe { Harness::<F, S>::from_raw(ptr) }.shutdown();
}

/// # Safety
///
/// `ptr` is the header of a live `Cell<F, S>`; otherwise as for `RawTask::remote_abort`.
unsafe fn remote_abort<F: Future, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: as in `poll`; the caller holds a reference for the duration of the call.
    unsafe { Harness::<F, S>::from_raw(ptr) }.remote_abort();
}

/// A `Copy` pointer to a task, for the scheduler's intrusive lists (global queue, ready
/// batches). It does not own a reference by itself: whoever holds it must know which
/// reference it stands for (normally the `Notified` it came from, see `Notified::into_raw`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

// SAFETY: a `RawTask` is a plain address; every access through it is either atomic (the state
// word) or an `unsafe fn` whose contract says which thread may make it. The task's contents
// are `Send` (`F`, `F::Output` are `Send`, `S` is `Send + Sync`).
unsafe impl Send for RawTask {}
// SAFETY: as above: `&RawTask` gives nothing beyond a copy of the address.
unsafe impl Sync for RawTask {}

impl std::fmt::Debug for RawTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTask")
            .field("id", &self.id())
            .field("ptr", &self.ptr)
            .finish()
    }
}

impl RawTask {
    /// Allocates a task with `refs` references (see `Cell::allocate`).
    pub(super) fn new<F, S>(
        future: F,
        scheduler: S,
        id: Id,
        owner_id: Option<std::num::NonZeroU64>,
        refs: usize,
    ) -> RawTask
    where
        F: Future,
        S: Schedule,
    {
        RawTask {
            ptr: Cell::allocate(future, scheduler, id, owner_id, refs),
        }
    }

    /// # Safety
    ///
    /// `ptr` points to the header of a live task.
    pub(super) unsafe fn from_header(ptr: NonNull<Header>) -> RawTask {
        RawTask { ptr }
    }

    pub(super) fn header_ptr(self) -> NonNull<Header> {
        self.ptr
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: a `RawTask` only exists for a live task (every holder keeps a reference
        // while using it), and the header is never written except through atomics and cells.
        unsafe { self.ptr.as_ref() }
    }

    pub(super) fn trailer(&self) -> &Trailer {
        let offset = self.header().vtable.trailer_offset;
        // SAFETY: the trailer lives `trailer_offset` bytes into the same allocation (the
        // offset was computed for this cell's type), and the cell is live as for `header`.
        unsafe { self.ptr.cast::<u8>().add(offset).cast::<Trailer>().as_ref() }
    }

    /// The task's id.
    pub(crate) fn id(&self) -> Id {
        self.header().id
    }

    /// The `queue_next` link of the task's header, for intrusive run queues.
    ///
    /// # Safety
    ///
    /// The caller is the current holder of the task's `Notified` reference (the one queue the
    /// task is in, under that queue's own synchronisation), so nobody else touches the link.
    pub(crate) unsafe fn queue_next(self) -> Option<RawTask> {
        // SAFETY: exclusive access to the link (caller's contract).
        self.header()
            .queue_next
            .with(|ptr| unsafe { *ptr })
            .map(|ptr| RawTask { ptr })
    }

    /// Sets the `queue_next` link.
    ///
    /// # Safety
    ///
    /// As for [`queue_next`](RawTask::queue_next).
    pub(crate) unsafe fn set_queue_next(self, next: Option<RawTask>) {
        let next = next.map(|t| t.ptr);
        // SAFETY: exclusive access to the link (caller's contract).
        self.header()
            .queue_next
            .with_mut(|ptr| unsafe { *ptr = next });
    }

    /// Runs the task once.
    ///
    /// # Safety
    ///
    /// The caller gives up a `Notified` reference.
    pub(super) unsafe fn poll(self) {
        // SAFETY: `vtable` belongs to this cell; the reference is handed on (caller's contract).
        unsafe { (self.header().vtable.poll)(self.ptr) }
    }

    /// Queues the task with its scheduler.
    ///
    /// # Safety
    ///
    /// The caller has just made a new `Notified` reference (set `NOTIFIED`, took a reference)
    /// and gives it up.
    pub(super) unsafe fn schedule(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.schedule)(self.ptr) }
    }

    /// # Safety
    ///
    /// No reference to the task is left.
    pub(super) unsafe fn dealloc(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.dealloc)(self.ptr) }
    }

    /// # Safety
    ///
    /// The caller is the task's `JoinHandle<T>` where `T` is the future's output type, and
    /// `dst` points to a valid `Poll<Result<T, JoinError>>`.
    pub(super) unsafe fn try_read_output(self, dst: *mut (), waker: &Waker) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.try_read_output)(self.ptr, dst, waker) }
    }

    /// # Safety
    ///
    /// The caller is the task's `JoinHandle` and gives up its reference.
    pub(super) unsafe fn drop_join_handle(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.drop_join_handle)(self.ptr) }
    }

    /// Cancels the task.
    ///
    /// # Safety
    ///
    /// The caller gives up a reference.
    pub(super) unsafe fn shutdown(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.shutdown)(self.ptr) }
    }

    /// `JoinHandle::abort`.
    pub(super) fn remote_abort(self) {
        // SAFETY: as in `poll`; the caller's `&JoinHandle` keeps a reference alive meanwhile.
        unsafe { (self.header().vtable.remote_abort)(self.ptr) }
    }

    /// Adds a reference.
    pub(super) fn ref_inc(self) {
        self.header().state.ref_inc();
    }

    /// Drops a reference, deallocating the task if it was the last.
    ///
    /// # Safety
    ///
    /// The caller gives up a reference it holds.
    pub(super) unsafe fn drop_reference(self) {
        if self.header().state.ref_dec() {
            // SAFETY: that was the last reference.
            unsafe { self.dealloc() }
        }
    }

    /// A wake that gives up a reference (`Waker::wake`).
    ///
    /// # Safety
    ///
    /// The caller gives up a reference it holds.
    pub(super) unsafe fn wake_by_val(self) {
        match self.header().state.transition_to_notified_by_val() {
            // SAFETY: the reference became the new `Notified`'s.
            TransitionToNotified::Submit => unsafe { self.schedule() },
            TransitionToNotified::DoNothing => {}
            // SAFETY: the reference given up was the last.
            TransitionToNotified::Dealloc => unsafe { self.dealloc() },
        }
    }

    /// A wake through a reference the caller keeps (`Waker::wake_by_ref`).
    pub(super) fn wake_by_ref(self) {
        match self.header().state.transition_to_notified_by_ref() {
            // SAFETY: the transition took a new reference for the new `Notified`.
            TransitionToNotified::Submit => unsafe { self.schedule() },
            TransitionToNotified::DoNothing => {}
            TransitionToNotified::Dealloc => unreachable!("a wake by reference freed a task"),
        }
    }

    /// Whether the task's scheduler type is `S`.
    pub(super) fn has_scheduler<S: Schedule>(self) -> bool {
        (self.header().vtable.scheduler_type)() == TypeId::of::<S>()
    }
}

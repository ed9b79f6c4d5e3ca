//! Tasks: Go's goroutines as Rust futures, one allocation each.
//!
//! The state machine is model-checked by the loom models in `src/tests/loom_task.rs` (`.ci/run`
//! runs them).
//!
//! A spawned future lives in a task **cell**, a single heap allocation laid out `#[repr(C)]`
//! as header, core and trailer (`core.rs`):
//!
//! ```text
//! +--------------------------------+ <- NonNull<Header> = RawTask = the waker's data pointer
//! | Header: state word, queue_next, |
//! |         vtable, owner_id, id   |   hot, type-erased
//! +--------------------------------+
//! | Core:   scheduler S,           |
//! |         stage (future | output)|   typed: only vtable functions see it
//! +--------------------------------+
//! | Trailer: owned-list links,     |
//! |          join waker            |   cold; offset kept in the vtable
//! +--------------------------------+
//! ```
//!
//! The vtable (`raw.rs`) holds the functions monomorphised for the future type `F` and
//! scheduler type `S`; everything else (run queues, wakers, the owned list) handles tasks
//! through type-erased pointers. The **state word** (`state.rs`) packs six flags and a
//! reference count into one atomic; every decision about a task is one atomic transition of
//! it. Each `Task`, `Notified`, `JoinHandle` and `Waker` holds one reference; the cell is freed
//! by whoever drops the last one.
//!
//! # Fields in the task
//!
//! Who may touch each field, and when:
//!
//! * `Header::state` — any thread holding a reference, only through atomic transitions.
//! * `Header::queue_next` — only the holder of the task's `Notified`: the run queue the task
//!   is in, under that queue's own synchronisation. There is at most one `Notified` per task
//!   at a time (`NOTIFIED` guards its creation), so at most one queue.
//! * `Header::vtable`, `owner_id`, `id` and `Core::scheduler` — immutable after construction;
//!   read by anyone holding a reference.
//! * `Core::stage` — the future, then the output:
//!   - while `RUNNING` is set, only the thread that set it (a runner polling or cancelling, or
//!     a shutdown that claimed the idle task): it polls, drops the future, stores the output;
//!   - after `COMPLETE`, the `JoinHandle` if `JOIN_INTEREST` was still set when `COMPLETE`
//!     was (it takes or drops the output), otherwise the completing thread (it drops it);
//!   - nobody else. `RUNNING` and `COMPLETE` are released/acquired through the state word,
//!     so each new owner sees its predecessor's writes.
//! * `Trailer::owned` (`prev`, `next`) — only with the mutex of the owning `OwnedTasks`
//!   shard held (`list.rs`).
//! * `Trailer::waker` (the join waker) — governed by `JOIN_WAKER`: while it is clear, only the
//!   `JoinHandle` (which writes it, then sets the bit with a CAS that fails once `COMPLETE` is
//!   set); while it is set, shared read-only (the handle compares with `will_wake`, the
//!   completer wakes it), until the handle clears it (before `COMPLETE`) or the completer does
//!   (after waking). After `COMPLETE`, whoever drops `JOIN_INTEREST` or `JOIN_WAKER` second
//!   clears the slot.
//!
//! # Life of a task
//!
//! 1. `OwnedTasks::bind` (or [`unowned`]) allocates the cell with `NOTIFIED` and
//!    `JOIN_INTEREST` set, and references for the list, the first `Notified` and the
//!    `JoinHandle`.
//! 2. A worker runs the `Notified` (`Notified::run`): `NOTIFIED` → `RUNNING`, one poll under
//!    `catch_unwind`, with a waker that borrows the runner's reference.
//! 3. `Pending`: `RUNNING` is cleared. A wake that came during the poll left `NOTIFIED` set,
//!    so the runner's reference becomes a new `Notified` for `S::yield_now`; the task is never
//!    polled concurrently. Later wakes find the task idle and hand a `Notified` to `S::schedule`.
//! 4. `Ready`, a panic, or `CANCELLED`: the future is dropped in place, the output (or the
//!    `JoinError`) stored, `RUNNING` → `COMPLETE`, the join waker woken, the task released from
//!    the owned list, and the runner's and the list's references dropped together.
//!
//! Panics in user code (the future's poll or drop, the output's drop, the join waker) are
//! caught where they happen and never leave these functions half-way through a transition.

#![deny(unsafe_op_in_unsafe_fn)]

mod core;
mod error;
mod harness;
mod id;
mod join;
mod list;
mod raw;
mod state;
mod waker;

#[cfg(all(test, not(loom)))]
mod tests;

use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

pub use self::error::JoinError;
pub use self::id::Id;
pub use self::join::JoinHandle;
// The scheduler (written alongside) is the user of these two.
#[allow(unused_imports)]
pub(crate) use self::list::OwnedTasks;
pub(crate) use self::raw::RawTask;
#[allow(unused_imports)]
pub(crate) use self::waker::take_notified;

/// What a task needs from its scheduler.
pub(crate) trait Schedule: Sized + Send + Sync + 'static {
    /// Queues a task that was woken (by a waker, or by `JoinHandle::abort`). May be called
    /// from any thread, including from inside another task's poll.
    fn schedule(&self, task: Notified<Self>);

    /// Queues a task that asked to run again during its own poll (a self-wake, e.g.
    /// `yield_now`): the scheduler should put it behind other work. Called on the thread that
    /// polled it, right after the poll.
    fn yield_now(&self, task: Notified<Self>) {
        self.schedule(task)
    }

    /// The task completed or was cancelled: remove it from the scheduler's `OwnedTasks`
    /// (normally `owned.remove(task)`), returning the list's reference. Not called for
    /// [`unowned`] tasks. May be called for a task that `bind` refused (the list was closed);
    /// `remove` returns `None` then.
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>>;
}

/// A counted reference to a task (the owned list holds these).
pub(crate) struct Task<S: 'static> {
    raw: RawTask,
    _scheduler: PhantomData<S>,
}

// SAFETY: a task's contents are `Send` (`bind` requires `F: Send` and `F::Output: Send`;
// `S: Send + Sync`), and every operation through a `Task` is an atomic transition or
// guarded by the rules of the module doc, valid from any thread.
unsafe impl<S: 'static> Send for Task<S> {}
// SAFETY: as above; `&Task` only reads the immutable header fields and the state word.
unsafe impl<S: 'static> Sync for Task<S> {}

impl<S: 'static> Task<S> {
    /// # Safety
    ///
    /// `raw` is a task whose scheduler type is `S`, and the caller hands over one reference.
    unsafe fn from_raw(raw: RawTask) -> Task<S> {
        Task {
            raw,
            _scheduler: PhantomData,
        }
    }

    fn raw(&self) -> RawTask {
        self.raw
    }

    /// Gives up ownership of the reference without dropping it.
    fn into_raw_task(self) -> RawTask {
        ManuallyDrop::new(self).raw
    }

    /// The task's id.
    pub(crate) fn id(&self) -> Id {
        self.raw.id()
    }

    /// Cancels the task (see `Harness::shutdown`), consuming this reference.
    fn shutdown(self) {
        let raw = self.into_raw_task();
        // SAFETY: the reference is given up to the shutdown.
        unsafe { raw.shutdown() }
    }
}

impl<S: 'static> Drop for Task<S> {
    fn drop(&mut self) {
        // SAFETY: this `Task`'s reference.
        unsafe { self.raw.drop_reference() }
    }
}

impl<S: 'static> std::fmt::Debug for Task<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("id", &self.id()).finish()
    }
}

/// A counted reference to a task that is scheduled to run: the right to poll it once.
///
/// At most one exists per task at any time. Dropping it without running it only drops the
/// reference; the task stays linked in its owned list, where a shutdown finds it.
pub(crate) struct Notified<S: 'static>(Task<S>);

impl<S: Schedule> Notified<S> {
    /// Polls the task once, under `catch_unwind`, and handles what follows: completion
    /// (output stored, `JoinHandle` woken, `S::release`), cancellation (if `CANCELLED` was set
    /// before or during the poll, the future is dropped and the handle gets a cancelled
    /// `JoinError`), and a wake during the poll (the task goes to `S::yield_now`). If a
    /// canceller claimed the task since it was queued, this only drops the reference.
    pub(crate) fn run(self) {
        let raw = self.into_raw();
        // SAFETY: the `Notified` reference is given up to the run.
        unsafe { raw.poll() }
    }

    /// Cancels the task instead of running it (used to drain run queues at shutdown): the
    /// future is dropped under `catch_unwind` and the `JoinHandle` completes with a cancelled
    /// `JoinError` (or a panic one if the drop panicked).
    pub(crate) fn shutdown(self) {
        self.0.shutdown()
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// The task's id.
    pub(crate) fn id(&self) -> Id {
        self.0.id()
    }

    /// Turns the `Notified` into a plain pointer for an intrusive queue; the reference goes
    /// with it and must come back through [`from_raw`](Notified::from_raw).
    pub(crate) fn into_raw(self) -> RawTask {
        ManuallyDrop::new(self).0.raw
    }

    /// Takes back a `Notified` from [`into_raw`](Notified::into_raw).
    ///
    /// # Safety
    ///
    /// `raw` came from `Notified::<S>::into_raw` (or is otherwise a `Notified` reference of a
    /// task with scheduler type `S`), and is turned back into a `Notified` only once.
    pub(crate) unsafe fn from_raw(raw: RawTask) -> Notified<S> {
        // SAFETY: the caller hands over a `Notified` reference of an `S` task.
        Notified(unsafe { Task::from_raw(raw) })
    }
}

impl<S: 'static> std::fmt::Debug for Notified<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notified")
            .field("id", &self.0.id())
            .finish()
    }
}

/// Creates a task outside any owned list (the blocking pool's): `S::release` is never called
/// for it, and nothing but its `Notified` and `JoinHandle` (and wakers) keep it alive. Returns
/// the first `Notified`, for the caller to queue, and the `JoinHandle`.
pub(crate) fn unowned<F, S>(future: F, scheduler: S, id: Id) -> (Notified<S>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // Two references: the first `Notified`'s and the `JoinHandle`'s.
    let raw = RawTask::new(future, scheduler, id, None, 2);
    // SAFETY: the output type is `F::Output` and each takes one of the two references.
    unsafe { (Notified::from_raw(raw), JoinHandle::from_raw(raw)) }
}

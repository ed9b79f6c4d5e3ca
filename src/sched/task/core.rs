//! The task cell: header, core (scheduler and stage) and trailer in one `#[repr(C)]` allocation.

use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context, Poll, Waker};
use std::{panic, thread};

use super::raw::{self, Vtable};
use super::state::State;
use super::{Id, JoinError, Schedule};
use crate::loom::UnsafeCell;

/// The one allocation behind a task.
///
/// `#[repr(C)]` with the header first, so a `NonNull<Header>` is also a pointer to the cell,
/// and type-erased code (wakers, run queues, the owned list) works on `Header` alone; the
/// trailer's offset, which depends on `F` and `S`, is kept in the vtable.
///
/// Aligned to a cache line, so the header and the start of the future share one line instead
/// of straddling two, and no two tasks share a line (whose header words wakers on other
/// workers write). A server visits each of many connections' tasks with it out of cache:
/// callgrind with a 512 KiB cache, HTTP at 500 connections, counts about one missed line fewer
/// per visit. The cost is the allocator's alignment padding, about 140 bytes per task (idle
/// memory at 10,000 connections).
#[repr(C, align(64))]
pub(super) struct Cell<F: Future, S> {
    pub(super) header: Header,
    pub(super) core: Core<F, S>,
    pub(super) trailer: Trailer,
}

/// The type-erased, hot part of a task.
#[repr(C)]
pub(crate) struct Header {
    /// Flags and reference count; see `state.rs`.
    pub(super) state: State,
    /// The link of the one intrusive run queue the task is in. Touched only by the holder of
    /// the task's `Notified` (see `RawTask::queue_next`).
    pub(super) queue_next: UnsafeCell<Option<NonNull<Header>>>,
    /// The functions that know `F` and `S`. Immutable.
    pub(super) vtable: &'static Vtable,
    /// The id of the `OwnedTasks` list the task was bound to, or `None` for an unowned task.
    /// Immutable.
    pub(super) owner_id: Option<NonZeroU64>,
    /// Immutable.
    pub(super) id: Id,
}

/// The typed part: the scheduler and the future or its output.
#[repr(C)]
pub(super) struct Core<F: Future, S> {
    /// Read-only after construction, from any thread holding a reference.
    pub(super) scheduler: S,
    /// Touched only by the holder of `RUNNING`, or after `COMPLETE` by the `JoinHandle`
    /// (or by the completer when `JOIN_INTEREST` is gone).
    pub(super) stage: UnsafeCell<Stage<F>>,
}

/// The cold part, reached through `Vtable::trailer_offset`.
pub(crate) struct Trailer {
    /// Links of the owned list. Touched only with the owning shard's mutex held.
    pub(super) owned: Pointers,
    /// The `JoinHandle`'s waker; access is governed by `JOIN_WAKER` (see `state.rs`).
    pub(super) waker: UnsafeCell<Option<Waker>>,
}

/// The links of the doubly-linked owned list.
pub(crate) struct Pointers {
    pub(super) prev: UnsafeCell<Option<NonNull<Header>>>,
    pub(super) next: UnsafeCell<Option<NonNull<Header>>>,
}

/// What the cell holds: the future, then its output, then nothing once the output is taken.
pub(super) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

impl<F: Future, S: Schedule> Cell<F, S> {
    /// Allocates a task (its only allocation) with `refs` references, `NOTIFIED` and
    /// `JOIN_INTEREST`.
    pub(super) fn allocate(
        future: F,
        scheduler: S,
        id: Id,
        owner_id: Option<NonZeroU64>,
        refs: usize,
    ) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: Header {
                state: State::new(refs),
                queue_next: UnsafeCell::new(None),
                vtable: raw::vtable::<F, S>(),
                owner_id,
                id,
            },
            core: Core {
                scheduler,
                stage: UnsafeCell::new(Stage::Running(future)),
            },
            trailer: Trailer {
                owned: Pointers {
                    prev: UnsafeCell::new(None),
                    next: UnsafeCell::new(None),
                },
                waker: UnsafeCell::new(None),
            },
        });
        NonNull::from(Box::leak(cell)).cast::<Header>()
    }
}

impl<F: Future, S> Core<F, S> {
    /// Polls the future.
    ///
    /// # Safety
    ///
    /// The caller holds `RUNNING`, and the stage is `Running` (it is until the holder of
    /// `RUNNING` replaces it).
    pub(super) unsafe fn poll(&self, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.stage.with_mut(|ptr| {
            // SAFETY: `RUNNING` gives us exclusive access to the stage (caller's contract).
            let Stage::Running(future) = (unsafe { &mut *ptr }) else {
                unreachable!("runtime: polled a task whose future is gone");
            };
            // SAFETY: the future lives inside the heap cell, which never moves, and is
            // dropped in place (`drop_stage`), never moved out: the pinning guarantee holds.
            let future = unsafe { Pin::new_unchecked(future) };
            future.poll(cx)
        })
    }

    /// Drops the future or output in place, leaving `Consumed`. A panic from the drop is
    /// caught and returned; the stage is `Consumed` either way.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the stage: it holds `RUNNING`, or the task is
    /// `COMPLETE` and the caller is the one entitled to the output (see `Stage` access rules).
    pub(super) unsafe fn drop_stage(&self) -> thread::Result<()> {
        self.stage.with_mut(|ptr| {
            let res = panic::catch_unwind(panic::AssertUnwindSafe(|| {
                // SAFETY: exclusive access (caller's contract); the value is dropped exactly
                // once, here, and overwritten below without being dropped again.
                unsafe { ptr::drop_in_place(ptr) }
            }));
            // SAFETY: as above; the old value was dropped (even if its drop panicked, the
            // unwind finished dropping its fields), so `write` must not drop it again.
            unsafe { ptr::write(ptr, Stage::Consumed) };
            res
        })
    }

    /// Stores the task's result in place of `Consumed`.
    ///
    /// # Safety
    ///
    /// The caller holds `RUNNING` and the stage is `Consumed` (after `drop_stage`).
    pub(super) unsafe fn store_output(&self, output: Result<F::Output, JoinError>) {
        self.stage.with_mut(|ptr| {
            // SAFETY: exclusive access (caller's contract).
            let stage = unsafe { &mut *ptr };
            debug_assert!(matches!(stage, Stage::Consumed));
            *stage = Stage::Finished(output);
        })
    }

    /// Takes the output out, leaving `Consumed`.
    ///
    /// # Safety
    ///
    /// The task is `COMPLETE` and the caller is its `JoinHandle` (which holds `JOIN_INTEREST`).
    pub(super) unsafe fn take_output(&self) -> Result<F::Output, JoinError> {
        self.stage.with_mut(|ptr| {
            // SAFETY: after `COMPLETE` the stage belongs to the `JoinHandle` (caller's contract).
            let stage = unsafe { &mut *ptr };
            match stage {
                Stage::Finished(_) => match std::mem::replace(stage, Stage::Consumed) {
                    Stage::Finished(output) => output,
                    _ => unreachable!(),
                },
                _ => panic!("`JoinHandle` polled after it returned the task's output"),
            }
        })
    }
}

impl Trailer {
    /// Replaces the join waker.
    ///
    /// # Safety
    ///
    /// The caller owns the slot: it is the `JoinHandle` and `JOIN_WAKER` is clear, or it is
    /// the completer and `JOIN_INTEREST` is gone (see `JOIN_WAKER`).
    pub(super) unsafe fn set_waker(&self, waker: Option<Waker>) {
        // SAFETY: exclusive access (caller's contract).
        self.waker.with_mut(|ptr| unsafe { *ptr = waker });
    }

    /// Whether the stored join waker would wake the same task as `waker`.
    ///
    /// # Safety
    ///
    /// The slot is not being written: the caller is the `JoinHandle` (others only read it).
    pub(super) unsafe fn will_wake(&self, waker: &Waker) -> bool {
        // SAFETY: only reads, and no writer can exist (caller's contract).
        self.waker.with(|ptr| match unsafe { &*ptr } {
            Some(stored) => stored.will_wake(waker),
            None => false,
        })
    }

    /// Wakes the join waker.
    ///
    /// # Safety
    ///
    /// The caller is the completer and saw `JOIN_WAKER` set: the slot holds a waker and only
    /// readers may touch it until the completer clears `JOIN_WAKER`.
    pub(super) unsafe fn wake_join(&self) {
        // SAFETY: shared read access (caller's contract).
        self.waker.with(|ptr| match unsafe { &*ptr } {
            Some(waker) => waker.wake_by_ref(),
            None => unreachable!("runtime: JOIN_WAKER set without a join waker"),
        });
    }
}

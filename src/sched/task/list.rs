//! [`OwnedTasks`]: every live task of one scheduler, so that shutdown can cancel them all.
//!
//! A task waiting on I/O is held only by wakers parked in poll descriptors and timers; if the
//! runtime just stopped its workers, such tasks — and the sockets inside their futures — would
//! never be dropped. So each task bound to a scheduler is linked into this list (through
//! `Trailer::owned`) from `bind` until it completes, and `close_and_shutdown_all` walks the
//! list and cancels whatever is left.
//!
//! The list is sharded by task id behind [`SHARDS`] mutexes, so that concurrent spawns and
//! completions on different workers seldom meet on one lock. Ground rules:
//!
//! * a task's `Trailer::owned` links are touched only with its shard's mutex held (the shard
//!   is a function of the immutable task id);
//! * the list holds one reference to each linked task; `remove` and `pop_back` hand it out as
//!   a `Task`;
//! * `closed` is written once, before the shards are drained, and read by `bind` with the
//!   shard mutex held: a `bind` either sees it, or links its task before the drain reaches
//!   that shard (the mutex orders the two), so no task escapes the shutdown.

use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::ptr::NonNull;
// Not `crate::loom`: a source of distinct list ids, part of no synchronisation protocol
// (loom's atomics cannot live in a `static`).
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};

use super::core::Header;
use super::raw::RawTask;
use super::{Id, JoinHandle, Notified, Schedule, Task};
use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering::*};

/// How many shards: a power of two, so the shard is `id & (SHARDS - 1)`. 16 mutexes keep
/// collisions rare for the few workers of a typical machine (tokio sizes its list at 4 per
/// worker; ours is fixed because `new` does not know the worker count), while a shutdown
/// walks only 16 of them. A guess, not tuned. One under loom: the shard follows the task id,
/// which comes from a process-wide counter that loom cannot rewind between the executions of
/// a model, and a model must behave the same in every execution.
const SHARDS: usize = if cfg!(loom) { 1 } else { 16 };

/// Every live task of one scheduler. See the module doc.
pub(crate) struct OwnedTasks<S: 'static> {
    shards: Box<[Mutex<List>]>,
    /// Set once by `close_and_shutdown_all`; see the module doc for the ordering argument.
    closed: AtomicBool,
    /// Linked tasks, kept in step with the lists under their mutexes.
    count: AtomicUsize,
    /// Stamped into the header of every task bound here (`Header::owner_id`).
    id: NonZeroU64,
    _scheduler: PhantomData<S>,
}

impl<S: Schedule> OwnedTasks<S> {
    pub(crate) fn new() -> OwnedTasks<S> {
        static NEXT_LIST_ID: StdAtomicU64 = StdAtomicU64::new(1);
        let id = NEXT_LIST_ID.fetch_add(1, StdOrdering::Relaxed);
        OwnedTasks {
            shards: (0..SHARDS).map(|_| Mutex::new(List::new())).collect(),
            closed: AtomicBool::new(false),
            count: AtomicUsize::new(0),
            id: NonZeroU64::new(id).expect("runtime: owned-list id counter wrapped around"),
            _scheduler: PhantomData,
        }
    }

    fn shard(&self, id: Id) -> &Mutex<List> {
        // Truncation is fine: only the low bits pick the shard.
        &self.shards[id.as_u64() as usize & (SHARDS - 1)]
    }

    /// Allocates a task for `future` (one allocation), links it, and returns its `JoinHandle`
    /// and the first `Notified`, for the caller to queue.
    ///
    /// If the list is closed, the task is cancelled on the spot instead: the future is
    /// dropped here, the handle resolves to a cancelled [`JoinError`](super::JoinError), and
    /// there is nothing to queue (`None`). `S::release` is then called for a task that was
    /// never linked; `remove` returns `None` for it.
    pub(crate) fn bind<F>(
        &self,
        future: F,
        scheduler: S,
        id: Id,
    ) -> (JoinHandle<F::Output>, Option<Notified<S>>)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // Three references: the list's, the first `Notified`'s and the `JoinHandle`'s.
        let raw = RawTask::new(future, scheduler, id, Some(self.id), 3);
        // SAFETY: the output type is `F::Output`, and each of the three takes its own
        // reference of the three the task was created with.
        let (task, notified, join) = unsafe {
            (
                Task::<S>::from_raw(raw),
                Notified::<S>::from_raw(raw),
                JoinHandle::from_raw(raw),
            )
        };

        let mut shard = self.shard(id).lock();
        if self.closed.load(Acquire) {
            drop(shard);
            drop(notified);
            task.shutdown();
            return (join, None);
        }
        // SAFETY: the shard's mutex is held, and the task is new (linked nowhere).
        unsafe { shard.push_front(task) };
        self.count.fetch_add(1, Relaxed);
        drop(shard);
        (join, Some(notified))
    }

    /// Unlinks `task` if it is in this list, returning the list's reference to it.
    ///
    /// Returns `None` for a task that is not linked (already removed, popped by a shutdown,
    /// refused by a closed `bind`, or unowned).
    ///
    /// # Panics
    ///
    /// If `task` was bound to another `OwnedTasks`.
    pub(crate) fn remove(&self, task: &Task<S>) -> Option<Task<S>> {
        let raw = task.raw();
        let owner = raw.header().owner_id?;
        assert_eq!(
            owner, self.id,
            "runtime: task released to an OwnedTasks it does not belong to"
        );
        let mut shard = self.shard(raw.id()).lock();
        // SAFETY: the task was bound to this list, so if it is linked it is linked into this
        // shard (chosen by its immutable id), whose mutex we hold.
        let removed = unsafe { shard.remove(raw) }?;
        self.count.fetch_sub(1, Relaxed);
        drop(shard);
        // SAFETY: the list's reference, now handed out.
        Some(unsafe { Task::from_raw(removed) })
    }

    /// Closes the list and cancels every task in it.
    ///
    /// Later `bind`s fail (see `bind`). A task that is idle or queued has its future dropped
    /// right here (a queued `Notified` then finds it complete and only drops its reference);
    /// one that a worker is polling right now is cancelled by that worker when the poll
    /// returns. Safe to call while workers are still running; idempotent.
    pub(crate) fn close_and_shutdown_all(&self) {
        self.closed.store(true, Release);
        for shard in self.shards.iter() {
            loop {
                // One at a time, and without the mutex while cancelling: the cancellation
                // runs user code (the future's drop) and calls `S::release`, which locks the
                // shard again.
                let Some(raw) = shard.lock().pop_back() else {
                    break;
                };
                self.count.fetch_sub(1, Relaxed);
                // SAFETY: the list's reference, now ours.
                unsafe { Task::<S>::from_raw(raw) }.shutdown();
            }
        }
    }

    /// How many tasks are linked (a snapshot; it may change at once).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Relaxed)
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }
}

impl<S: Schedule> Default for OwnedTasks<S> {
    fn default() -> Self {
        OwnedTasks::new()
    }
}

impl<S: 'static> Drop for OwnedTasks<S> {
    fn drop(&mut self) {
        // Linked tasks hold the scheduler, which usually holds this list: while any is linked
        // the list cannot be dropped. Reaching here with tasks linked means they are leaked.
        debug_assert!(
            std::thread::panicking() || self.shards.iter().all(|s| s.lock().head.is_none()),
            "runtime: OwnedTasks dropped with live tasks; call close_and_shutdown_all first"
        );
    }
}

/// One shard: an intrusive doubly-linked list through `Trailer::owned`, owning one reference
/// per linked task. Protected by its `Mutex`: every method runs with it held.
struct List {
    head: Option<NonNull<Header>>,
    tail: Option<NonNull<Header>>,
}

// SAFETY: the list only holds task pointers, whose referents are `Send` (see `RawTask`), and
// is only reached through its mutex.
unsafe impl Send for List {}

impl List {
    fn new() -> List {
        List {
            head: None,
            tail: None,
        }
    }

    /// Links `task` at the front, taking its reference.
    ///
    /// # Safety
    ///
    /// `task` is linked into no list, and no other thread touches its links meanwhile.
    unsafe fn push_front(&mut self, task: Task<impl Schedule>) {
        let raw = task.into_raw_task();
        let node = raw.header_ptr();
        let links = &raw.trailer().owned;
        // SAFETY: the shard's mutex is held (every `List` method runs under it) and the node is
        // not linked anywhere else, so its links and the head's `prev` are ours.
        unsafe {
            links.prev.with_mut(|p| *p = None);
            links.next.with_mut(|p| *p = self.head);
            match self.head {
                Some(head) => RawTask::from_header(head)
                    .trailer()
                    .owned
                    .prev
                    .with_mut(|p| *p = Some(node)),
                None => self.tail = Some(node),
            }
        }
        self.head = Some(node);
    }

    /// Unlinks the task at the back (the oldest), returning it with the list's reference.
    fn pop_back(&mut self) -> Option<RawTask> {
        let tail = self.tail?;
        // SAFETY: `tail` is linked here, so it is a live task (the list holds a reference).
        let raw = unsafe { RawTask::from_header(tail) };
        // SAFETY: it is linked into this list, whose mutex is held.
        unsafe { self.remove(raw) }
    }

    /// Unlinks `raw` if it is linked into this list, returning it with the list's reference.
    ///
    /// # Safety
    ///
    /// `raw` is a live task, and if it is linked into any list, it is into this one.
    unsafe fn remove(&mut self, raw: RawTask) -> Option<RawTask> {
        let node = raw.header_ptr();
        let links = &raw.trailer().owned;
        // SAFETY: the mutex is held and the node, if linked, is linked here (contract): its
        // links and its neighbours' are ours to touch.
        unsafe {
            let prev = links.prev.with(|p| *p);
            let next = links.next.with(|p| *p);
            match prev {
                Some(prev) => RawTask::from_header(prev)
                    .trailer()
                    .owned
                    .next
                    .with_mut(|p| *p = next),
                // No predecessor: it is the head, or it is not linked at all.
                None if self.head == Some(node) => self.head = next,
                None => return None,
            }
            match next {
                Some(next) => RawTask::from_header(next)
                    .trailer()
                    .owned
                    .prev
                    .with_mut(|p| *p = prev),
                None => self.tail = prev,
            }
            links.prev.with_mut(|p| *p = None);
            links.next.with_mut(|p| *p = None);
        }
        Some(raw)
    }
}

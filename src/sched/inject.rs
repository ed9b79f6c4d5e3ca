//! The global run queue (Go's `sched.runq`): tasks that no core owns yet.
//!
//! Tasks land here when they are woken from outside a worker (a `block_on` thread, the blocking
//! pool, a timer fired by the monitor), when a core's ring overflows, and when a poller's ready
//! batch has more tasks than the polling core should keep. Cores take from it when their own ring
//! is empty and, for fairness, once every [`GLOBAL_POLL_INTERVAL`] ticks.
//!
//! # Ground rules
//!
//! * The list is intrusive: it links tasks through their header's `queue_next` field, so pushing
//!   never allocates. A task is in at most one queue at a time because only the holder of its one
//!   `Notified` reference may queue it; while it is linked here, `queue_next` belongs to this list
//!   and is only touched under `synced`.
//! * `len` mirrors the list length. It is written only under the lock and read without it, as a
//!   cheap emptiness hint on the fast path; the idle protocol (see `idle.rs`) pairs a `SeqCst`
//!   fence after a push with the parking side's re-check, so a hint that is momentarily stale
//!   never loses a wake-up.
//! * Once `close` has run (runtime shutdown), pushes shut the task down instead of queueing it.

use super::task::{Notified, RawTask};
use super::Handle;
use crate::loom::{AtomicUsize, Mutex, Ordering};

/// How often (in scheduler ticks) a core takes a fair share of the global queue before its
/// own ring, so that tasks parked here are not starved by a core that always has local work
/// (Go takes one task). 61 is Go's `schedtick%61` (a prime, so it does not fall into step with
/// program patterns).
pub(crate) const GLOBAL_POLL_INTERVAL: u32 = 61;

pub(crate) struct Inject {
    len: AtomicUsize,
    synced: Mutex<Synced>,
}

struct Synced {
    head: Option<RawTask>,
    tail: Option<RawTask>,
    closed: bool,
}

// SAFETY: the raw task pointers are only dereferenced under the mutex, and the tasks they name
// are `Send` (the list owns one `Notified` reference to each).
unsafe impl Send for Synced {}

/// A chain of tasks linked through `queue_next`, built without any lock (for example from one
/// poller wake-up) and handed to the global queue in one splice.
pub(crate) struct Batch {
    head: Option<RawTask>,
    tail: Option<RawTask>,
    len: usize,
}

// SAFETY: a batch owns one `Notified` reference to each linked task; tasks are `Send`.
unsafe impl Send for Batch {}

impl Batch {
    pub(crate) const fn new() -> Batch {
        Batch {
            head: None,
            tail: None,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, task: Notified<Handle>) {
        let raw = task.into_raw();
        // SAFETY: we hold the task's only `Notified` reference (just converted), so its link is
        // ours to write.
        unsafe { raw.set_queue_next(None) };
        match self.tail {
            // SAFETY: `tail` is linked in this batch, which owns its link.
            Some(tail) => unsafe { tail.set_queue_next(Some(raw)) },
            None => self.head = Some(raw),
        }
        self.tail = Some(raw);
        self.len += 1;
    }

    /// Splits off the first `k` tasks (all of them if fewer) into a batch of their own.
    pub(crate) fn take_front(&mut self, k: usize) -> Batch {
        let mut front = Batch::new();
        while front.len < k {
            match self.pop() {
                Some(task) => front.push(task),
                None => break,
            }
        }
        front
    }

    pub(crate) fn pop(&mut self) -> Option<Notified<Handle>> {
        let raw = self.head?;
        // SAFETY: `raw` is linked in this batch, which owns its link and its reference.
        self.head = unsafe { raw.queue_next() };
        if self.head.is_none() {
            self.tail = None;
        }
        self.len -= 1;
        // SAFETY: the batch held the `Notified` reference that `into_raw` produced for `raw`.
        Some(unsafe { Notified::from_raw(raw) })
    }
}

impl Iterator for Batch {
    type Item = Notified<Handle>;

    fn next(&mut self) -> Option<Notified<Handle>> {
        self.pop()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Only reached when a batch is abandoned during shutdown; cancel what it holds.
        while let Some(task) = self.pop() {
            task.shutdown();
        }
    }
}

impl Inject {
    pub(crate) fn new() -> Inject {
        Inject {
            len: AtomicUsize::new(0),
            synced: Mutex::new(Synced {
                head: None,
                tail: None,
                closed: false,
            }),
        }
    }

    /// A lock-free hint; see the ground rules.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&self, task: Notified<Handle>) {
        let mut batch = Batch::new();
        batch.push(task);
        self.splice(batch);
    }

    /// Splices a whole batch in under one lock acquisition.
    pub(crate) fn splice(&self, mut batch: Batch) {
        let (Some(head), Some(tail)) = (batch.head.take(), batch.tail.take()) else {
            return;
        };
        let n = std::mem::replace(&mut batch.len, 0);
        let mut synced = self.synced.lock();
        if synced.closed {
            drop(synced);
            let mut orphans = Batch {
                head: Some(head),
                tail: Some(tail),
                len: n,
            };
            while let Some(task) = orphans.pop() {
                task.shutdown();
            }
            return;
        }
        match synced.tail {
            // SAFETY: `t` is linked in this list and we hold the list lock.
            Some(t) => unsafe { t.set_queue_next(Some(head)) },
            None => synced.head = Some(head),
        }
        synced.tail = Some(tail);
        self.len
            .store(self.len.load(Ordering::Relaxed) + n, Ordering::Release);
    }

    pub(crate) fn pop_n(&self, max: usize) -> Batch {
        let mut out = Batch::new();
        if max == 0 || self.is_empty() {
            return out;
        }
        let mut synced = self.synced.lock();
        while out.len < max {
            let Some(raw) = synced.head else { break };
            // SAFETY: `raw` is linked in this list and we hold the lock; moving it to `out`
            // moves its reference with it.
            synced.head = unsafe { raw.queue_next() };
            // SAFETY: the task is now owned by `out`, which owns its link.
            unsafe { raw.set_queue_next(None) };
            match out.tail {
                // SAFETY: `t` is linked in `out`, which we own.
                Some(t) => unsafe { t.set_queue_next(Some(raw)) },
                None => out.head = Some(raw),
            }
            out.tail = Some(raw);
            out.len += 1;
        }
        if synced.head.is_none() {
            synced.tail = None;
        }
        self.len.store(
            self.len.load(Ordering::Relaxed) - out.len,
            Ordering::Release,
        );
        out
    }

    /// Refuses later pushes and returns what is queued, for the caller to shut down.
    pub(crate) fn close(&self) -> Batch {
        let mut synced = self.synced.lock();
        synced.closed = true;
        let batch = Batch {
            head: synced.head.take(),
            tail: synced.tail.take(),
            len: self.len.load(Ordering::Relaxed),
        };
        self.len.store(0, Ordering::Release);
        batch
    }
}

/// A full core ring spills half of itself here in one splice.
impl super::queue::Overflow<Notified<Handle>> for Inject {
    fn push_batch<I: Iterator<Item = Notified<Handle>>>(&self, iter: I) {
        let mut batch = Batch::new();
        for task in iter {
            batch.push(task);
        }
        self.splice(batch);
    }
}

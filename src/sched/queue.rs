//! The per-core local run queue: a fixed-capacity, single-producer ring that other workers
//! steal half of in one batch (Go's per-P `runq`, `runqput`/`runqget`/`runqsteal` in
//! `proc.go`; the same shape as tokio's `multi_thread/queue.rs`).
//!
//! Model-checked by the loom models in `src/tests/loom_queue.rs` (`.ci/run` runs them).
//!
//! # Shape
//!
//! The ring has [`LOCAL_QUEUE_CAPACITY`] slots. Positions are `u32` counters that only grow
//! (wrapping); a position `p` lives in slot `p % LOCAL_QUEUE_CAPACITY`, which is consistent
//! across the wrap because the capacity divides 2^32. Three positions describe the ring:
//!
//! ```text
//!         steal          real                      tail
//!   ... ----|-------------|-------------------------|---- ...
//!           | claimed by  | owned by the ring:      | free (up to steal + CAPACITY)
//!           | one thief   | the owner pops at real, |
//!           | (copying)   | thieves claim at real   |
//! ```
//!
//! * `tail` (`AtomicU32`): one past the newest item. Written only by the owner ([`Local`]).
//! * `head` (`AtomicU64`): `steal << 32 | real`. `real` is the oldest item still in the queue;
//!   `steal` is the oldest slot still being read. They differ only while a thief copies the
//!   range `[steal, real)` it has claimed; then the slots are neither in the queue nor free.
//!   Every write to `head` after construction is a compare-and-swap.
//!
//! Invariant: `steal <= real <= tail` and `tail - steal <= CAPACITY` in wrapping arithmetic.
//!
//! # Who touches what
//!
//! * Slot contents: the owner writes slot `tail` only while `tail - steal < CAPACITY`, so the
//!   slot's previous occupant (position `tail - CAPACITY`) is below `steal`: neither queued nor
//!   claimed. The owner reads the slot at `real` after its own CAS moved `real` past it (pop), or
//!   the slots it claimed when overflowing. A thief reads exactly the slots it claimed. No slot
//!   is read by two parties for the same position, and a slot is only rewritten after its last
//!   reader is done (see the orderings).
//! * `tail`: stored by the owner only, so the owner reads it with `Relaxed` (it always sees its
//!   own latest store). Thieves load it with `Acquire`.
//! * `head`: the owner CASes `real` forward (pop, overflow); a thief CASes `real` forward to
//!   claim (only when `steal == real`, so one thief at a time) and later CASes `steal` up to
//!   `real` to release. While a claim is in flight the owner may still pop (moving `real`
//!   only), but does not overflow.
//!
//! # Orderings and what they pair with
//!
//! 1. Owner `tail.store(Release)` after writing slots ↔ thief `tail.load(Acquire)` before
//!    claiming: the thief sees the slot writes for every position below the tail it read.
//! 2. Thief release-CAS on `head` (`Release`, moves `steal` up) ↔ owner `head.load(Acquire)` in
//!    push: the thief's reads of the released slots happen before the owner rewrites them.
//!    Because every later write to `head` is a read-modify-write, the owner's own pops continue
//!    that release sequence, so whatever value the owner loads carries the synchronisation.
//! 3. Owner pop/overflow CAS on `head` (`Release`) ↔ thief `head.load(Acquire)` (and the
//!    `Acquire` failure value of its claim CAS) before it loads `tail`: a thief that sees
//!    `real = r` also sees a `tail >= r`, because the owner stored that tail before moving
//!    `real`. Without it a thief could read a tail older than `real`; the check in
//!    `Steal::claim` would then retry until the newer tail shows up, which is safe but relies
//!    on the hardware making the store visible (loom, which does not assume that, reports a
//!    livelock). [`Steal::len`] relies on the same pairing by loading `head` before `tail`.
//! 4. Thief claim CAS: it writes nothing the owner needs to see (the owner learns of a claim
//!    only by its own CAS failing). `Acquire` on failure is ordering 3 for the value handed
//!    back; on success the value is the one already loaded with `Acquire`. The thief's
//!    `(head, tail)` snapshot can still be inconsistent the other way: `head` older than
//!    `tail`, so `tail - real` may exceed the capacity or cover items popped since. The claim
//!    CAS fails in exactly those cases: if the owner moved `head` before storing the tail we
//!    read, our `Acquire` on `tail` orders that `head` write before our CAS. A claim that
//!    succeeds therefore covers items that were queued and unclaimed. (`claim` also skips the
//!    CAS and reloads when `tail - real` exceeds the capacity, so `n` stays meaningful.)
//! 5. Thief reads of its destination: it loads the destination's `head` with `Acquire` (pairing
//!    with 2 for thieves of *its* queue) before writing into the destination's free slots, and
//!    publishes them with the destination's `tail.store(Release)` (1).
//! 6. The owner's pop loads `head` with `Relaxed`: it only reads a slot it wrote itself, and a
//!    stale value just makes the CAS fail and hand back the current one.
//!
//! `head` is 64 bits so that a single CAS moves one half of it while checking the other. A CAS
//! could in principle succeed on a stale value if `real` advanced by exactly 2^32 between a
//! thief's load and its CAS (ABA); that needs four billion pops while one thief stands still,
//! the same bound Go and tokio accept.
//!
//! # Overflow and steal
//!
//! A push into a full ring (`tail - steal == CAPACITY`):
//! * with no claim in flight (`steal == real`), the owner claims the older half by CAS
//!   (`real` and `steal` both move up by `CAPACITY / 2`) and hands those items plus the new
//!   one to [`Overflow::push_batch`] in one call, so one global-queue lock covers 129 tasks. If
//!   the CAS fails a thief has just claimed some items and freed room is coming, so the push
//!   starts over on the fast path.
//! * with a claim in flight, the claimed slots cannot be reused until the thief releases them,
//!   and the thief is about to take half of the ring anyway: the owner sends only the new task
//!   to the overflow. It never waits for a thief, which may be descheduled mid-copy.
//!
//! A thief claims `ceil(len / 2)` items (capped by the room in its own queue plus the one it
//! returns), copies them into its own queue, releases the claim, and publishes its own tail.
//! If another thief's claim is in flight it gives up at once (`None`) rather than wait.

use std::cell::Cell;
use std::iter;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Deref;

use crate::loom::{
    Arc, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
    UnsafeCell,
};

/// Slots in a local run queue: 256 is Go's `runq` size (`[256]guintptr` in `runtime2.go`),
/// also tokio's. Under loom it is 4 so that the models reach "full" and wrap-around within a
/// few operations. Must be a power of two (positions map to slots by masking).
#[cfg(not(loom))]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 256;
/// Slots in a local run queue: 256 is Go's `runq` size (`[256]guintptr` in `runtime2.go`),
/// also tokio's. Under loom it is 4 so that the models reach "full" and wrap-around within a
/// few operations. Must be a power of two (positions map to slots by masking).
#[cfg(loom)]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 4;

const _: () = assert!(LOCAL_QUEUE_CAPACITY.is_power_of_two() && LOCAL_QUEUE_CAPACITY >= 2);

/// The capacity as a position difference.
const CAPACITY: u32 = LOCAL_QUEUE_CAPACITY as u32;

/// Maps a position to its slot.
const MASK: u32 = CAPACITY - 1;

/// How many items a push into a full ring moves to the overflow besides the new one: half,
/// as in Go's `runqputslow` (`n := (h - t) / 2`).
const OVERFLOW_BATCH: u32 = CAPACITY / 2;

/// Where the owner sends a batch when the ring is full (the runtime's global queue).
pub(crate) trait Overflow<T> {
    /// Takes every item of `batch`. Items the implementation does not consume are dropped
    /// when the iterator is dropped.
    fn push_batch<I: Iterator<Item = T>>(&self, batch: I);
}

/// Owner half, held by whoever owns the core: push back, pop front. `Send`, not `Sync`, not
/// `Clone`: there is exactly one producer.
pub(crate) struct Local<T> {
    inner: Arc<Inner<T>>,
    /// `Cell<()>` is `Send + !Sync`: the owner may move between threads, never be shared.
    _not_sync: PhantomData<Cell<()>>,
}

/// Thief half: takes half of the queue in one batch. Any number of clones, on any thread.
pub(crate) struct Steal<T> {
    inner: Arc<Inner<T>>,
}

/// Keeps `head` and `tail` on separate cache lines (128 bytes: adjacent-line prefetch on
/// x86-64 pulls pairs of 64-byte lines; also the line size of Apple's aarch64 cores).
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The shared ring. The protocol in the module docs says who may touch each field.
struct Inner<T> {
    /// `steal << 32 | real`, see [`pack`].
    head: CachePadded<AtomicU64>,
    /// One past the newest item; stored only by the owner.
    tail: CachePadded<AtomicU32>,
    /// `LOCAL_QUEUE_CAPACITY` slots; a slot holds a value exactly when its position is in
    /// `[steal, tail)`.
    buffer: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: `Inner` hands out no references to items: every item is moved in by the owner and
// moved out by exactly one party (owner or the thief that claimed it), under the protocol in
// the module docs that orders each slot's write before its read and its read before the next
// write. Moving `T` between threads needs `T: Send`; nothing shares a `&T`, so `T: Sync` is
// not needed.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above; the shared access through `&Inner` is the atomics and protocol-guarded
// slot moves.
unsafe impl<T: Send> Sync for Inner<T> {}

/// Packs the two halves of `head`.
fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

/// Splits `head` into `(steal, real)`.
fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

/// Creates an empty queue and returns its two halves.
pub(crate) fn local<T: Send>() -> (Local<T>, Steal<T>) {
    local_starting_at(0)
}

/// Creates an empty queue whose positions start at `start` instead of 0. Behaves exactly like
/// [`local`]; it lets tests cross the `u32` wrap without four billion operations.
pub(crate) fn local_starting_at<T: Send>(start: u32) -> (Local<T>, Steal<T>) {
    let buffer = (0..LOCAL_QUEUE_CAPACITY)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let inner = Arc::new(Inner {
        head: CachePadded(AtomicU64::new(pack(start, start))),
        tail: CachePadded(AtomicU32::new(start)),
        buffer,
    });
    let local = Local {
        inner: inner.clone(),
        _not_sync: PhantomData,
    };
    (local, Steal { inner })
}

impl<T> Inner<T> {
    fn slot(&self, pos: u32) -> &UnsafeCell<MaybeUninit<T>> {
        &self.buffer[(pos & MASK) as usize]
    }

    /// Moves `value` into the slot of `pos`.
    ///
    /// # Safety
    ///
    /// The caller must be allowed to write the slot: it is the owner of this ring (or a thief
    /// holding `&mut` to it as its destination), `pos` is at or beyond `tail` and below
    /// `steal + CAPACITY` for a `steal` loaded with `Acquire`, and the slot's previous value
    /// has been moved out.
    unsafe fn write(&self, pos: u32, value: T) {
        self.slot(pos).with_mut(|slot| {
            // SAFETY: the caller guarantees exclusive access to this slot (no reader of its
            // previous position is still running, no other writer exists).
            unsafe { slot.write(MaybeUninit::new(value)) }
        });
    }

    /// Moves the value out of the slot of `pos`.
    ///
    /// # Safety
    ///
    /// The slot holds an initialised value for `pos`, whose write happens before this call,
    /// and the caller is the only party that will move it out: the owner after moving `real`
    /// past `pos` by its own CAS, or the thief whose claim covers `pos`.
    unsafe fn take(&self, pos: u32) -> T {
        self.slot(pos).with(|slot| {
            // SAFETY: initialised and exclusively ours to move out, per the caller.
            unsafe { (*slot).assume_init_read() }
        })
    }
}

impl<T> Local<T> {
    /// Tasks the owner can pop (not counting a range a thief is copying out).
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a snapshot; `real` never passes the tail we stored, which we always see.
        let (_, real) = unpack(self.inner.head.load(Relaxed));
        // Relaxed: only this handle stores `tail`.
        let tail = self.inner.tail.load(Relaxed);
        tail.wrapping_sub(real) as usize
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes that succeed without overflowing right now (slots being copied out by a thief
    /// are not free yet).
    pub(crate) fn remaining_slots(&self) -> usize {
        // Relaxed: a snapshot (it only grows until we push); a push reloads with Acquire
        // before using a slot.
        let (steal, _) = unpack(self.inner.head.load(Relaxed));
        let tail = self.inner.tail.load(Relaxed);
        (CAPACITY - tail.wrapping_sub(steal)) as usize
    }

    /// Pushes `task` at the back. When the ring is full, moves the older half of the queue
    /// plus `task` to `overflow` in one `push_batch` call (one global-queue lock per
    /// `CAPACITY / 2 + 1` tasks). If a concurrent steal frees room meanwhile, the fast path is
    /// retried; if a steal is mid-copy, only `task` goes to `overflow` (see module docs).
    pub(crate) fn push_back_or_overflow<O: Overflow<T>>(&mut self, mut task: T, overflow: &O) {
        let tail = self.inner.tail.load(Relaxed);
        loop {
            // Acquire: pairs with a thief's release of `steal` (ordering 2), so its reads of
            // the slot we are about to reuse are done.
            let (steal, real) = unpack(self.inner.head.load(Acquire));
            if tail.wrapping_sub(steal) < CAPACITY {
                // SAFETY: we are the owner; `tail - steal < CAPACITY` with `steal` loaded with
                // Acquire, so the slot's previous position is below `steal` and moved out.
                unsafe { self.inner.write(tail, task) };
                // Release: publishes the slot write to thieves (ordering 1).
                self.inner.tail.store(tail.wrapping_add(1), Release);
                return;
            }
            if steal != real {
                overflow.push_batch(iter::once(task));
                return;
            }
            match self.overflow_half(task, real, tail, overflow) {
                Ok(()) => return,
                Err(returned) => task = returned,
            }
        }
    }

    /// Moves the older half of a full ring, plus `task`, to `overflow`. Gives `task` back if a
    /// thief changed `head` first.
    fn overflow_half<O: Overflow<T>>(
        &mut self,
        task: T,
        real: u32,
        tail: u32,
        overflow: &O,
    ) -> Result<(), T> {
        debug_assert_eq!(
            tail.wrapping_sub(real),
            CAPACITY,
            "overflow of a ring not full"
        );
        let end = real.wrapping_add(OVERFLOW_BATCH);
        // Release: a thief that sees the new `real` also sees a tail at least as new
        // (ordering 3). Failure is Relaxed: the caller reloads `head` with Acquire.
        if self
            .inner
            .head
            .compare_exchange(pack(real, real), pack(end, end), Release, Relaxed)
            .is_err()
        {
            return Err(task);
        }
        let claimed = Claimed {
            inner: &self.inner,
            next: real,
            end,
        };
        overflow.push_batch(claimed.chain(iter::once(task)));
        Ok(())
    }

    /// Pushes `tasks` at the back, in order; what does not fit goes to `overflow` in one
    /// `push_batch` call (unlike a single push, nothing already queued is moved). Thieves see
    /// the new tasks all at once. If `tasks` panics, what it yielded so far is leaked (never
    /// published, never dropped) and the queue is unchanged.
    pub(crate) fn push_back_batch<I, O>(&mut self, tasks: I, overflow: &O)
    where
        I: Iterator<Item = T>,
        O: Overflow<T>,
    {
        let mut tasks = tasks;
        let start = self.inner.tail.load(Relaxed);
        let mut tail = start;
        let mut rest = None;
        'fill: loop {
            // Acquire: as in `push_back_or_overflow` (ordering 2).
            let (steal, _) = unpack(self.inner.head.load(Acquire));
            let limit = steal.wrapping_add(CAPACITY);
            if tail == limit {
                // Full even after reloading `head`: the rest, if any, overflows.
                rest = tasks.next();
                break 'fill;
            }
            while tail != limit {
                let Some(task) = tasks.next() else {
                    break 'fill;
                };
                // SAFETY: owner; `tail` is in `[published tail, steal + CAPACITY)` for a
                // `steal` loaded with Acquire, so the slot is free and its readers are done.
                unsafe { self.inner.write(tail, task) };
                tail = tail.wrapping_add(1);
            }
            // The room seen at the last load is used up; a thief may have freed more since.
        }
        if tail != start {
            // Release: publishes every slot written above (ordering 1).
            self.inner.tail.store(tail, Release);
        }
        if let Some(task) = rest {
            overflow.push_batch(iter::once(task).chain(tasks));
        }
    }

    /// Pops the oldest task.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let tail = self.inner.tail.load(Relaxed);
        // Relaxed: ordering 6.
        let mut head = self.inner.head.load(Relaxed);
        loop {
            let (steal, real) = unpack(head);
            if real == tail {
                return None;
            }
            let next_real = real.wrapping_add(1);
            // With no claim in flight `steal` follows `real`; otherwise it stays with the
            // thief until it releases.
            let next = if steal == real {
                pack(next_real, next_real)
            } else {
                pack(steal, next_real)
            };
            // Release: ordering 3. Failure Relaxed: ordering 6.
            match self
                .inner
                .head
                .compare_exchange(head, next, Release, Relaxed)
            {
                // SAFETY: our CAS moved `real` past `real`, so no thief can claim it and we are
                // its only reader; we wrote it ourselves before (program order).
                Ok(_) => return Some(unsafe { self.inner.take(real) }),
                Err(actual) => head = actual,
            }
        }
    }
}

impl<T> Drop for Local<T> {
    /// Drops the queued tasks. A range a thief has claimed is its to finish moving out; the
    /// shared ring stays alive through its `Steal` handle until it has.
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// The overflow half claimed by the owner, read out lazily as `push_batch` consumes it.
struct Claimed<'a, T> {
    inner: &'a Inner<T>,
    /// Next position to move out.
    next: u32,
    /// One past the last claimed position.
    end: u32,
}

impl<T> Iterator for Claimed<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next == self.end {
            return None;
        }
        let pos = self.next;
        self.next = pos.wrapping_add(1);
        // SAFETY: the owner's overflow CAS moved `steal` and `real` past `[next, end)` while
        // they were queued, so no thief will read them, and the owner is inside
        // `push_back_or_overflow` (holding `&mut Local`), so it writes no slot until this
        // iterator is gone. Each position is taken once since `next` only advances.
        Some(unsafe { self.inner.take(pos) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end.wrapping_sub(self.next) as usize;
        (n, Some(n))
    }
}

impl<T> Drop for Claimed<'_, T> {
    /// Items `push_batch` did not consume (or a panic interrupted) are dropped, not leaked.
    fn drop(&mut self) {
        self.by_ref().for_each(drop);
    }
}

impl<T> Steal<T> {
    /// True when no task can be stolen right now (racy by nature: a hint for the stealer).
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tasks queued, not counting a range another thief is copying out (a snapshot).
    pub(crate) fn len(&self) -> usize {
        // `head` before `tail`, both Acquire: ordering 3 makes `tail >= real`.
        let (_, real) = unpack(self.inner.head.load(Acquire));
        let tail = self.inner.tail.load(Acquire);
        // `head` may be older than `tail` (the owner popped meanwhile): clamp.
        tail.wrapping_sub(real).min(CAPACITY) as usize
    }

    /// Moves half (rounded up) of this queue's tasks into `dst`, the thief's own queue, and
    /// returns one of them (the oldest) to run now. Takes no more than `dst` has room for
    /// plus the one returned. `None` when the queue is empty or another thief is mid-steal.
    pub(crate) fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        self.steal_up_to(dst, usize::MAX)
    }

    /// [`Steal::steal_into`], taking at most `max` tasks (the one returned included).
    pub(crate) fn steal_up_to(&self, dst: &mut Local<T>, max: usize) -> Option<T> {
        debug_assert!(
            !Arc::ptr_eq(&self.inner, &dst.inner),
            "a queue cannot steal from itself"
        );
        // Relaxed: `dst` is ours, only we store its tail.
        let dst_tail = dst.inner.tail.load(Relaxed);
        // Acquire: thieves of `dst` have finished reading the slots we are about to fill
        // (ordering 5).
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        let room = CAPACITY - dst_tail.wrapping_sub(dst_steal);

        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let (first, n) = self.claim((room + 1).min(max))?;

        // SAFETY: our claim covers `[first, first + n)`: `real` moved past it by our CAS after
        // we loaded (Acquire) a tail beyond it, so the writes are visible and no one else will
        // read these slots; `steal` stays at `first` until we release, so the owner does not
        // rewrite them.
        let task = unsafe { self.inner.take(first) };
        for i in 1..n {
            // SAFETY: as above, inside our claim.
            let moved = unsafe { self.inner.take(first.wrapping_add(i)) };
            // SAFETY: we own `dst` (`&mut Local`); positions `dst_tail .. dst_tail + n - 1`
            // are below `dst_steal + CAPACITY` since `n - 1 <= room`, with `dst_steal` loaded
            // with Acquire; `dst`'s `steal` only grows, so the room only grows meanwhile.
            unsafe { dst.inner.write(dst_tail.wrapping_add(i - 1), moved) };
        }

        self.release(first);
        if n > 1 {
            // Release: publishes the copied slots to thieves of `dst` (ordering 1).
            dst.inner.tail.store(dst_tail.wrapping_add(n - 1), Release);
        }
        Some(task)
    }

    /// Claims `ceil(len / 2)` tasks, at most `max`, by moving `real`. Returns the first
    /// position and the count.
    fn claim(&self, max: u32) -> Option<(u32, u32)> {
        // Acquire: ordering 3, so the tail loaded next is at least `real`.
        let mut head = self.inner.head.load(Acquire);
        loop {
            let (steal, real) = unpack(head);
            if steal != real {
                // Another thief is copying; the victim will have less to give anyway.
                return None;
            }
            // Acquire: ordering 1, the slots below `tail` are written.
            let tail = self.inner.tail.load(Acquire);
            let len = tail.wrapping_sub(real);
            if len > CAPACITY {
                // `head` is older than `tail`: the owner popped or overflowed after our load.
                // (The CAS below would fail anyway; this keeps `n` meaningful.)
                head = self.inner.head.load(Acquire);
                continue;
            }
            let n = (len - len / 2).min(max);
            if n == 0 {
                return None;
            }
            let claimed = pack(steal, real.wrapping_add(n));
            // Acquire on both paths: ordering 3/4 for the `head` value read.
            match self
                .inner
                .head
                .compare_exchange(head, claimed, Acquire, Acquire)
            {
                Ok(_) => return Some((real, n)),
                Err(actual) => head = actual,
            }
        }
    }

    /// Ends the claim that started at `first`: `steal` catches up with `real` (which the owner
    /// may have moved on by popping meanwhile).
    fn release(&self, first: u32) {
        // Relaxed: the value only seeds the CAS.
        let mut head = self.inner.head.load(Relaxed);
        loop {
            let (steal, real) = unpack(head);
            debug_assert_eq!(steal, first, "claim moved under its thief");
            // Release: our slot reads happen before the owner reuses the slots (ordering 2).
            match self
                .inner
                .head
                .compare_exchange(head, pack(real, real), Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }
}

impl<T> Clone for Steal<T> {
    fn clone(&self) -> Steal<T> {
        Steal {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Local<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("len", &self.len()).finish()
    }
}

impl<T> std::fmt::Debug for Steal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steal").field("len", &self.len()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::loom::{thread, AtomicBool, AtomicUsize, Mutex, Ordering::SeqCst};

    const CAP: usize = LOCAL_QUEUE_CAPACITY;

    /// An overflow that records every batch separately.
    #[derive(Default)]
    struct Batches<T>(Mutex<Vec<Vec<T>>>);

    impl<T> Overflow<T> for Batches<T> {
        fn push_batch<I: Iterator<Item = T>>(&self, batch: I) {
            let batch: Vec<T> = batch.collect();
            self.0.lock().push(batch);
        }
    }

    impl<T> Batches<T> {
        fn take(&self) -> Vec<Vec<T>> {
            std::mem::take(&mut *self.0.lock())
        }
    }

    /// An overflow that must never be used.
    struct NoOverflow;

    impl<T> Overflow<T> for NoOverflow {
        fn push_batch<I: Iterator<Item = T>>(&self, _batch: I) {
            panic!("unexpected overflow");
        }
    }

    /// An item that counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn drain<T>(q: &mut Local<T>) -> Vec<T> {
        iter::from_fn(|| q.pop()).collect()
    }

    fn fill(q: &mut Local<u32>, items: std::ops::Range<u32>) {
        for i in items {
            q.push_back_or_overflow(i, &NoOverflow);
        }
    }

    #[test]
    fn local_is_send_and_steal_is_send_sync_clone() {
        fn send<T: Send>() {}
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send::<Local<Box<u32>>>();
        send_sync_clone::<Steal<Box<u32>>>();
    }

    #[test]
    fn pop_returns_items_in_push_order() {
        let (mut q, _steal) = local::<u32>();
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
        fill(&mut q, 0..CAP as u32);
        assert_eq!(q.len(), CAP);
        assert_eq!(q.remaining_slots(), 0);
        assert_eq!(drain(&mut q), (0..CAP as u32).collect::<Vec<_>>());
        assert_eq!(q.remaining_slots(), CAP);
    }

    #[test]
    fn positions_wrap_around_u32_max() {
        let (mut q, steal) = local_starting_at::<u32>(u32::MAX - 3);
        let (mut thief, _) = local_starting_at::<u32>(u32::MAX - 1);
        let overflow = Batches::default();
        // Interleave pushes and pops so the ring turns over several times across the wrap;
        // the queue peaks at exactly full.
        let items = 3 * (CAP as u32 - 1);
        let mut popped = Vec::new();
        for i in 0..items {
            q.push_back_or_overflow(i, &overflow);
            if i % 3 != 0 {
                popped.extend(q.pop());
            }
        }
        assert_eq!(q.len(), CAP - 1, "one item in three stays queued");
        assert!(overflow.take().is_empty());
        popped.extend(steal.steal_into(&mut thief));
        popped.extend(drain(&mut thief));
        popped.extend(drain(&mut q));
        assert_eq!(popped, (0..items).collect::<Vec<_>>());
    }

    #[test]
    fn push_into_full_queue_overflows_older_half_and_new_item_in_one_batch() {
        let (mut q, _steal) = local::<u32>();
        let overflow = Batches::default();
        fill(&mut q, 0..CAP as u32);
        q.push_back_or_overflow(CAP as u32, &overflow);

        let batches = overflow.take();
        assert_eq!(batches.len(), 1, "one push_batch call");
        let expected: Vec<u32> = (0..CAP as u32 / 2).chain([CAP as u32]).collect();
        assert_eq!(batches[0], expected);
        assert_eq!(q.len(), CAP / 2);
        assert_eq!(q.remaining_slots(), CAP / 2);
        assert_eq!(
            drain(&mut q),
            (CAP as u32 / 2..CAP as u32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn push_into_full_queue_during_a_steal_overflows_only_the_new_item() {
        let (mut q, steal) = local::<u32>();
        let overflow = Batches::default();
        fill(&mut q, 0..CAP as u32);

        // A thief that has claimed its half but not yet copied it.
        let (first, n) = steal.claim(u32::MAX).expect("claim");
        assert_eq!((first, n), (0, CAP as u32 / 2));
        assert_eq!(q.len(), CAP / 2);
        assert_eq!(q.remaining_slots(), 0, "claimed slots are not free yet");

        q.push_back_or_overflow(1000, &overflow);
        assert_eq!(overflow.take(), vec![vec![1000]]);

        // A second thief backs off; the owner can still pop past the claim.
        let (mut other, _) = local::<u32>();
        assert_eq!(steal.clone().steal_into(&mut other), None);
        assert_eq!(q.pop(), Some(CAP as u32 / 2));

        // SAFETY: the claim above covers these positions and nobody else reads them.
        let claimed: Vec<u32> = (first..first + n)
            .map(|p| unsafe { steal.inner.take(p) })
            .collect();
        steal.release(first);
        assert_eq!(claimed, (0..CAP as u32 / 2).collect::<Vec<_>>());

        // The released slots are free again: the ring takes pushes without overflowing.
        assert_eq!(q.remaining_slots(), CAP / 2 + 1);
        fill(&mut q, 2000..2000 + CAP as u32 / 2 + 1);
        assert!(overflow.take().is_empty());
        assert_eq!(q.len(), CAP);
    }

    #[test]
    fn push_back_batch_fills_the_ring_and_overflows_the_rest_in_one_batch() {
        let (mut q, _steal) = local::<u32>();
        let overflow = Batches::default();
        fill(&mut q, 0..10);
        q.push_back_batch(10..300, &overflow);

        let batches = overflow.take();
        assert_eq!(batches.len(), 1, "one push_batch call");
        assert_eq!(batches[0], (CAP as u32..300).collect::<Vec<_>>());
        assert_eq!(drain(&mut q), (0..CAP as u32).collect::<Vec<_>>());
    }

    #[test]
    fn push_back_batch_that_fits_does_not_touch_the_overflow() {
        let (mut q, steal) = local::<u32>();
        q.push_back_batch(0..CAP as u32, &NoOverflow);
        q.push_back_batch(iter::empty(), &NoOverflow);
        assert_eq!(steal.len(), CAP);
        assert_eq!(drain(&mut q), (0..CAP as u32).collect::<Vec<_>>());
    }

    #[test]
    fn steal_takes_half_rounded_up_and_returns_the_oldest() {
        let (mut victim, steal) = local::<u32>();
        let (mut thief, _) = local::<u32>();
        fill(&mut victim, 0..5);

        assert_eq!(steal.steal_into(&mut thief), Some(0));
        assert_eq!(drain(&mut thief), vec![1, 2]);
        assert_eq!(steal.len(), 2);
        assert_eq!(drain(&mut victim), vec![3, 4]);

        fill(&mut victim, 5..6);
        assert_eq!(steal.steal_into(&mut thief), Some(5));
        assert!(thief.is_empty());
        assert!(steal.is_empty());
    }

    #[test]
    fn bounded_steal_takes_at_most_the_bound_oldest_first() {
        let (mut victim, steal) = local::<u32>();
        let (mut thief, _) = local::<u32>();
        fill(&mut victim, 0..20);

        // Half would be 10; the bound of 3 counts the task returned.
        assert_eq!(steal.steal_up_to(&mut thief, 3), Some(0));
        assert_eq!(drain(&mut thief), vec![1, 2]);
        assert_eq!(steal.len(), 17);
        // A bound above half takes half.
        assert_eq!(steal.steal_up_to(&mut thief, 100), Some(3));
        assert_eq!(thief.len(), 8);
        assert_eq!(
            steal.steal_up_to(&mut thief, 0),
            None,
            "a bound of 0 takes nothing"
        );
        assert_eq!(steal.len(), 8);
        assert_eq!(drain(&mut victim), (12..20).collect::<Vec<_>>());
    }

    #[test]
    fn steal_from_empty_queue_returns_none() {
        let (mut victim, steal) = local::<u32>();
        let (mut thief, _) = local::<u32>();
        assert_eq!(steal.steal_into(&mut thief), None);
        fill(&mut victim, 0..3);
        drain(&mut victim);
        assert_eq!(steal.steal_into(&mut thief), None);
        assert!(thief.is_empty());
    }

    #[test]
    fn steal_takes_no_more_than_fits_in_the_destination() {
        let (mut victim, steal) = local::<u32>();
        let (mut thief, _) = local::<u32>();
        fill(&mut victim, 0..10);
        fill(&mut thief, 100..100 + CAP as u32 - 1);

        // One free slot: one task moved there plus the one returned.
        assert_eq!(steal.steal_into(&mut thief), Some(0));
        assert_eq!(thief.len(), CAP);
        assert_eq!(steal.len(), 8);
        // Full: only the returned one.
        assert_eq!(steal.steal_into(&mut thief), Some(2));
        assert_eq!(steal.len(), 7);
        let mut rest = drain(&mut thief);
        assert_eq!(rest.pop(), Some(1));
    }

    #[test]
    fn dropping_local_drops_each_remaining_item_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let item = || Counted(drops.clone());
        let (mut victim, steal) = local::<Counted>();
        let (mut thief, _thief_steal) = local::<Counted>();
        for _ in 0..10 {
            victim.push_back_or_overflow(item(), &NoOverflow);
        }
        drop(victim.pop());
        drop(steal.steal_into(&mut thief));
        assert_eq!(drops.load(SeqCst), 2);
        drop(victim);
        assert_eq!(drops.load(SeqCst), 2 + 4, "victim dropped its 4");
        drop(thief);
        assert_eq!(drops.load(SeqCst), 10, "thief dropped the 4 it stole");
        drop(steal);
        assert_eq!(drops.load(SeqCst), 10);
    }

    #[test]
    fn overflow_items_not_consumed_by_push_batch_are_dropped() {
        struct Takes(usize);
        impl<T> Overflow<T> for Takes {
            fn push_batch<I: Iterator<Item = T>>(&self, batch: I) {
                batch.take(self.0).for_each(drop);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut q, _steal) = local::<Counted>();
        for _ in 0..CAP {
            q.push_back_or_overflow(Counted(drops.clone()), &NoOverflow);
        }
        q.push_back_or_overflow(Counted(drops.clone()), &Takes(3));
        assert_eq!(drops.load(SeqCst), CAP / 2 + 1);
        assert_eq!(q.len(), CAP / 2);
        drop(q);
        assert_eq!(drops.load(SeqCst), CAP + 1);
    }

    /// The owner pushes and pops while thieves steal from it and from each other; every item
    /// must come out exactly once, from the owner, a thief or the overflow.
    #[test]
    fn concurrent_push_pop_steal_sees_every_item_exactly_once() {
        const ITEMS: u32 = 100_000;
        const THIEVES: usize = 3;

        let (mut owner, owner_steal) = local::<u32>();
        let overflow = Arc::new(Batches::default());
        let done = Arc::new(AtomicBool::new(false));
        let steals_from_owner = Arc::new(AtomicUsize::new(0));
        let thief_queues: Vec<(Local<u32>, Steal<u32>)> = (0..THIEVES).map(|_| local()).collect();
        let thief_steals: Vec<Steal<u32>> = thief_queues.iter().map(|(_, s)| s.clone()).collect();

        let thieves: Vec<_> = thief_queues
            .into_iter()
            .enumerate()
            .map(|(i, (mut mine, _))| {
                let victim = owner_steal.clone();
                let neighbour = thief_steals[(i + 1) % THIEVES].clone();
                let done = done.clone();
                let steals_from_owner = steals_from_owner.clone();
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !done.load(SeqCst) {
                        if let Some(task) = victim.steal_into(&mut mine) {
                            steals_from_owner.fetch_add(1, SeqCst);
                            seen.push(task);
                        }
                        seen.extend(mine.pop());
                        if mine.is_empty() {
                            seen.extend(neighbour.steal_into(&mut mine));
                        }
                        thread::yield_now();
                    }
                    // Keep `mine` alive: a neighbour may still be stealing from it.
                    (mine, seen)
                })
            })
            .collect();

        let mut seen = Vec::new();
        for i in 0..ITEMS {
            owner.push_back_or_overflow(i, &*overflow);
            if i % 3 == 0 {
                seen.extend(owner.pop());
            }
            if i % 1024 == 0 {
                thread::yield_now();
            }
        }
        // The thieves must get at least one steal in while the owner still holds work, or the
        // test would prove nothing; on a loaded machine they may not have run yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while steals_from_owner.load(SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "no thief ever stole");
            thread::yield_now();
        }
        seen.extend(drain(&mut owner));
        done.store(true, SeqCst);

        let mut locals = Vec::new();
        for t in thieves {
            let (mine, theirs) = t.join().expect("thief panicked");
            seen.extend(theirs);
            locals.push(mine);
        }
        for mut mine in locals {
            seen.extend(drain(&mut mine));
        }
        let batches = overflow.take();
        for batch in &batches {
            assert!(
                batch.len() == 1 || batch.len() == CAP / 2 + 1,
                "overflow batch of {}",
                batch.len()
            );
        }
        seen.extend(batches.into_iter().flatten());

        let mut count = vec![0u8; ITEMS as usize];
        for i in seen {
            count[i as usize] += 1;
        }
        let wrong: Vec<_> = (0..ITEMS).filter(|&i| count[i as usize] != 1).collect();
        assert!(
            wrong.is_empty(),
            "items seen != once: {:?}",
            &wrong[..wrong.len().min(10)]
        );
    }
}

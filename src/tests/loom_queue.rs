//! Loom models of the local run queue (`sched::queue`), at `LOCAL_QUEUE_CAPACITY` = 4.
//!
//! Run: `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --release --lib
//! --target-dir target/loom loom_queue`.
//!
//! Every model hands out numbered items, lets the owner and one or more thieves race, collects
//! every item that came out (popped, stolen, sent to the overflow) and checks that each number
//! came out exactly once, then that each item was dropped exactly once once everything is
//! gone. Positions start just below `u32::MAX` so the races also cross the wrap.
//!
//! # Two schedules per model
//!
//! loom 0.7's partial-order reduction remembers only the *last* access to an atomic, so when a
//! thread loads an atomic and then CASes it (as both sides of this queue do), a race between
//! the CAS and another thread's earlier *load* is not explored (tokio-rs/loom#166, #392). The
//! searched schedules then start from "the main thread runs first" and only move other threads'
//! stores before main's loads when main itself stored. So each model runs twice: once as
//! written, and once with the owner yielding right after spawning, which makes loom start from
//! "the spawned threads run first" and explore towards the owner running earlier. Mutation
//! checks (weakening each `Release`/`Acquire` in `queue.rs` to `Relaxed`) fail without the
//! second schedule in several places and pass only with both.
//!
//! # Bookkeeping outside the model
//!
//! The drop counters and the overflow sink use `std` types on purpose: they observe the model
//! rather than being part of it, and loom runs its threads one at a time on one OS thread, so
//! plain `std` atomics and locks are exact here and add no states to explore.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::SeqCst};
use std::sync::{Arc as StdArc, Mutex as StdMutex};

use crate::loom::thread;
use crate::sched::queue::{local, local_starting_at, Local, Overflow, Steal, LOCAL_QUEUE_CAPACITY};

const CAP: usize = LOCAL_QUEUE_CAPACITY;

/// First position of the queues under test: a few pushes cross `u32::MAX`.
const START: u32 = u32::MAX - 2;

/// Which side loom's search starts from (see the module docs).
#[derive(Clone, Copy, Debug)]
enum Schedule {
    OwnerFirst,
    ThievesFirst,
}

impl Schedule {
    /// Called by the owner right after spawning the other threads.
    fn owner_starts(self) {
        if let Schedule::ThievesFirst = self {
            thread::yield_now();
        }
    }
}

/// Runs `body` under loom once per schedule.
fn model(body: fn(Schedule)) {
    for schedule in [Schedule::OwnerFirst, Schedule::ThievesFirst] {
        loom::model(move || body(schedule));
    }
}

/// A numbered item that counts its drops.
struct Item {
    id: usize,
    drops: StdArc<Vec<StdAtomicUsize>>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, SeqCst);
    }
}

/// Hands out items `0..n` and checks how they came out.
struct Tracker {
    drops: StdArc<Vec<StdAtomicUsize>>,
}

impl Tracker {
    fn new(n: usize) -> Tracker {
        Tracker {
            drops: StdArc::new((0..n).map(|_| StdAtomicUsize::new(0)).collect()),
        }
    }

    fn item(&self, id: usize) -> Item {
        Item {
            id,
            drops: self.drops.clone(),
        }
    }

    /// Every item came out exactly once across `seen` and none was dropped meanwhile; after
    /// dropping `seen`, every item has been dropped exactly once.
    fn check_seen(&self, seen: Vec<Item>) {
        let mut ids: Vec<usize> = seen.iter().map(|item| item.id).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..self.drops.len()).collect::<Vec<_>>(),
            "lost or duplicated"
        );
        assert!(self.all_dropped_times(0), "dropped while still out");
        drop(seen);
        assert!(self.all_dropped_times(1), "not dropped exactly once");
    }

    fn all_dropped_times(&self, times: usize) -> bool {
        self.drops.iter().all(|d| d.load(SeqCst) == times)
    }
}

/// The global queue stand-in: records each `push_batch` call as one batch.
#[derive(Default)]
struct Sink(StdMutex<Vec<Vec<Item>>>);

impl Overflow<Item> for Sink {
    fn push_batch<I: Iterator<Item = Item>>(&self, batch: I) {
        let batch: Vec<Item> = batch.collect();
        self.0.lock().unwrap().push(batch);
    }
}

impl Sink {
    fn batches(&self) -> Vec<Vec<Item>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// An overflow the model never expects to reach.
struct NoOverflow;

impl Overflow<Item> for NoOverflow {
    fn push_batch<I: Iterator<Item = Item>>(&self, _batch: I) {
        panic!("unexpected overflow");
    }
}

fn drain(q: &mut Local<Item>) -> Vec<Item> {
    std::iter::from_fn(|| q.pop()).collect()
}

/// A queue at `START` holding items `ids`.
fn filled(tracker: &Tracker, ids: std::ops::Range<usize>) -> (Local<Item>, Steal<Item>) {
    let (mut q, steal) = local_starting_at(START);
    for id in ids {
        q.push_back_or_overflow(tracker.item(id), &NoOverflow);
    }
    (q, steal)
}

/// A thief with its own empty queue: steals once, then runs everything it got.
fn spawn_thief(victim: Steal<Item>) -> thread::JoinHandle<Vec<Item>> {
    thread::spawn(move || {
        let (mut mine, _) = local();
        let mut seen: Vec<Item> = victim.steal_into(&mut mine).into_iter().collect();
        seen.extend(drain(&mut mine));
        seen
    })
}

#[test]
fn loom_queue_steal_races_pop() {
    model(|schedule| {
        let tracker = Tracker::new(3);
        let (mut owner, steal) = filled(&tracker, 0..3);

        let thief = spawn_thief(steal);
        schedule.owner_starts();

        let mut seen = drain(&mut owner);
        seen.extend(thief.join().unwrap());
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_steal_races_push_that_overflows() {
    model(|schedule| {
        let tracker = Tracker::new(CAP + 2);
        let (mut owner, steal) = filled(&tracker, 0..CAP);
        let sink = Sink::default();

        let thief = spawn_thief(steal);
        schedule.owner_starts();

        // Full ring: each push either finds room a steal made, overflows half plus itself, or
        // (a steal mid-copy) overflows itself alone.
        owner.push_back_or_overflow(tracker.item(CAP), &sink);
        owner.push_back_or_overflow(tracker.item(CAP + 1), &sink);
        let mut seen = drain(&mut owner);
        seen.extend(thief.join().unwrap());

        let batches = sink.batches();
        assert!(batches.len() <= 2, "one push_batch per push at most");
        for batch in &batches {
            assert!(
                batch.len() == 1 || batch.len() == CAP / 2 + 1,
                "overflow batch of {}",
                batch.len()
            );
        }
        seen.extend(batches.into_iter().flatten());
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_push_batch_races_steal() {
    model(|schedule| {
        let tracker = Tracker::new(CAP + 2);
        let (mut owner, steal) = filled(&tracker, 0..CAP - 1);
        let sink = Sink::default();

        let thief = spawn_thief(steal);
        schedule.owner_starts();

        // One slot is free; the rest fits only if the steal has released its slots.
        let batch: Vec<Item> = (CAP - 1..CAP + 2).map(|id| tracker.item(id)).collect();
        owner.push_back_batch(batch.into_iter(), &sink);
        let mut seen = thief.join().unwrap();
        seen.extend(drain(&mut owner));

        let batches = sink.batches();
        assert!(batches.len() <= 1, "one push_batch at most");
        seen.extend(batches.into_iter().flatten());
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_push_batch_publishes_to_a_thief() {
    model(|schedule| {
        // An empty ring takes the first `CAP` of the batch; a thief can only see them through
        // the one tail store that ends the batch.
        let tracker = Tracker::new(CAP + 1);
        let (mut owner, steal) = local_starting_at(START);
        let sink = Sink::default();

        let thief = spawn_thief(steal);
        schedule.owner_starts();

        let batch: Vec<Item> = (0..CAP + 1).map(|id| tracker.item(id)).collect();
        owner.push_back_batch(batch.into_iter(), &sink);
        let mut seen = thief.join().unwrap();
        seen.extend(drain(&mut owner));

        let batches = sink.batches();
        assert_eq!(batches.len(), 1, "the item that did not fit, in one batch");
        assert_eq!(batches[0].len(), 1);
        seen.extend(batches.into_iter().flatten());
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_two_thieves_race_each_other_and_the_owner() {
    model(|schedule| {
        let tracker = Tracker::new(CAP);
        let (mut owner, steal) = filled(&tracker, 0..CAP);

        let first = spawn_thief(steal.clone());
        let second = spawn_thief(steal);
        schedule.owner_starts();

        let mut seen: Vec<Item> = owner.pop().into_iter().collect();
        seen.extend(first.join().unwrap());
        seen.extend(second.join().unwrap());
        seen.extend(drain(&mut owner));
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_steal_into_queue_that_is_being_stolen_from() {
    model(|schedule| {
        // A (owned here) holds 0..4; B is full with 4..8 and steals from A while C steals from
        // B. B only has room once C releases the slots it copied, and then B's steal writes
        // into a slot C has just read: the destination side of the protocol.
        let tracker = Tracker::new(2 * CAP);
        let (mut a, steal_a) = filled(&tracker, 0..CAP);
        let (mut b, steal_b) = filled(&tracker, CAP..2 * CAP);

        let b_thread = thread::spawn(move || {
            let seen: Vec<Item> = steal_a.steal_into(&mut b).into_iter().collect();
            // Keep `b` alive and do not pop: C must see B's copies through B's tail alone.
            (b, seen)
        });
        let c_thread = spawn_thief(steal_b);
        schedule.owner_starts();

        let mut seen: Vec<Item> = a.pop().into_iter().collect();
        let (mut b, from_b) = b_thread.join().unwrap();
        seen.extend(from_b);
        seen.extend(c_thread.join().unwrap());
        seen.extend(drain(&mut b));
        seen.extend(drain(&mut a));
        drop((a, b));
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_stolen_items_are_published_to_thieves_of_the_destination() {
    model(|schedule| {
        // B steals half of A into its empty queue; C steals from B concurrently and can only
        // get B's copy through B's tail store (B does not pop).
        let tracker = Tracker::new(CAP);
        let (mut a, steal_a) = filled(&tracker, 0..CAP);
        let (b, steal_b) = local_starting_at(START);

        let b_thread = thread::spawn(move || {
            let mut b = b;
            let seen: Vec<Item> = steal_a.steal_into(&mut b).into_iter().collect();
            (b, seen)
        });
        let c_thread = spawn_thief(steal_b);
        schedule.owner_starts();

        let (mut b, mut seen) = b_thread.join().unwrap();
        seen.extend(c_thread.join().unwrap());
        seen.extend(drain(&mut b));
        seen.extend(drain(&mut a));
        drop((a, b));
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_owner_churn_races_repeated_steals() {
    model(|schedule| {
        // The owner keeps pushing (through a full ring) and popping while one thief steals
        // twice, running what it got in between: slots are claimed, released and reused.
        let tracker = Tracker::new(CAP + 3);
        let (mut owner, steal) = filled(&tracker, 0..CAP - 1);
        let sink = Sink::default();

        let thief = thread::spawn(move || {
            let (mut mine, _) = local();
            let mut seen = Vec::new();
            for _ in 0..2 {
                seen.extend(steal.steal_into(&mut mine));
                seen.extend(drain(&mut mine));
            }
            seen
        });
        schedule.owner_starts();

        let mut seen = Vec::new();
        owner.push_back_or_overflow(tracker.item(CAP - 1), &sink);
        owner.push_back_or_overflow(tracker.item(CAP), &sink);
        seen.extend(owner.pop());
        owner.push_back_or_overflow(tracker.item(CAP + 1), &sink);
        owner.push_back_or_overflow(tracker.item(CAP + 2), &sink);
        seen.extend(thief.join().unwrap());
        seen.extend(drain(&mut owner));

        let batches = sink.batches();
        assert!(batches.len() <= 4, "one push_batch per push at most");
        seen.extend(batches.into_iter().flatten());
        drop(owner);
        tracker.check_seen(seen);
    });
}

#[test]
fn loom_queue_owner_drop_races_steal() {
    model(|schedule| {
        // Items the thief claimed are its to finish; the rest are dropped by `Local`'s drop.
        let tracker = Tracker::new(3);
        let (owner, steal) = filled(&tracker, 0..3);

        let thief = spawn_thief(steal);
        schedule.owner_starts();

        drop(owner);
        let stolen = thief.join().unwrap();
        for id in 0..3 {
            let expected = usize::from(!stolen.iter().any(|item| item.id == id));
            assert_eq!(tracker.drops[id].load(SeqCst), expected, "item {id}");
        }
        drop(stolen);
        assert!(tracker.all_dropped_times(1), "not dropped exactly once");
    });
}

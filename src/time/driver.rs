//! The timer driver: the wheel behind a mutex, and what firing a timer means.
//!
//! Two kinds of timers share the wheel. A `Sleep` future's entry holds the waker to wake. A
//! descriptor's deadline entry is Go's `(f, arg, seq)` timer: it names the descriptor, the
//! direction and the sequence number it was armed with, and firing it calls
//! `PollDesc::deadline_fired`, which drops the firing if the sequence is stale.
//!
//! # Ground rules
//!
//! * `wheel` is only touched under its mutex. Nothing is woken and no descriptor is locked
//!   while it is held: due entries are collected, the lock is dropped, then they fire. Lock
//!   order: a descriptor's lock may be held while taking `wheel` (to arm a deadline), never the
//!   reverse.
//! * `next` caches when the wheel next needs attention (clock ns, `u64::MAX` for never). It is
//!   written under the lock after every change that can make it earlier and after every
//!   `process`; it may be stale-early (a removed timer), which costs one spurious check, never
//!   stale-late.
//! * Ticks are milliseconds: a timer for `t` ns is armed at tick `ceil(t / 1ms)` and fires when
//!   the clock has reached that tick, so it never fires early.

use std::task::Waker;

use super::wheel::{TimerId, Wheel};
use crate::driver::Clock;
use crate::loom::{AtomicU64, Mutex, Ordering};
use crate::pd::{driver::route, Mode, PollDesc};
use crate::sched::inject::Batch;
use crate::sched::Shared;

const TICK_NS: u64 = 1_000_000;

/// Timers fired per lock acquisition in `process`.
const FIRE_BATCH: usize = 32;

pub(crate) struct TimeDriver {
    wheel: Mutex<Wheel<Entry>>,
    next: AtomicU64,
}

enum Entry {
    Sleep { waker: Option<Waker>, fired: bool },
    Deadline { pd: PdPtr, mode: Mode, seq: u64 },
}

/// A descriptor pointer stored in a deadline timer.
///
/// # Invariant
///
/// It points into the descriptor cache of the same runtime, whose memory stays a valid
/// `PollDesc` for as long as the driver (and so this wheel) lives.
#[derive(Clone, Copy)]
struct PdPtr(*const PollDesc);

// SAFETY: `PollDesc` is `Sync` (atomics and a mutex), and the pointer stays valid (invariant).
unsafe impl Send for PdPtr {}

enum Fired {
    Waker(Waker),
    Deadline(PdPtr, Mode, u64),
}

fn tick_ceil(ns: u64) -> u64 {
    ns.div_ceil(TICK_NS)
}

impl TimeDriver {
    pub(crate) fn new() -> TimeDriver {
        TimeDriver {
            wheel: Mutex::new(Wheel::new()),
            next: AtomicU64::new(u64::MAX),
        }
    }

    /// When the earliest timer needs attention (clock ns), `u64::MAX` if no timer is armed.
    #[inline]
    pub(crate) fn next_expiration_ns(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Whether a timer is due now (reads the clock only if a timer is armed).
    #[inline]
    pub(crate) fn has_due(&self, clock: &Clock) -> bool {
        let next = self.next_expiration_ns();
        next != u64::MAX && next <= clock.now_ns()
    }

    /// Recomputes `next`; returns true if it moved earlier than `before`.
    fn update_next(&self, wheel: &Wheel<Entry>, before: u64) -> bool {
        let next = wheel
            .next_expiration()
            .map_or(u64::MAX, |tick| tick.saturating_mul(TICK_NS));
        self.next.store(next, Ordering::Release);
        next < before
    }

    /// Fires every timer due at `now_ns`: sleepers' wakers and descriptors' deadlines. Woken
    /// tasks of this runtime go to `batch`.
    pub(crate) fn process(&self, shared: &Shared, now_ns: u64, batch: &mut Batch) {
        let now = now_ns / TICK_NS;
        loop {
            let mut fired: [Option<Fired>; FIRE_BATCH] = [const { None }; FIRE_BATCH];
            let mut n = 0;
            let mut wheel = self.wheel.lock();
            while n < FIRE_BATCH {
                let Some(id) = wheel.poll(now) else { break };
                match wheel.get_mut(id) {
                    Entry::Sleep { waker, fired: done } => {
                        *done = true;
                        if let Some(w) = waker.take() {
                            fired[n] = Some(Fired::Waker(w));
                            n += 1;
                        }
                    }
                    Entry::Deadline { pd, mode, seq } => {
                        fired[n] = Some(Fired::Deadline(*pd, *mode, *seq));
                        n += 1;
                    }
                }
            }
            self.update_next(&wheel, 0);
            drop(wheel);
            for f in fired.iter_mut().take(n) {
                match f.take() {
                    Some(Fired::Waker(w)) => route(w, batch),
                    Some(Fired::Deadline(pd, mode, seq)) => {
                        // SAFETY: `PdPtr`'s invariant: the descriptor memory outlives the wheel.
                        let pd = unsafe { &*pd.0 };
                        pd.deadline_fired(shared, mode, seq, batch);
                    }
                    None => {}
                }
            }
            if n < FIRE_BATCH {
                return;
            }
        }
    }

    /// A new timer for a `Sleep`; returns its id and whether it became the earliest timer.
    pub(crate) fn sleep_insert(&self, when_ns: u64, waker: Waker) -> (TimerId, bool) {
        let mut wheel = self.wheel.lock();
        let before = self.next.load(Ordering::Relaxed);
        let id = wheel.insert(Entry::Sleep {
            waker: Some(waker),
            fired: false,
        });
        wheel.arm(id, tick_ceil(when_ns));
        let earliest = self.update_next(&wheel, before);
        (id, earliest)
    }

    /// Whether the sleep has fired; if not, makes sure `waker` is the one to wake.
    pub(crate) fn sleep_poll(&self, id: TimerId, waker: &Waker) -> bool {
        let mut wheel = self.wheel.lock();
        match wheel.get_mut(id) {
            Entry::Sleep { fired: true, .. } => true,
            Entry::Sleep { waker: slot, .. } => {
                match slot {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *slot = Some(waker.clone()),
                }
                false
            }
            Entry::Deadline { .. } => unreachable!("a sleep's timer id names a deadline timer"),
        }
    }

    pub(crate) fn sleep_remove(&self, id: TimerId) {
        let entry = self.wheel.lock().remove(id);
        drop(entry); // the waker drops outside the lock
    }

    /// A deadline timer for `pd`, unarmed; allocated once per descriptor.
    pub(crate) fn new_deadline_timer(&self, pd: *const PollDesc, mode: Mode) -> TimerId {
        self.wheel.lock().insert(Entry::Deadline {
            pd: PdPtr(pd),
            mode,
            seq: 0,
        })
    }

    /// Arms a deadline timer for `when_ns` with sequence `seq`; returns whether it became the
    /// earliest timer.
    pub(crate) fn arm_deadline(&self, id: TimerId, when_ns: u64, seq: u64) -> bool {
        let mut wheel = self.wheel.lock();
        let before = self.next.load(Ordering::Relaxed);
        if let Entry::Deadline { seq: s, .. } = wheel.get_mut(id) {
            *s = seq;
        }
        wheel.arm(id, tick_ceil(when_ns));
        self.update_next(&wheel, before)
    }

    pub(crate) fn disarm(&self, id: TimerId) {
        self.wheel.lock().disarm(id);
    }

    /// Timers armed (for metrics).
    pub(crate) fn armed(&self) -> usize {
        self.wheel.lock().armed()
    }
}

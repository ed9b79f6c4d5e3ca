//! Scheduler counters and the public [`RuntimeMetrics`] snapshot.
//!
//! # Ground rules
//!
//! * Per-machine counters ([`MachineStats`]) are written only by their machine's thread, with a
//!   relaxed load and store (no read-modify-write, no shared cache line: each block is padded to
//!   its own lines), and read by anyone with relaxed loads. A machine that exits folds its
//!   counts into `Shared::retired` first.
//! * Counters of rarer events (polls, wake-ups, hand-offs, spawns from outside the runtime) are
//!   shared atomics bumped with `fetch_add`; none of them is on a per-task path.
//! * A snapshot is not atomic across counters: each value is exact for some instant during the
//!   call.

use crate::loom::{AtomicU64, Ordering};

/// Counters written by one machine.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct MachineStats {
    /// Task polls.
    pub(crate) polls: AtomicU64,
    /// Successful steals (each moves half of a victim's ring).
    pub(crate) steals: AtomicU64,
    /// Tasks spawned by tasks running on this machine.
    pub(crate) spawned: AtomicU64,
}

/// Bumps a single-writer counter without a read-modify-write.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The sum of exited machines' counters.
#[derive(Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) polls: u64,
    pub(crate) steals: u64,
    pub(crate) spawned: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, stats: &MachineStats) {
        self.polls += stats.polls.load(Ordering::Relaxed);
        self.steals += stats.steals.load(Ordering::Relaxed);
        self.spawned += stats.spawned.load(Ordering::Relaxed);
    }
}

/// Counters of events that are not per task, shared by every thread.
#[derive(Default)]
pub(crate) struct SharedStats {
    /// Tasks spawned from outside the worker threads (`block_on`, other threads).
    pub(crate) spawned_outside: AtomicU64,
    /// Cores the monitor took from a machine stuck in one poll.
    pub(crate) handoffs: AtomicU64,
    /// Network polls the monitor forced because nobody had polled for 10 ms.
    pub(crate) forced_polls: AtomicU64,
    /// Machines (threads) started after the initial ones.
    pub(crate) spare_threads_started: AtomicU64,
}

/// A snapshot of a runtime's scheduler, from [`Runtime::metrics`](crate::Runtime::metrics).
///
/// Counters (`u64`) count since the runtime started; gauges (`usize`) are current values.
/// Reading a snapshot is cheap (a few locks, no stop-the-world), but it is not atomic across
/// fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// Worker cores (the configured `workers`, Go's `GOMAXPROCS`).
    pub workers: usize,
    /// Cores idle right now.
    pub idle_workers: usize,
    /// Machines spinning (looking for work to steal) right now.
    pub spinning_threads: usize,
    /// Worker threads alive, including spares started to replace a stuck thread.
    pub threads: usize,
    /// Worker threads parked waiting for a core.
    pub parked_threads: usize,
    /// Tasks spawned.
    pub tasks_spawned: u64,
    /// Tasks spawned and not yet finished.
    pub tasks_alive: usize,
    /// Task polls.
    pub polls: u64,
    /// Successful steals between cores.
    pub steals: u64,
    /// Tasks in the cores' local queues.
    pub local_queue_depth: usize,
    /// Tasks in the global queue.
    pub global_queue_depth: usize,
    /// Blocking waits in the poller (`epoll_wait` with a timeout other than zero).
    pub poller_waits: u64,
    /// Non-blocking polls of the poller.
    pub poller_nonblocking_polls: u64,
    /// Readiness events delivered by all polls.
    pub poller_events: u64,
    /// Wake-ups of the blocked poller (eventfd writes; repeated requests are coalesced).
    pub poller_wakeups: u64,
    /// Sockets registered with the poller.
    pub sockets: usize,
    /// Timers armed (sleeps, timeouts, intervals and socket deadlines).
    pub timers_armed: usize,
    /// Cores the monitor handed to another thread because their thread was stuck in one poll.
    pub handoffs: u64,
    /// Network polls forced by the monitor (nobody had polled for 10 ms).
    pub forced_polls: u64,
    /// Blocking-pool threads alive.
    pub blocking_threads: usize,
    /// Blocking-pool threads idle.
    pub blocking_idle_threads: usize,
    /// Blocking jobs waiting for a thread.
    pub blocking_queue_depth: usize,
}

impl RuntimeMetrics {
    /// Average readiness events per poll (blocking and non-blocking).
    pub fn events_per_poll(&self) -> f64 {
        let polls = self.poller_waits + self.poller_nonblocking_polls;
        if polls == 0 {
            0.0
        } else {
            self.poller_events as f64 / polls as f64
        }
    }
}

//! Machines (worker threads) and cores: Go's `schedule`, `findRunnable` and `injectglist`.
//!
//! See the module docs of `sched` for the design. This file holds the loop every machine runs:
//! take a core, run its tasks, look for more work (timers, global queue, network, stealing),
//! and when there is none give the core back and either block in the poller or park.
//!
//! # Who may touch a core
//!
//! A [`Core`] is owned by exactly one party at a time, which holds it as a `Box<Core>`: the idle
//! list, a machine, or (between the two) the monitor handing it over. While its machine polls a
//! task, the core sits in the machine's `core_slot`, an `AtomicPtr<Core>`. Whoever swaps a
//! non-null pointer out of the slot owns the core until it stores it back:
//!
//! * the task being polled, when it wakes or spawns another task (`Handle::schedule_task`):
//!   swap out, push, store back;
//! * the machine, when the poll returns: swap out, carry on;
//! * the monitor, when the poll has lasted longer than [`super::sysmon`]'s threshold: swap out
//!   and hand the core to another machine (Go's `retake`/`handoffp`). The stuck machine finds
//!   the slot empty when its poll returns and becomes a spare.
//!
//! Only the current owner ever stores a non-null pointer, so the slot never holds a core that
//! two parties believe they own. `Release` on store pairs with `Acquire`/`AcqRel` on swap, so the
//! new owner sees the core's contents as the last owner left them.

use std::ptr::{self, NonNull};
use std::sync::Arc as StdArc;

use super::idle::{self, Start};
use super::inject::{Batch, GLOBAL_POLL_INTERVAL};
use super::metrics::{self, MachineStats};
use super::queue::{self, Local, LOCAL_QUEUE_CAPACITY};
use super::task::Notified;
use super::{context, coop, Handle, Shared};
use crate::loom::{AtomicPtr, AtomicU64, Ordering};

/// How many times in a row a task may run from the `next` slot before it is sent to the back of
/// the ring: a pair of tasks that keep waking each other would otherwise starve the rest of the
/// queue. Go lets such a pair share one time slice; tokio caps its LIFO slot at 3 polls per tick.
const MAX_NEXT_STREAK: u32 = 3;

/// Every this many ticks a busy core also checks the clock: if nobody has polled the network
/// for [`MAX_POLL_GAP_NS`], it makes the periodic check early. 61 ticks are a few hundred
/// microseconds with echo-sized tasks but milliseconds with heavy ones (~100 µs per poll for
/// 16 pipelined hyper requests), and timers, or ready sockets that an idle core could serve
/// (see [`Worker::poll_due`]), would wait that long. A clock read every 8 polls costs a few
/// nanoseconds per poll.
const POLL_GAP_CHECK_INTERVAL: u32 = 8;

/// How long the network may go unpolled before a busy core makes its periodic check early.
/// (Go leaves this to sysmon's 10 ms; we keep that as the backstop.)
const MAX_POLL_GAP_NS: u64 = 1_000_000;

/// How many more tasks another core's ring must hold than this core's before the periodic check
/// evens the two out (see [`Worker::even_out`]). A margin keeps two nearly equal rings from
/// trading tasks back and forth.
const EVEN_OUT_MARGIN: usize = 4;

/// ... and how much longer its tasks must wait, at this core's recent time per poll: as long as
/// readiness may go unseen ([`MAX_POLL_GAP_NS`]). With short tasks the rings' lengths swing
/// widely from one moment to the next and even out by themselves; moving tasks then costs
/// throughput (the hand-written HTTP server with 2 workers, ~10 µs per poll: 1–2% of req/s
/// without this bound, 1,200 moves a second).
const EVEN_OUT_MIN_WAIT_NS: u64 = MAX_POLL_GAP_NS;

/// Rounds of stealing over all cores before a spinning machine gives up (Go's `stealTries`).
const STEAL_ROUNDS: usize = 4;

/// How long a spare machine (started to take over a stuck core) stays parked before it exits,
/// when there are more machines than cores plus one. Go keeps idle Ms forever; we retire extras.
const SPARE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// A core (Go's P): a run queue and the right to run tasks.
pub(crate) struct Core {
    index: usize,
    /// Owner half of this core's ring; the steal half is `Shared::remotes[index]`.
    run_queue: Local<Notified<Handle>>,
    /// The task most recently woken by the task running on this core (Go's `runnext`): it runs
    /// next, while its data is still in cache.
    next: Option<Notified<Handle>>,
    /// Consecutive polls taken from `next`, capped by [`MAX_NEXT_STREAK`].
    next_streak: u32,
    /// Scheduler ticks (task polls) on this core, for the periodic global-queue check.
    tick: u32,
    /// The tick by which every task queued on this core at its last network poll has had its
    /// turn (see [`Worker::poll_due`]).
    round_end: u32,
    /// `tick` and the clock (ns) at the last [`Worker::even_out`], to estimate how long a poll
    /// takes here; `since_ns` 0 = no estimate (the core was idle meanwhile).
    even_out_tick: u32,
    even_out_since_ns: u64,
    /// Whether the machine holding this core is counted in `Idle::nspinning`.
    spinning: bool,
    rand: FastRand,
}

impl Core {
    pub(super) fn new(index: usize, run_queue: Local<Notified<Handle>>) -> Box<Core> {
        Box::new(Core {
            index,
            run_queue,
            next: None,
            next_streak: 0,
            tick: 0,
            round_end: 0,
            even_out_tick: 0,
            even_out_since_ns: 0,
            spinning: false,
            rand: FastRand::new(index as u64 + 1),
        })
    }
}

/// A machine (Go's M): one OS thread of the runtime.
pub(crate) struct Machine {
    /// Address of the runtime's `Shared`, to recognise "a worker of *this* runtime".
    runtime: usize,
    /// The core, while this machine polls a task (see the module docs).
    core_slot: AtomicPtr<Core>,
    /// Incremented before and after every task poll: odd while polling. The monitor compares
    /// two samples to find a machine stuck in one poll.
    poll_seq: AtomicU64,
    parker: idle::Parker<Box<Core>>,
    /// Counters only this machine's thread writes.
    pub(super) stats: MachineStats,
    /// The monitor's notes on this machine (only the monitor touches them).
    pub(super) watch: Watch,
}

/// What the monitor last saw of a machine: a poll sequence number and when it first saw it.
#[derive(Default)]
pub(super) struct Watch {
    pub(super) seq: AtomicU64,
    pub(super) since: AtomicU64,
}

impl Machine {
    pub(super) fn new(shared: &Shared) -> StdArc<Machine> {
        StdArc::new(Machine {
            runtime: shared as *const Shared as usize,
            core_slot: AtomicPtr::new(ptr::null_mut()),
            poll_seq: AtomicU64::new(0),
            parker: idle::Parker::new(),
            stats: MachineStats::default(),
            watch: Watch::default(),
        })
    }

    pub(super) fn belongs_to(&self, shared: &Shared) -> bool {
        self.runtime == shared as *const Shared as usize
    }

    /// The current poll sequence number (odd while a task is being polled).
    pub(super) fn poll_seq(&self) -> u64 {
        self.poll_seq.load(Ordering::Relaxed)
    }

    /// Takes the core out of the slot, if it is there (see the module docs).
    pub(super) fn take_core(&self) -> Option<Box<Core>> {
        let ptr = self.core_slot.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw` by the core's owner,
        // and swapping it out transfers that ownership to us.
        NonNull::new(ptr).map(|p| unsafe { Box::from_raw(p.as_ptr()) })
    }

    /// Runs `f` with the core of this machine if it is in the slot (a task is being polled on
    /// this thread and the monitor has not taken the core). Returns `None` otherwise.
    pub(super) fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> Option<R> {
        let ptr = self.core_slot.swap(ptr::null_mut(), Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: swapping the non-null pointer out made us the core's exclusive owner until we
        // store it back below; it points to a live `Box<Core>`.
        let out = f(unsafe { &mut *ptr });
        self.core_slot.store(ptr, Ordering::Release);
        Some(out)
    }
}

impl idle::Machine<Box<Core>> for StdArc<Machine> {
    fn parker(&self) -> &idle::Parker<Box<Core>> {
        &self.parker
    }

    fn same(&self, other: &Self) -> bool {
        StdArc::ptr_eq(self, other)
    }
}

/// Pushes a task woken by the running task onto the core: into `next` (Go's `runqput(next=true)`)
/// or, for a task that yielded, to the back of the line. Returns whether the core now has work
/// it cannot start at once, in which case the caller should call `wakep`.
///
/// The back of the line is the ring's tail, unless the ring is at least half full and the
/// global queue holds tasks: then it is the global queue's tail (where Go's `Gosched` always
/// puts a goroutine). The core draws from the global queue only what fits in its ring, so on a
/// nearly full ring, tasks that keep yielding would cycle among themselves ahead of the global
/// queue: with 300 such tasks on one core, readiness found by a poll waited 2–3 rounds of them
/// (`tests/rt_io_wakeups.rs`) instead of at most 2. Below half full the ring has room for the
/// global queue's share, and yields stay off the global queue's lock: sent there whenever it
/// was not empty, hyper with 2 workers (a yield after every 16 pipelined requests) lost 6% of
/// its req/s (6 interleaved pairs).
pub(super) fn push_local(
    shared: &Shared,
    core: &mut Core,
    task: Notified<Handle>,
    yielded: bool,
) -> bool {
    if yielded {
        if core.run_queue.len() < LOCAL_QUEUE_CAPACITY / 2 || shared.inject.is_empty() {
            core.run_queue.push_back_or_overflow(task, &shared.inject);
            return false;
        }
        shared.inject.push(task);
        return true;
    }
    match core.next.replace(task) {
        Some(prev) => {
            core.run_queue.push_back_or_overflow(prev, &shared.inject);
            true
        }
        None => false,
    }
}

/// The body of every machine's thread.
pub(super) fn run_machine(
    handle: Handle,
    machine: StdArc<Machine>,
    first: Option<Start<Box<Core>>>,
) {
    let _guard = context::enter_worker(handle.clone(), &machine);
    let worker = Worker {
        shared: &handle.shared,
        machine: &machine,
    };
    let mut start = first;
    loop {
        let Some(s) = start.take().or_else(|| worker.park()) else {
            break;
        };
        worker.run(s.core, s.spinning);
    }
    handle.shared.machine_exited(&machine);
}

struct Worker<'a> {
    shared: &'a StdArc<Shared>,
    machine: &'a StdArc<Machine>,
}

impl Worker<'_> {
    /// Parks until handed a core; a spare machine may retire instead.
    fn park(&self) -> Option<Start<Box<Core>>> {
        let shared = self.shared;
        if shared.machine_count() > shared.idle.ncores() + 1 {
            // Err: retired (more machines than cores plus one, and idle for a while).
            shared
                .idle
                .park_or_retire(self.machine, SPARE_KEEP_ALIVE)
                .unwrap_or_default()
        } else {
            shared.idle.park(self.machine)
        }
    }

    /// Runs tasks with `core` until the machine has no core any more.
    fn run(&self, mut core: Box<Core>, spinning: bool) {
        core.spinning = spinning;
        core.even_out_since_ns = 0; // idle time must not count as polling time
        self.shared.core_acquired();
        loop {
            if self.shared.is_shutdown() {
                self.shutdown_core(core);
                return;
            }
            let task = match self.next_task(&mut core) {
                Some(task) => task,
                None => match self.find_runnable(core) {
                    Some((c, task)) => {
                        core = c;
                        task
                    }
                    None => return,
                },
            };
            if core.spinning {
                // Go's `resetspinning`: the last spinner to find work starts another, since
                // there may be more work than this machine can take.
                core.spinning = false;
                if self.shared.idle.found_work_while_spinning() {
                    self.shared.wakep();
                }
            }
            match self.run_task(core, task) {
                Some(c) => core = c,
                None => return, // the monitor handed our core to another machine
            }
        }
    }

    fn run_task(&self, core: Box<Core>, task: Notified<Handle>) -> Option<Box<Core>> {
        let machine = self.machine;
        machine
            .core_slot
            .store(Box::into_raw(core), Ordering::Release);
        let seq = machine.poll_seq.load(Ordering::Relaxed);
        machine.poll_seq.store(seq + 1, Ordering::Relaxed);
        metrics::bump(&machine.stats.polls);
        coop::start_poll();
        task.run();
        coop::end_poll();
        machine.poll_seq.store(seq + 2, Ordering::Relaxed);
        machine.take_core()
    }

    /// The fast path: the `next` slot and the ring, with the periodic check Go makes in
    /// `schedule` every 61 ticks (the global queue; here a fair share of it, and first timers
    /// and, when [`Worker::poll_due`], a non-blocking network poll), so that none of them can
    /// starve behind a core that always has local work.
    fn next_task(&self, core: &mut Core) -> Option<Notified<Handle>> {
        core.tick = core.tick.wrapping_add(1);
        if core.tick % GLOBAL_POLL_INTERVAL == 0
            || (core.tick % POLL_GAP_CHECK_INTERVAL == 0
                && self.shared.poll_overdue(MAX_POLL_GAP_NS))
        {
            self.run_timers(core);
            self.even_out(core);
            if self.poll_due(core) {
                let mut batch = Batch::new();
                if self.shared.poll_nonblocking(&mut batch) {
                    self.queue_found_while_busy(core, batch);
                    self.start_round(core);
                } else {
                    // Someone else polls; try again at the next check.
                    core.round_end = core.tick;
                }
            }
            // A fair share of the global queue, not Go's single task: the ring holds older
            // work, so FIFO order holds, and global tasks do not wait for this core to run
            // dry. With tasks of ~100 µs (hyper, pipelined), 61 ticks are ~7 ms, and taking one
            // task per check left the rest queued for rounds (p99 17 ms vs 12 ms, 2 workers).
            if let Some(task) = self.take_global(core) {
                return Some(task);
            }
        }
        if let Some(task) = core.next.take() {
            if core.next_streak < MAX_NEXT_STREAK {
                core.next_streak += 1;
                return Some(task);
            }
            core.run_queue
                .push_back_or_overflow(task, &self.shared.inject);
        }
        core.next_streak = 0;
        core.run_queue.pop()
    }

    /// Whether the periodic check polls the network: when this core has given every task it
    /// held at its last poll a turn, or when a core is idle (what the poll finds can start it).
    ///
    /// Go's `schedule` does not poll while the core has work: only `findRunnable` does, when
    /// it runs dry, and sysmon after 10 ms. Polling every 61 ticks instead, a busy core took in
    /// up to 128 ready tasks per 61 it ran. Since the queues are served in FIFO order, a task
    /// found early runs no sooner: it only waits in memory instead of in the kernel's ready
    /// list, and its task, socket and descriptor leave the cache before its turn. At 5,000
    /// connections every ready connection waited in the global queue, whose links cost a
    /// cache miss each to walk, and the server's CPU per request was 10% higher (echo 64 B,
    /// pinned; docs/benchmarks-log.md, "Polling once a round"). Readiness still cannot starve: a
    /// round ends after as many polls as there were tasks queued (a task that yields and runs
    /// again counts), and the monitor polls after 10 ms. `tests/rt_fair_service.rs` checks both
    /// the queues' depth and the fairness.
    fn poll_due(&self, core: &Core) -> bool {
        self.shared.idle.nidle() > 0 || core.tick.wrapping_sub(core.round_end) as i32 >= 0
    }

    /// Notes a network poll by this core: its round ends when what is queued now has run.
    fn start_round(&self, core: &mut Core) {
        let queued = core.run_queue.len() + self.shared.inject.len() / self.shared.idle.ncores();
        core.round_end = core.tick.wrapping_add(queued as u32);
    }

    /// Queues the tasks of a poll made while this core still has local work.
    ///
    /// They must not overtake tasks that have waited longer in the global queue (ring
    /// overflows, earlier polls): the ring drains first, then the global queue in FIFO order.
    /// So they go to the global queue's tail, unless that queue is empty and the whole batch
    /// fits in the ring: then the ring's tail is the same place in line, and the tasks stay on
    /// the core that found them (the emptiness check is a hint: at worst a task pushed
    /// meanwhile is overtaken once). Put on the ring always, fresh readiness kept overtaking
    /// the overflow: at 5,000 connections the least-served got 66% of the average
    /// (`tests/rt_fair_service.rs` guards this). Put on the global queue always, tasks moved
    /// between workers for nothing: hyper with 2 workers had a p99 of 10.9–11.9 ms against
    /// 10.5–11.7 ms this way (8 interleaved pairs, docs/benchmarks-log.md).
    fn queue_found_while_busy(&self, core: &mut Core, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if self.shared.inject.is_empty() && batch.len() <= core.run_queue.remaining_slots() {
            self.distribute(core, batch);
        } else {
            let n = batch.len();
            self.shared.inject.splice(batch);
            self.shared.start_idle(n);
        }
    }

    /// Evens out the rings of busy cores: if another core's ring holds more than
    /// [`EVEN_OUT_MARGIN`] tasks more than this one's, moves half the difference from its front
    /// to the back of this ring.
    ///
    /// Stealing alone only moves tasks when a core runs dry, and a core whose tasks never wait
    /// for I/O never does. hyper serves up to 16 pipelined requests per poll and then yields:
    /// with 16 requests in flight, 87% of the polls of a connection's task (50 connections, 2
    /// workers) ended in a yield, and the task went back to the same ring, never through the
    /// poller. The tasks stayed where chance had put them: the two rings differed by 14 tasks
    /// on average (of 47), against 7 on tokio, whose tasks wait for I/O more often and reach
    /// the other core through its poll. The connections on the longer ring waited longer.
    /// Evening out the rings here (`tests/rt_even_out.rs` has a bare case) lowered hyper's p99
    /// from 10.4–10.8 ms to 9.6–10.0 ms (lower in 7 of 8 interleaved pairs; tokio 8.9–9.1 ms)
    /// and that of echo at 500 connections from 8.7–9.7 ms to 7.8–9.1 ms (6 of 6 pairs), with
    /// req/s unchanged within 1% (docs/benchmarks-log.md). Go sends a goroutine that yields to the
    /// global queue, which shares it out; done here, that did not lower hyper's p99.
    ///
    /// It runs with the periodic check, at most every 61 polls and about once a millisecond on
    /// a core whose polls are long, so its clock read and its reads of the other rings'
    /// indices cost nothing measurable.
    fn even_out(&self, core: &mut Core) {
        let remotes = &self.shared.remotes;
        if remotes.len() < 2 {
            return;
        }
        // This core's time per poll since the last call (a clock read per periodic check).
        let now = self.shared.driver.clock.now_ns();
        let polls = core.tick.wrapping_sub(core.even_out_tick) as u64;
        let per_poll = match core.even_out_since_ns {
            0 => 0,
            since => now.saturating_sub(since) / polls.max(1),
        };
        core.even_out_tick = core.tick;
        core.even_out_since_ns = now;
        let mine = core.run_queue.len();
        let longest = remotes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != core.index)
            .map(|(i, r)| (i, r.len()))
            .max_by_key(|&(_, len)| len);
        let Some((victim, theirs)) = longest else {
            return;
        };
        if theirs <= mine + EVEN_OUT_MARGIN
            || ((theirs - mine) as u64) * per_poll < EVEN_OUT_MIN_WAIT_NS
        {
            return;
        }
        // The oldest of the moved tasks comes back to be run now; it joins the others at the
        // back, since this ring's own tasks have waited longer.
        if let Some(task) = remotes[victim].steal_up_to(&mut core.run_queue, (theirs - mine) / 2) {
            metrics::bump(&self.machine.stats.steals);
            core.run_queue
                .push_back_or_overflow(task, &self.shared.inject);
        }
    }

    /// Go's `findRunnable`, after the fast path came up empty. Returns the core (possibly a
    /// different one, after a blocking poll) and a task, or `None` when this machine no longer
    /// holds a core and should park.
    fn find_runnable(&self, mut core: Box<Core>) -> Option<(Box<Core>, Notified<Handle>)> {
        let shared = self.shared;
        loop {
            if shared.is_shutdown() {
                self.shutdown_core(core);
                return None;
            }

            // Timers that are due, then anything they (or anyone) left locally.
            self.run_timers(&mut core);
            if let Some(task) = core.next.take().or_else(|| core.run_queue.pop()) {
                return Some((core, task));
            }

            // The global queue, a fair share of it at once (Go's `globrunqget`).
            if let Some(task) = self.take_global(&mut core) {
                return Some((core, task));
            }

            // The last busy core skips the next two steps and goes to the blocking poll below,
            // which returns at once when events are pending: a non-blocking poll first costs
            // a second `epoll_wait` per wake-up whenever the load leaves the worker idle
            // between requests (1.58 per request at 40k req/s, pinned), and with every other
            // core idle there is nothing to steal (idle cores hold no tasks).
            let last_busy = shared.idle.nidle() + 1 >= shared.idle.ncores();
            if !last_busy {
                // The network, without blocking, unless a machine is blocked in the poller (it
                // will deliver) or another is already polling (Go's `pollingNet`).
                let mut batch = Batch::new();
                if shared.poll_nonblocking(&mut batch) {
                    let task = self.inject_batch(&mut core, batch);
                    self.start_round(&mut core);
                    if let Some(task) = task {
                        return Some((core, task));
                    }
                }

                // Steal, if the spinning bound allows.
                if core.spinning || shared.idle.try_start_spinning() {
                    core.spinning = true;
                    if let Some(task) = self.steal_work(&mut core) {
                        return Some((core, task));
                    }
                }
            }

            // Nothing: give the core back, then re-check (see idle.rs, "no lost wake-up").
            let was_spinning = std::mem::replace(&mut core.spinning, false);
            shared.idle.release(core);
            if !shared.inject.is_empty() {
                if let Some(mut c) = shared.idle.try_acquire() {
                    shared.core_acquired();
                    c.spinning = was_spinning;
                    core = c;
                    continue;
                }
            }
            if was_spinning {
                shared.idle.stop_spinning();
                if shared.any_work() {
                    if let Some(mut c) = shared.idle.try_acquire() {
                        shared.core_acquired();
                        shared.idle.restart_spinning();
                        c.spinning = true;
                        core = c;
                        continue;
                    }
                }
            }

            // The last machine to go idle blocks in the poller, with the next timer as the
            // timeout (and only if nobody else does: Go's `sched.lastpoll.Swap(0) != 0`).
            // While another core is busy, its machine polls without blocking whenever it runs
            // dry and at its periodic check, and the monitor after 10 ms: an idle machine
            // blocked in `epoll_wait` would be woken by every event and pull tasks onto a
            // second thread (a request-response pair would then bounce between two threads on
            // every message), so it parks instead.
            if shared.idle.nidle() < shared.idle.ncores() {
                return None;
            }
            match self.poll_blocking() {
                Some((c, Some(task))) => return Some((c, task)),
                Some((c, None)) => core = c,
                None => return None,
            }
        }
    }

    /// Becomes the one machine blocked in the poller, if the role is free. Returns the core it
    /// acquired afterwards, with the first ready task if any; `None` means "park".
    #[allow(clippy::type_complexity)]
    fn poll_blocking(&self) -> Option<(Box<Core>, Option<Notified<Handle>>)> {
        let shared = self.shared;
        if !shared.try_become_poller() {
            // Someone else polls: make sure it wakes in time for the earliest timer.
            shared.check_poller_timeout();
            return None;
        }
        let mut batch = Batch::new();
        shared.poll_as_poller(&mut batch);
        match shared.idle.try_acquire() {
            Some(mut core) => {
                shared.core_acquired();
                let task = self.inject_batch(&mut core, batch);
                self.start_round(&mut core);
                Some((core, task))
            }
            None => {
                // No idle core now. The busy cores will find the tasks in the global queue,
                // unless one of them goes idle meanwhile: Go's `injectglist` without a P, whose
                // `startIdle` is the submitter's half of the no-lost-wake-up rule (idle.rs).
                if !batch.is_empty() {
                    let n = batch.len();
                    shared.inject.splice(batch);
                    shared.start_idle(n);
                }
                None
            }
        }
    }

    /// Runs due timers; the tasks they wake are spread like a poller batch.
    fn run_timers(&self, core: &mut Core) {
        let time = &self.shared.driver.time;
        if !time.has_due(&self.shared.driver.clock) {
            return;
        }
        let mut batch = Batch::new();
        time.process(self.shared, self.shared.driver.clock.now_ns(), &mut batch);
        self.distribute(core, batch);
    }

    fn take_global(&self, core: &mut Core) -> Option<Notified<Handle>> {
        let inject = &self.shared.inject;
        if inject.is_empty() {
            return None;
        }
        // Go: n = min(len/gomaxprocs + 1, len(runq)/2).
        let n = (inject.len() / self.shared.idle.ncores() + 1)
            .min(LOCAL_QUEUE_CAPACITY / 2)
            .min(core.run_queue.remaining_slots() + 1);
        let mut batch = inject.pop_n(n);
        let first = batch.pop()?;
        core.run_queue.push_back_batch(batch, inject);
        Some(first)
    }

    /// Go's `injectglist` with a P, after taking the first task for this machine: as many
    /// tasks as there are idle cores go to the global queue and that many cores are started;
    /// the rest stay on this core.
    fn inject_batch(&self, core: &mut Core, mut batch: Batch) -> Option<Notified<Handle>> {
        let first = batch.pop()?;
        self.distribute(core, batch);
        Some(first)
    }

    fn distribute(&self, core: &mut Core, mut batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let shared = self.shared;
        let k = shared.idle.nidle().min(batch.len());
        if k > 0 {
            shared.inject.splice(batch.take_front(k));
            shared.start_idle(k);
        }
        core.run_queue.push_back_batch(batch, &shared.inject);
    }

    fn steal_work(&self, core: &mut Core) -> Option<Notified<Handle>> {
        let remotes = &self.shared.remotes;
        let n = remotes.len();
        for _ in 0..STEAL_ROUNDS {
            let start = core.rand.below(n as u32) as usize;
            for i in 0..n {
                let victim = (start + i) % n;
                if victim == core.index {
                    continue;
                }
                if let Some(task) = remotes[victim].steal_into(&mut core.run_queue) {
                    metrics::bump(&self.machine.stats.steals);
                    return Some(task);
                }
            }
            // New work may have reached the global queue meanwhile.
            if let Some(task) = self.take_global(core) {
                return Some(task);
            }
        }
        None
    }

    /// At shutdown: cancel every task the core holds.
    #[allow(clippy::boxed_local)] // cores travel as boxes (see "Who may touch a core")
    fn shutdown_core(&self, mut core: Box<Core>) {
        if core.spinning {
            core.spinning = false;
            self.shared.idle.stop_spinning();
        }
        if let Some(task) = core.next.take() {
            task.shutdown();
        }
        while let Some(task) = core.run_queue.pop() {
            task.shutdown();
        }
    }
}

/// A tiny xorshift generator for picking steal victims (quality is irrelevant; speed is not).
struct FastRand(u64);

impl FastRand {
    fn new(seed: u64) -> FastRand {
        FastRand(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u32) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (((x >> 32) * n as u64) >> 32) as u32
    }
}

/// The thief halves of every core's ring, indexed by core.
pub(super) type Remotes = Box<[queue::Steal<Notified<Handle>>]>;

/// Creates the cores and their steal handles.
#[allow(clippy::vec_box)] // cores move between owners as boxes
pub(super) fn cores(n: usize) -> (Vec<Box<Core>>, Remotes) {
    let mut cores = Vec::with_capacity(n);
    let mut remotes = Vec::with_capacity(n);
    for i in 0..n {
        let (local, steal) = queue::local();
        cores.push(Core::new(i, local));
        remotes.push(steal);
    }
    (cores, remotes.into_boxed_slice())
}

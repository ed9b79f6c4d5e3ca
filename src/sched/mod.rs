//! Layer 3: the scheduler — Go's `proc.go` for Rust tasks.
//!
//! # The model
//!
//! | Go | here | where |
//! |---|---|---|
//! | G (goroutine) | a task: one allocation holding a future | `task/` |
//! | P (processor) | a [`worker::Core`]: a 256-slot ring, a `next` slot, a tick | `worker.rs` |
//! | M (machine, OS thread) | a [`worker::Machine`]: a thread that runs tasks while it holds a core | `worker.rs` |
//! | `sched.runq` | the global queue | `inject.rs` |
//! | `pidle`, `midle`, `nmspinning` | idle cores, parked machines, spinning count | `idle.rs` |
//! | `sysmon` | the monitor thread | `sysmon.rs` |
//! | extra Ms for syscalls | the blocking pool | `blocking.rs` |
//! | async preemption (`sysmon` → `preemptone`) | the I/O budget of a task poll | `coop.rs` |
//!
//! There are as many cores as configured workers (GOMAXPROCS). Machines start one per core and
//! more are made when a core needs a thread and none is parked: when the monitor takes a core
//! away from a machine stuck in one task's poll, or when a wake-up finds every spare thread busy.
//!
//! # Finding work
//!
//! A machine with a core runs (`worker.rs`, Go's `schedule`/`findRunnable`):
//!
//! 1. every 61st tick, and early when a check every 8 ticks finds that nobody has polled the
//!    network for 1 ms: due timers; evening out, when another core's ring is longer by more
//!    than 4 tasks and 1 ms of polls (half the difference moves to this ring: tasks that only
//!    ever yield never reach the poller again, and a busy core never steals, so a burst of
//!    wake-ups that landed on one core would stay there); a non-blocking network poll (if no
//!    machine is blocked in the poller, and only once the core has served what its last poll
//!    found, or while a core is idle: taken in earlier, ready tasks would only wait in memory
//!    behind the same tasks) whose ready tasks go to the global queue's tail (or to the ring's
//!    tail, the same place in line, when the global queue is empty and they fit);
//!    and a fair share of the global queue onto the ring's tail (Go takes one task: with tasks
//!    of ~100 µs, 61 ticks are milliseconds, and the rest waited for rounds), so none of them
//!    starves behind local work;
//! 2. the `next` slot (the task the running task just woke, capped at 3 polls in a row), then
//!    the ring;
//! 3. due timers; the global queue, a fair share at once; the network, without blocking
//!    (skipped by the last busy core, which goes on to the blocking poll of step 5: it returns
//!    at once when events are pending, so the non-blocking one would only add a system call);
//! 4. stealing half of a random other core's ring, if fewer than half the busy cores are
//!    already spinning (4 rounds);
//! 5. otherwise it gives the core back, re-checks (the no-lost-wake-up rule of `idle.rs`), and
//!    then, if it was the last busy core, becomes *the* machine blocked in `epoll_wait` — with
//!    the next timer as timeout — or else parks on its futex. At most one machine blocks in the
//!    poller (`lastpoll == 0` marks it, as in Go), so the kernel's ready list is drained by one
//!    thread and nobody spins on it. Unlike Go, an idle machine does not block in the poller
//!    while another core is busy: the busy machine polls whenever it runs dry (as the last
//!    busy core it then blocks in the poller itself) and at the periodic check of step 1, and
//!    the monitor after 10 ms, so that a request and its response do not bounce between two
//!    threads.
//!
//! A task runs until its future returns `Pending`. So that a socket its peer never lets run dry
//! cannot keep a core, each poll of a task may start at most 128 socket operations; then the
//! operation yields instead (`coop.rs`, where Go would preempt the goroutine after 10 ms). A
//! task that yields goes to the back of the line: the ring's tail, or the global queue's when
//! the ring is at least half full and the global queue holds tasks (`worker::push_local`).
//!
//! A poll's ready tasks are one batch (Go's `injectglist`): the polling machine keeps the first
//! to run, sends as many as there are idle cores to the global queue and starts that many cores,
//! and queues the rest locally. Submitting work follows Go's `wakep`: if no machine is spinning
//! and a core is idle, start one spinning machine with it.
//!
//! Timers feed the same loop: the blocked poller's timeout is the earliest timer; a timer that
//! becomes the earliest while a machine is blocked with a later timeout breaks the poller
//! (Go's `wakeNetPoller`); see [`Shared::timer_added`].
//!
//! # Rejected approaches
//!
//! * *A dedicated I/O thread* (the reactor pattern): every readiness event would cross threads.
//!   Here the machine that polls runs the first ready task itself.
//! * *Every idle worker blocking in `epoll_wait`*: the kernel's ready list is contended and all
//!   of them wake for one event (Go #65064). One poller, the others on their futex.
//! * *A global lock for run queues*: cores own rings that only their owner pushes to.
//! * *Stackful coroutines*: async/await is the language's model and works with the ecosystem.
//!
//! # Shutdown, in order (`Shared::shutdown`)
//!
//! 1. The shutdown flag is set; the global queue is closed (queued tasks are cancelled, later
//!    pushes cancel the task at once); parked machines are woken to exit; the poller is broken.
//! 2. Each machine, at its next loop, cancels what its core holds and exits. The monitor exits.
//! 3. The dropping thread joins every machine, then cancels every task that is still alive
//!    (idle tasks, waiting on I/O or timers, are held only by wakers): their futures are dropped
//!    on this thread, which closes their sockets.
//! 4. The blocking pool finishes running jobs and joins its threads; timers are cleared.

pub(crate) mod blocking;
pub(crate) mod context;
pub(crate) mod coop;
pub(crate) mod idle;
pub(crate) mod inject;
pub(crate) mod metrics;
pub(crate) mod queue;
mod sysmon;
pub(crate) mod task;
pub(crate) mod worker;

use std::future::Future;
use std::io;
use std::sync::Arc as StdArc;
use std::time::Duration;

use crate::driver::Driver;
use crate::loom::{fence, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use idle::{Idle, Start};
use inject::{Batch, Inject};
use task::{Id, JoinHandle, Notified, OwnedTasks, Schedule, Task};
use worker::{Core, Machine};

/// A cheap, cloneable reference to a runtime's shared state. Every task holds one: it is how a
/// waker finds the run queues.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) shared: StdArc<Shared>,
}

/// Configuration the scheduler needs (set by `Builder`).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) thread_stack_size: Option<usize>,
    /// Print a line of scheduler figures to stderr at this period (`NETPOLL_SCHEDTRACE=<ms>`,
    /// Go's `GODEBUG=schedtrace`).
    pub(crate) schedtrace: Option<Duration>,
}

pub(crate) struct Shared {
    config: Config,
    /// The steal halves of every core's ring.
    remotes: Box<[queue::Steal<Notified<Handle>>]>,
    pub(crate) inject: Inject,
    idle: Idle<Box<Core>, StdArc<Machine>>,
    pub(crate) owned: OwnedTasks<Handle>,
    pub(crate) driver: Driver,
    pub(crate) blocking: blocking::BlockingPool,
    /// Go's `sched.lastpoll`: when the network was last polled (ns on the driver clock, never
    /// 0); 0 while a machine is blocked in the poller. Swapping it to 0 claims the poller role.
    lastpoll: AtomicU64,
    /// Go's `sched.pollUntil`: when the blocked poller will wake by itself (0 = not before it is
    /// woken). Written by the poller, read by whoever adds a timer.
    poll_until: AtomicU64,
    shutdown: AtomicBool,
    /// Every machine (thread) alive, for the monitor.
    machines: Mutex<Vec<StdArc<Machine>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next_machine_id: AtomicUsize,
    pub(crate) sysmon: sysmon::Monitor,
    pub(crate) stats: metrics::SharedStats,
    /// Counters of machines that have exited.
    retired: Mutex<metrics::Totals>,
}

impl Handle {
    /// Builds the scheduler and starts its machines and monitor.
    pub(crate) fn start(
        config: Config,
        driver: Driver,
        blocking: blocking::BlockingConfig,
    ) -> io::Result<Handle> {
        let (cores, remotes) = worker::cores(config.workers);
        let shared = StdArc::new(Shared {
            remotes,
            inject: Inject::new(),
            idle: Idle::new(cores),
            owned: OwnedTasks::new(),
            blocking: blocking::BlockingPool::new(blocking),
            lastpoll: AtomicU64::new(driver.clock.now_ns()),
            poll_until: AtomicU64::new(0),
            driver,
            shutdown: AtomicBool::new(false),
            machines: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            next_machine_id: AtomicUsize::new(0),
            sysmon: sysmon::Monitor::new(),
            stats: metrics::SharedStats::default(),
            retired: Mutex::new(metrics::Totals::default()),
            config,
        });
        let handle = Handle { shared };
        // Cores start idle; each initial machine is handed one, not spinning.
        for _ in 0..handle.shared.config.workers {
            let core = handle
                .shared
                .idle
                .try_acquire()
                .expect("a core per initial machine");
            if let Err(e) = handle.spawn_machine(Some(Start {
                core,
                spinning: false,
            })) {
                handle.shutdown(Some(Duration::from_secs(1)));
                return Err(e);
            }
        }
        if let Err(e) = sysmon::start(&handle) {
            handle.shutdown(Some(Duration::from_secs(1)));
            return Err(e);
        }
        Ok(handle)
    }

    #[track_caller]
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = &*self.shared;
        let on_worker = context::with_machine(|m| match m {
            Some(m) if m.belongs_to(shared) => {
                metrics::bump(&m.stats.spawned);
                true
            }
            _ => false,
        });
        if !on_worker {
            shared.stats.spawned_outside.fetch_add(1, Ordering::Relaxed);
        }
        let id = Id::next();
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(
            future,
            crate::trace::task_span(id, std::panic::Location::caller()),
        );
        let (join, notified) = shared.owned.bind(future, self.clone(), id);
        if let Some(task) = notified {
            self.schedule_task(task, false);
        }
        join
    }

    #[track_caller]
    pub(crate) fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared.blocking.spawn_blocking(f)
    }

    /// Queues a woken task: onto this thread's core when the running task woke it, else onto
    /// the global queue, then applies Go's `wakep`.
    fn schedule_task(&self, task: Notified<Handle>, yielded: bool) {
        let shared = &*self.shared;
        let mut task = Some(task);
        let local = context::with_machine(|m| {
            let m = m.filter(|m| m.belongs_to(shared))?;
            m.with_core(|core| {
                let task = task.take().expect("task not yet queued");
                worker::push_local(shared, core, task, yielded)
            })
        });
        match local {
            Some(true) => self.wakep(),
            Some(false) => {}
            None => {
                shared
                    .inject
                    .push(task.take().expect("task not queued locally"));
                self.wakep();
            }
        }
    }

    /// Go's `wakep` (see idle.rs).
    pub(crate) fn wakep(&self) {
        self.shared.wakep();
    }

    /// Starts up to `n` idle cores for work just put in the global queue.
    pub(crate) fn start_idle(&self, n: usize) {
        self.shared.start_idle(n);
    }

    /// Hands a core taken from a stuck machine to another machine.
    pub(crate) fn handoff(&self, core: Box<Core>) {
        self.shared.handoff(core);
    }

    fn spawn_machine(&self, start: Option<Start<Box<Core>>>) -> io::Result<()> {
        self.shared.spawn_machine(start)
    }

    /// Stops the runtime (module docs, "Shutdown"). Idempotent.
    pub(crate) fn shutdown(&self, blocking_timeout: Option<Duration>) {
        let shared = &self.shared;
        if shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        drop(shared.inject.close());
        for core in shared.idle.shutdown() {
            drop(core); // idle cores hold no tasks
        }
        shared.driver.io.wake();
        shared.sysmon.shutdown();

        // Join every thread except, if we are one of them, ourselves.
        let me = std::thread::current().id();
        loop {
            let threads = std::mem::take(&mut *shared.threads.lock());
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.thread().id() != me {
                    let _ = t.join();
                }
            }
        }

        shared.owned.close_and_shutdown_all();
        drop(shared.inject.close());
        shared.blocking.shutdown(blocking_timeout);
        shared.driver.shutdown();
    }
}

impl Schedule for Handle {
    fn schedule(&self, task: Notified<Self>) {
        self.schedule_task(task, false);
    }

    fn yield_now(&self, task: Notified<Self>) {
        self.schedule_task(task, true);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.shared.owned.remove(task)
    }
}

impl Shared {
    /// Go's `wakep` (see idle.rs).
    pub(crate) fn wakep(self: &StdArc<Self>) {
        self.idle
            .wakep(|start| self.spawn_machine_or_release(start));
    }

    /// Starts up to `n` idle cores for work just put in the global queue.
    pub(crate) fn start_idle(self: &StdArc<Self>, n: usize) {
        self.idle
            .start_idle(n, |start| self.spawn_machine_or_release(start));
    }

    /// Hands a core taken from a stuck machine to another machine.
    pub(crate) fn handoff(self: &StdArc<Self>, core: Box<Core>) {
        self.idle
            .handoff(core, |start| self.spawn_machine_or_release(start));
    }

    fn spawn_machine_or_release(self: &StdArc<Self>, start: Start<Box<Core>>) {
        self.stats
            .spare_threads_started
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.spawn_machine(Some(start));
    }

    /// Starts a new machine (thread), optionally with a core. If the thread cannot be created
    /// (resource limits), the core goes back to the idle list and the error is returned: the
    /// existing machines will run its work.
    fn spawn_machine(self: &StdArc<Self>, start: Option<Start<Box<Core>>>) -> io::Result<()> {
        let shared = self;
        let id = shared.next_machine_id.fetch_add(1, Ordering::Relaxed);
        let machine = Machine::new(shared);
        shared.machines.lock().push(machine.clone());
        let mut builder =
            std::thread::Builder::new().name(format!("{}-{}", shared.config.thread_name, id));
        if let Some(size) = shared.config.thread_stack_size {
            builder = builder.stack_size(size);
        }
        let handle = Handle {
            shared: self.clone(),
        };
        let thread_machine = machine.clone();
        // The start travels through a slot so that it can be recovered if the spawn fails.
        let slot = StdArc::new(std::sync::Mutex::new(start));
        let thread_slot = slot.clone();
        let spawned = builder.spawn(move || {
            let start = thread_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            worker::run_machine(handle, thread_machine, start);
        });
        match spawned {
            Ok(join) => {
                let mut threads = shared.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(join);
                Ok(())
            }
            Err(e) => {
                shared.machine_exited(&machine);
                let start = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(start) = start {
                    shared.idle.release(start.core);
                    if start.spinning {
                        shared.idle.stop_spinning();
                    }
                }
                Err(e)
            }
        }
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// True when no machine is blocked in the poller (Go: `sched.lastpoll != 0`).
    fn nobody_polling(&self) -> bool {
        self.lastpoll.load(Ordering::Relaxed) != 0
    }

    /// A non-blocking poll by a machine that looks for work, unless a machine is blocked in
    /// the poller (it will deliver) or another is polling. Records the time in `lastpoll`, so
    /// that the monitor does not force polls while machines poll on their own. Returns whether
    /// it polled.
    fn poll_nonblocking(&self, batch: &mut Batch) -> bool {
        let last = self.lastpoll.load(Ordering::Relaxed);
        if last == 0 || !self.driver.io.try_poll(batch) {
            return false;
        }
        // A CAS, not a store: a machine may have claimed the poller role (0) meanwhile.
        let now = self.driver.clock.now_ns();
        let _ = self
            .lastpoll
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed);
        true
    }

    /// Whether nobody has polled the network for `gap_ns` while no machine is blocked in the
    /// poller (which would deliver readiness itself).
    pub(crate) fn poll_overdue(&self, gap_ns: u64) -> bool {
        let last = self.lastpoll.load(Ordering::Relaxed);
        last != 0 && self.driver.clock.now_ns() >= last + gap_ns
    }

    /// Claims the poller role (Go: `sched.lastpoll.Swap(0) != 0`).
    fn try_become_poller(&self) -> bool {
        self.nobody_polling() && self.lastpoll.swap(0, Ordering::AcqRel) != 0
    }

    /// The blocking poll of the machine holding the poller role, with the earliest timer as
    /// timeout. Gives the role back when it returns.
    fn poll_as_poller(&self, batch: &mut Batch) {
        let clock = &self.driver.clock;
        let time = &self.driver.time;
        let mut until = time.next_expiration_ns();
        loop {
            self.poll_until
                .store(if until == u64::MAX { 0 } else { until }, Ordering::SeqCst);
            // Pairs with the fence in `timer_added`: either we see the new timer here, or the
            // one who added it sees `lastpoll == 0` and our `poll_until`, and breaks the poll.
            fence(Ordering::SeqCst);
            let again = time.next_expiration_ns();
            if again >= until {
                break;
            }
            until = again;
        }
        let timeout = if until == u64::MAX {
            None
        } else {
            Some(Duration::from_nanos(until.saturating_sub(clock.now_ns())))
        };
        if !self.is_shutdown() {
            self.driver.io.poll(timeout, batch);
        }
        self.poll_until.store(0, Ordering::Relaxed);
        self.lastpoll.store(clock.now_ns(), Ordering::Release);
    }

    /// A machine that cannot take the poller role checks that the blocked poller will wake in
    /// time for the earliest timer, and breaks it otherwise (Go, end of `findRunnable`).
    fn check_poller_timeout(&self) {
        let next = self.driver.time.next_expiration_ns();
        if next != u64::MAX {
            self.timer_added(next);
        }
    }

    /// Called when `when_ns` became the earliest timer: breaks the blocked poller if it would
    /// sleep past it (Go's `wakeNetPoller`). If no machine is blocked, the next one to block
    /// reads the timers after claiming the role (see `poll_as_poller`), and busy machines run
    /// due timers every 61 ticks.
    pub(crate) fn timer_added(&self, when_ns: u64) {
        fence(Ordering::SeqCst);
        if self.lastpoll.load(Ordering::Relaxed) == 0 {
            let until = self.poll_until.load(Ordering::Relaxed);
            if until == 0 || when_ns < until {
                self.driver.io.wake();
            }
        }
    }

    /// Any task queued anywhere (for the spinning re-check).
    fn any_work(&self) -> bool {
        !self.inject.is_empty() || self.remotes.iter().any(|r| !r.is_empty())
    }

    /// A core left the idle list: wake the monitor if it sleeps (it sleeps only while every
    /// core is idle).
    fn core_acquired(&self) {
        self.sysmon.core_busy();
    }

    fn machine_count(&self) -> usize {
        self.machines.lock().len()
    }

    fn machine_exited(&self, machine: &StdArc<Machine>) {
        let mut machines = self.machines.lock();
        if let Some(i) = machines.iter().position(|m| StdArc::ptr_eq(m, machine)) {
            machines.swap_remove(i);
            self.retired.lock().add(&machine.stats);
        }
    }

    /// A snapshot of the scheduler's counters (see [`metrics::RuntimeMetrics`]).
    pub(crate) fn metrics(&self) -> metrics::RuntimeMetrics {
        let mut totals = *self.retired.lock();
        let machines = self.machines.lock();
        for m in machines.iter() {
            totals.add(&m.stats);
        }
        let threads = machines.len();
        drop(machines);
        let io = self.driver.io.stats();
        let relaxed = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metrics::RuntimeMetrics {
            workers: self.idle.ncores(),
            idle_workers: self.idle.nidle(),
            spinning_threads: self.idle.nspinning(),
            threads,
            parked_threads: self.idle.parked_machines(),
            tasks_spawned: totals.spawned + relaxed(&self.stats.spawned_outside),
            tasks_alive: self.owned.len(),
            polls: totals.polls,
            steals: totals.steals,
            local_queue_depth: self.remotes.iter().map(|r| r.len()).sum(),
            global_queue_depth: self.inject.len(),
            poller_waits: io.waits,
            poller_nonblocking_polls: io.nonblocking_polls,
            poller_events: io.events,
            poller_wakeups: io.wakeups,
            sockets: self.driver.io.registered(),
            timers_armed: self.driver.time.armed(),
            handoffs: relaxed(&self.stats.handoffs),
            forced_polls: relaxed(&self.stats.forced_polls),
            blocking_threads: self.blocking.thread_count(),
            blocking_idle_threads: self.blocking.idle_count(),
            blocking_queue_depth: self.blocking.queue_depth(),
        }
    }

    /// Tasks currently alive (spawned and not yet finished).
    pub(crate) fn alive_tasks(&self) -> usize {
        self.owned.len()
    }
}

/// Spawns a task on the current runtime. See [`crate::spawn`].
#[track_caller]
pub(crate) fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    context::current().spawn(future)
}

/// Runs a blocking closure on the blocking pool. See [`crate::spawn_blocking`].
#[track_caller]
pub(crate) fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    context::current().spawn_blocking(f)
}

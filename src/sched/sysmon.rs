//! The monitor thread: Go's `sysmon`.
//!
//! It runs no tasks. Each round it:
//!
//! 1. polls the network without blocking if nobody has for [`FORCE_POLL_AFTER`] (every core is
//!    busy running tasks and none is blocked in the poller), so that readiness is never left
//!    waiting longer than that (Go: `lastpoll + 10ms < now`);
//! 2. runs timers that are overdue by [`FORCE_POLL_AFTER`] (a backstop: normally machines run
//!    them when idle or every 61 ticks);
//! 3. takes the core away from a machine that has been inside one task's poll for longer than
//!    [`STUCK_AFTER`] — a task blocking its thread in a system call or a long computation — and
//!    hands it to another machine, so the core's other tasks keep running (Go's `retake` and
//!    `handoffp`). The stuck machine becomes a spare when its poll returns.
//!
//! It sleeps [`MIN_DELAY`] between rounds, doubling after [`IDLE_ROUNDS_BEFORE_BACKOFF`] rounds
//! without a hand-off, up to [`MAX_DELAY`] (Go resets its delay only when `retake` took a P:
//! forced polls and timers are at most one per 10 ms anyway); and when every core has been idle for
//! [`IDLE_ROUNDS_BEFORE_SLEEP`] rounds it sleeps until a core becomes busy (Go's
//! `sysmonwait`), so an idle runtime costs no wake-ups.

use std::io;
use std::time::Duration;

use super::inject::Batch;
use super::Handle;
use crate::loom::{fence, AtomicBool, Condvar, Mutex, Ordering};

/// Go's sysmon forces a network poll when none happened for 10 ms.
const FORCE_POLL_AFTER: u64 = 10_000_000;
/// Go preempts a goroutine that ran for 10 ms (`forcePreemptNS`); we hand its core off.
const STUCK_AFTER: u64 = 10_000_000;
/// Go starts at 20 µs because it also retakes Ps from short system calls; our thresholds are
/// 10 ms, so a 1 ms tick is fine-grained enough and costs far fewer wake-ups.
const MIN_DELAY: Duration = Duration::from_millis(1);
const MAX_DELAY: Duration = Duration::from_millis(10);
const IDLE_ROUNDS_BEFORE_BACKOFF: u32 = 20;
/// About a second of a fully idle runtime at the 10 ms delay.
const IDLE_ROUNDS_BEFORE_SLEEP: u32 = 120;

pub(crate) struct Monitor {
    state: Mutex<State>,
    condvar: Condvar,
    /// Set while the monitor sleeps until a core becomes busy; read (cheaply) by machines
    /// taking a core.
    asleep: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct State {
    shutdown: bool,
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            state: Mutex::new(State { shutdown: false }),
            condvar: Condvar::new(),
            asleep: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }

    /// A core became busy. Pairs with the fence in `run` before it re-checks the idle count.
    pub(crate) fn core_busy(&self) {
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) {
            let _state = self.state.lock();
            self.asleep.store(false, Ordering::Relaxed);
            self.condvar.notify_one();
        }
    }

    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.condvar.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Sleeps for `delay`, or until woken if `delay` is `None`. Returns false at shutdown.
    fn sleep(&self, delay: Option<Duration>) -> bool {
        let mut state = self.state.lock();
        if state.shutdown {
            return false;
        }
        match delay {
            Some(d) => state = self.condvar.wait_timeout(state, d),
            None => {
                while self.asleep.load(Ordering::Relaxed) && !state.shutdown {
                    state = self.condvar.wait(state);
                }
            }
        }
        !state.shutdown
    }
}

pub(super) fn start(handle: &Handle) -> io::Result<()> {
    let h = handle.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{}-sysmon", handle.shared.config.thread_name))
        .spawn(move || run(h))?;
    *handle.shared.sysmon.thread.lock() = Some(thread);
    Ok(())
}

fn run(handle: Handle) {
    let shared = &*handle.shared;
    let monitor = &shared.sysmon;
    let clock = &shared.driver.clock;
    // Reused every round so that the monitor does not allocate while the workers are busy.
    let mut machines: Vec<std::sync::Arc<super::worker::Machine>> = Vec::new();
    let mut delay = MIN_DELAY;
    let mut idle_rounds = 0u32;
    let mut all_idle_rounds = 0u32;
    let trace = shared.config.schedtrace;
    let started = clock.now_ns();
    let mut next_trace = trace.map(|p| started + p.as_nanos() as u64);

    loop {
        let mut sleep_for = Some(delay);
        if let (Some(at), Some(_)) = (next_trace, trace) {
            let left = Duration::from_nanos(at.saturating_sub(clock.now_ns()));
            sleep_for = Some(delay.min(left));
        }
        if trace.is_none() && all_idle_rounds >= IDLE_ROUNDS_BEFORE_SLEEP {
            monitor.asleep.store(true, Ordering::Relaxed);
            // Pairs with the fence in `core_busy`.
            fence(Ordering::SeqCst);
            if shared.idle.nidle() == shared.idle.ncores() {
                sleep_for = None;
            } else {
                monitor.asleep.store(false, Ordering::Relaxed);
            }
            all_idle_rounds = 0;
        }
        if !monitor.sleep(sleep_for) {
            return;
        }
        monitor.asleep.store(false, Ordering::Relaxed);

        let now = clock.now_ns();
        let mut progress = false;

        if let (Some(at), Some(period)) = (next_trace, trace) {
            if now >= at {
                eprintln!("{}", trace_line(shared, now - started));
                next_trace = Some(at + period.as_nanos() as u64);
            }
        }

        // 1. The network, if nobody polled lately.
        let last = shared.lastpoll.load(Ordering::Relaxed);
        if last != 0
            && last + FORCE_POLL_AFTER < now
            && shared
                .lastpoll
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let mut batch = Batch::new();
            if shared.driver.io.try_poll(&mut batch) {
                shared.stats.forced_polls.fetch_add(1, Ordering::Relaxed);
                if !batch.is_empty() {
                    inject(&handle, batch);
                }
            }
        }

        // 2. Overdue timers.
        let next = shared.driver.time.next_expiration_ns();
        if next != u64::MAX && next + FORCE_POLL_AFTER < now {
            let mut batch = Batch::new();
            shared.driver.time.process(shared, now, &mut batch);
            if !batch.is_empty() {
                inject(&handle, batch);
            }
        }

        // 3. Machines stuck in one poll.
        machines.clear();
        machines.extend(shared.machines.lock().iter().cloned());
        let mut polling = false;
        for m in &machines {
            let seq = m.poll_seq();
            if seq & 1 == 0 {
                continue; // not inside a task's poll
            }
            polling = true;
            let watch = &m.watch;
            if watch.seq.load(Ordering::Relaxed) != seq {
                // A new poll since the last look: start timing it.
                watch.seq.store(seq, Ordering::Relaxed);
                watch.since.store(now, Ordering::Relaxed);
            } else if now.saturating_sub(watch.since.load(Ordering::Relaxed)) >= STUCK_AFTER {
                if let Some(core) = m.take_core() {
                    shared.stats.handoffs.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "tracing")]
                    tracing::debug!(
                        target: "netpoll::sysmon",
                        stuck_ns = now.saturating_sub(watch.since.load(Ordering::Relaxed)),
                        "a task has held its worker for 10 ms or more: its run queue is handed off"
                    );
                    handle.handoff(core);
                    progress = true;
                }
            }
        }
        machines.clear();

        if progress {
            delay = MIN_DELAY;
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            if idle_rounds > IDLE_ROUNDS_BEFORE_BACKOFF {
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
        if shared.idle.nidle() == shared.idle.ncores() && !polling {
            all_idle_rounds += 1;
        } else {
            all_idle_rounds = 0;
        }
    }
}

/// One `NETPOLL_SCHEDTRACE` line, in the spirit of Go's `schedtrace`.
fn trace_line(shared: &super::Shared, since_start_ns: u64) -> String {
    let m = shared.metrics();
    format!(
        "NETPOLL {}ms: workers={} idle={} spinning={} threads={} parked={} tasks={}/{} \
         polls={} steals={} runqueue={} local={} poller: waits={} nonblocking={} events={} \
         wakeups={} sockets={} timers={} handoffs={} forcedpolls={} blocking={}/{}/{}",
        since_start_ns / 1_000_000,
        m.workers,
        m.idle_workers,
        m.spinning_threads,
        m.threads,
        m.parked_threads,
        m.tasks_alive,
        m.tasks_spawned,
        m.polls,
        m.steals,
        m.global_queue_depth,
        m.local_queue_depth,
        m.poller_waits,
        m.poller_nonblocking_polls,
        m.poller_events,
        m.poller_wakeups,
        m.sockets,
        m.timers_armed,
        m.handoffs,
        m.forced_polls,
        m.blocking_threads,
        m.blocking_idle_threads,
        m.blocking_queue_depth,
    )
}

/// Puts a batch found by the monitor on the global queue and starts cores for it.
fn inject(handle: &Handle, batch: Batch) {
    let n = batch.len();
    handle.shared.inject.splice(batch);
    handle.start_idle(n);
}

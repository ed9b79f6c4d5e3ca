//! Idle cores, parked threads and the spinning count: Go's `pidle`, `midle` and `nmspinning`.
//!
//! A *core* (Go's P) is a run queue plus the right to run tasks; a *machine* (Go's M) is an OS
//! thread. A machine runs tasks only while it holds a core. This module keeps the cores nobody
//! holds, the machines parked on their futex waiting to be handed one, and the number of machines
//! that hold a core and are *spinning* — looking for work to steal.
//!
//! # The no-lost-wake-up rule
//!
//! Whenever a task sits in a queue while a core is idle, some machine must be spinning or about
//! to be started. Two sides cooperate (Go's `proc.go` essay, "Worker thread parking/unparking"):
//!
//! * A **submitter** pushes work, issues a `SeqCst` fence, then reads `nspinning` and `nidle`
//!   ([`Idle::wakep`]). If nobody spins and a core is idle, it starts one spinning machine with
//!   that core. If somebody already spins, that spinner is responsible for the work.
//! * A machine that **releases its core** publishes the idle core (under the lock), issues a
//!   `SeqCst` fence, then re-checks the global queue. A *spinning* machine that gives up first
//!   decrements `nspinning`, fences, and re-checks every queue; on finding work it takes a core
//!   back and spins again.
//!
//! The two fences order "store work; load counters" against "store counters; load work": at
//! least one side sees the other (the store-buffering litmus with `SeqCst` fences on both sides
//! is forbidden), so either the submitter wakes a machine or the releasing machine finds the
//! work. A spinner that finds work and was the last one spinning calls `wakep` again, so that
//! work arriving behind it is not stranded (Go's `resetspinning`).
//!
//! The loom model `tests::loom_idle` runs a releasing machine against a submitter and checks the
//! work is always taken.
//!
//! # Ground rules
//!
//! * `synced` (the lock) owns the idle-core list and the parked-machine list. `nidle` mirrors the
//!   idle-core count: written only under the lock, read without it as a hint for `wakep`.
//! * `nspinning` is changed with read-modify-writes by machines entering or leaving the
//!   spinning state, and by `wakep` on behalf of the machine it starts.
//! * A parked machine waits on its own [`Parker`]; whoever pops it from the list owns the right
//!   to hand it a core through [`Parker::start`].

use crate::loom::{fence, AtomicUsize, Condvar, Mutex, Ordering};

/// What a parked machine is handed when it is woken: a core, and whether it starts spinning (in
/// which case `nspinning` already counts it).
pub(crate) struct Start<C> {
    pub(crate) core: C,
    pub(crate) spinning: bool,
}

pub(crate) struct Idle<C, M> {
    /// Machines that hold a core and look for work to steal.
    nspinning: AtomicUsize,
    /// Length of `synced.cores`.
    nidle: AtomicUsize,
    /// Total number of cores (Go's GOMAXPROCS).
    ncores: usize,
    synced: Mutex<Synced<C, M>>,
}

struct Synced<C, M> {
    cores: Vec<C>,
    machines: Vec<M>,
    shutdown: bool,
}

/// A parked machine's mailbox (Go's `m.park` note plus `m.nextp`).
pub(crate) struct Parker<C> {
    state: Mutex<ParkState<C>>,
    condvar: Condvar,
}

struct ParkState<C> {
    mailbox: Option<Start<C>>,
    shutdown: bool,
}

/// Why [`Parker::park_timeout`] returned.
pub(crate) enum Woken<C> {
    Start(Start<C>),
    Shutdown,
    TimedOut,
}

impl<C> Parker<C> {
    pub(crate) fn new() -> Parker<C> {
        Parker {
            state: Mutex::new(ParkState {
                mailbox: None,
                shutdown: false,
            }),
            condvar: Condvar::new(),
        }
    }

    /// Hands the parked machine a core and wakes it. Only the one who popped the machine from
    /// the idle list may call this, once per park.
    pub(crate) fn start(&self, start: Start<C>) {
        let mut state = self.state.lock();
        debug_assert!(
            state.mailbox.is_none(),
            "a parked machine was started twice"
        );
        state.mailbox = Some(start);
        drop(state);
        self.condvar.notify_one();
    }

    pub(crate) fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.condvar.notify_one();
    }

    /// Blocks until started or shut down.
    pub(crate) fn park(&self) -> Option<Start<C>> {
        let mut state = self.state.lock();
        loop {
            if let Some(start) = state.mailbox.take() {
                return Some(start);
            }
            if state.shutdown {
                return None;
            }
            state = self.condvar.wait(state);
        }
    }

    /// Blocks until started, shut down, or `timeout` passes with neither.
    pub(crate) fn park_timeout(&self, timeout: std::time::Duration) -> Woken<C> {
        let mut state = self.state.lock();
        if state.mailbox.is_none() && !state.shutdown {
            state = self.condvar.wait_timeout(state, timeout);
        }
        if let Some(start) = state.mailbox.take() {
            Woken::Start(start)
        } else if state.shutdown {
            Woken::Shutdown
        } else {
            Woken::TimedOut
        }
    }
}

/// Implemented by the machine handle kept in the parked list.
pub(crate) trait Machine<C>: Clone {
    fn parker(&self) -> &Parker<C>;
    fn same(&self, other: &Self) -> bool;
}

impl<C, M: Machine<C>> Idle<C, M> {
    /// Every core starts idle; the runtime hands them out when it starts its machines.
    pub(crate) fn new(cores: Vec<C>) -> Idle<C, M> {
        let ncores = cores.len();
        Idle {
            nspinning: AtomicUsize::new(0),
            nidle: AtomicUsize::new(ncores),
            ncores,
            synced: Mutex::new(Synced {
                cores,
                machines: Vec::with_capacity(ncores * 2),
                shutdown: false,
            }),
        }
    }

    pub(crate) fn ncores(&self) -> usize {
        self.ncores
    }

    pub(crate) fn nidle(&self) -> usize {
        self.nidle.load(Ordering::Relaxed)
    }

    pub(crate) fn nspinning(&self) -> usize {
        self.nspinning.load(Ordering::Relaxed)
    }

    /// Go's `wakep`: called by a submitter after it queued work. Starts one spinning machine
    /// with an idle core unless one is already spinning. `spawn` starts a new thread when no
    /// parked machine is available (Go's `newm`); it is called without the lock held.
    pub(crate) fn wakep(&self, spawn: impl FnOnce(Start<C>)) {
        // Pairs with the fence in `release_and_recheck`/`stop_spinning` (module docs).
        fence(Ordering::SeqCst);
        if self.nspinning.load(Ordering::Relaxed) != 0 || self.nidle.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self
            .nspinning
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut synced = self.synced.lock();
        let Some(core) = synced.cores.pop() else {
            drop(synced);
            self.nspinning.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        self.nidle.store(synced.cores.len(), Ordering::Relaxed);
        let machine = synced.machines.pop();
        drop(synced);
        let start = Start {
            core,
            spinning: true,
        };
        match machine {
            Some(m) => m.parker().start(start),
            None => spawn(start),
        }
    }

    /// Go's `startIdle(n)`: a poller batch of `n` tasks went to the global queue; start up to `n`
    /// idle cores (non-spinning) to run them.
    pub(crate) fn start_idle(&self, n: usize, mut spawn: impl FnMut(Start<C>)) {
        // The submitter's half of the no-lost-wake-up rule, as in `wakep`.
        fence(Ordering::SeqCst);
        for _ in 0..n {
            if self.nidle.load(Ordering::Relaxed) == 0 {
                return;
            }
            let mut synced = self.synced.lock();
            let Some(core) = synced.cores.pop() else {
                return;
            };
            self.nidle.store(synced.cores.len(), Ordering::Relaxed);
            let machine = synced.machines.pop();
            drop(synced);
            let start = Start {
                core,
                spinning: false,
            };
            match machine {
                Some(m) => m.parker().start(start),
                None => spawn(start),
            }
        }
    }

    /// Hands a core that was taken from a stuck machine to another machine (Go's `handoffp`).
    pub(crate) fn handoff(&self, core: C, spawn: impl FnOnce(Start<C>)) {
        let machine = self.synced.lock().machines.pop();
        let start = Start {
            core,
            spinning: false,
        };
        match machine {
            Some(m) => m.parker().start(start),
            None => spawn(start),
        }
    }

    /// Makes `core` idle. The caller must then run its re-check (module docs) before parking.
    pub(crate) fn release(&self, core: C) {
        let mut synced = self.synced.lock();
        synced.cores.push(core);
        self.nidle.store(synced.cores.len(), Ordering::Relaxed);
        drop(synced);
        // Pairs with the fence in `wakep`.
        fence(Ordering::SeqCst);
    }

    /// Takes an idle core back (after a re-check found work, or after a blocking poll).
    pub(crate) fn try_acquire(&self) -> Option<C> {
        if self.nidle.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut synced = self.synced.lock();
        let core = synced.cores.pop();
        self.nidle.store(synced.cores.len(), Ordering::Relaxed);
        core
    }

    /// Counts the caller as spinning if the bound allows: at most half of the busy cores spin
    /// (Go: `2*nmspinning < gomaxprocs-npidle`), so that spinning never burns more CPU than the
    /// work it looks for.
    pub(crate) fn try_start_spinning(&self) -> bool {
        let busy = self.ncores - self.nidle.load(Ordering::Relaxed).min(self.ncores);
        if 2 * self.nspinning.load(Ordering::Relaxed) >= busy {
            return false;
        }
        self.nspinning.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// A spinning machine found work. Returns true when it was the last spinner, in which case
    /// the caller must call `wakep` (there may be more work than it can take).
    pub(crate) fn found_work_while_spinning(&self) -> bool {
        self.nspinning.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// A spinning machine gives up. The caller must re-check every queue afterwards.
    pub(crate) fn stop_spinning(&self) {
        self.nspinning.fetch_sub(1, Ordering::SeqCst);
        // Pairs with the fence in `wakep`.
        fence(Ordering::SeqCst);
    }

    /// Re-counts a machine that took a core back after `stop_spinning` as spinning.
    pub(crate) fn restart_spinning(&self) {
        self.nspinning.fetch_add(1, Ordering::AcqRel);
    }

    /// Parks `machine` until it is handed a core. Returns `None` at shutdown.
    pub(crate) fn park(&self, machine: &M) -> Option<Start<C>> {
        {
            let mut synced = self.synced.lock();
            if synced.shutdown {
                return None;
            }
            synced.machines.push(machine.clone());
        }
        machine.parker().park()
    }

    /// Like `park`, but gives up after `timeout` if the machine can leave the parked list
    /// before anyone picks it; then returns `Err(())` and the machine may exit (a spare thread
    /// retiring). If somebody popped it meanwhile, it waits for the core it is being handed.
    pub(crate) fn park_or_retire(
        &self,
        machine: &M,
        timeout: std::time::Duration,
    ) -> Result<Option<Start<C>>, ()> {
        {
            let mut synced = self.synced.lock();
            if synced.shutdown {
                return Ok(None);
            }
            synced.machines.push(machine.clone());
        }
        match machine.parker().park_timeout(timeout) {
            Woken::Start(start) => Ok(Some(start)),
            Woken::Shutdown => Ok(None),
            Woken::TimedOut => {
                let mut synced = self.synced.lock();
                if let Some(i) = synced.machines.iter().position(|m| m.same(machine)) {
                    synced.machines.swap_remove(i);
                    return Err(());
                }
                drop(synced);
                // Popped by a waker between the timeout and our lock: a core is on its way.
                Ok(machine.parker().park())
            }
        }
    }

    pub(crate) fn parked_machines(&self) -> usize {
        self.synced.lock().machines.len()
    }

    /// Refuses further parking and wakes every parked machine with `None`.
    pub(crate) fn shutdown(&self) -> Vec<C> {
        let mut synced = self.synced.lock();
        synced.shutdown = true;
        let machines = std::mem::take(&mut synced.machines);
        let cores = std::mem::take(&mut synced.cores);
        self.nidle.store(0, Ordering::Relaxed);
        drop(synced);
        for m in machines {
            m.parker().shutdown();
        }
        cores
    }
}

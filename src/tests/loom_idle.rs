//! Loom models of the idle/park protocol (`sched::idle`): no work is ever stranded while a
//! core is idle.
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=3 cargo test --release
//! --lib --target-dir target/loom loom_idle`.
//!
//! The models use the real [`Idle`] and [`Parker`]; a machine is a [`TestMachine`] around a
//! `Parker`, and the global queue is a counter of queued work items (its `len` hint is all the
//! protocol reads). A machine plays the tail of `worker.rs`'s `find_runnable` step by step:
//! take work; else release the core, re-check the global queue, stop spinning and re-check
//! again, and park. A submitter pushes one item and calls `wakep`.
//!
//! A machine that `wakep` would start on a new thread (no machine was parked) is recorded and
//! run by the model's main thread once the submitter is done; such a machine gives up instead
//! of parking, since nobody would be left to end the model. The main thread then ends the
//! model: if one of its machines took the work, it shuts the idle list down (waking a machine
//! that parked with nothing to do) and joins; otherwise the work is the parked machine's, and
//! joining it without a shutdown either sees it take the work or makes loom report a deadlock
//! (the machine parked, nobody will ever wake it: the lost wake-up this protocol prevents).
//!
//! As in `loom_queue`, each model runs twice, with the machine and the submitter spawned in
//! either order, so that loom's search starts from both sides (tokio-rs/loom#166).
//!
//! # Bookkeeping outside the model
//!
//! The list of machines to start uses a `std` mutex: it observes the model rather than being
//! part of it (loom runs its threads one at a time, and no loom operation happens while it is
//! held).

use std::sync::Mutex as StdMutex;

use crate::loom::{thread, Arc, AtomicUsize, Ordering};
use crate::sched::idle::{Idle, Machine, Parker, Start};

/// A core is only its number here: the model is about who holds it, not what it holds.
type Core = usize;

/// A machine that can park: a handle to its parker.
#[derive(Clone)]
struct TestMachine(Arc<Parker<Core>>);

impl TestMachine {
    fn new() -> TestMachine {
        TestMachine(Arc::new(Parker::new()))
    }
}

impl Machine<Core> for TestMachine {
    fn parker(&self) -> &Parker<Core> {
        &self.0
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The global queue, reduced to its length. Orderings as in `inject.rs`: the length is
/// published with `Release` (there, under the queue's lock) and read with `Acquire`.
struct Queue(AtomicUsize);

impl Queue {
    fn push(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn is_empty(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    /// Takes one item if there is one.
    fn take(&self) -> bool {
        let mut n = self.0.load(Ordering::Acquire);
        while n > 0 {
            match self
                .0
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
        false
    }

    fn len(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

struct Model {
    idle: Idle<Core, TestMachine>,
    queue: Queue,
    /// Machines `wakep` asked to start on a new thread (Go's `newm`).
    to_start: StdMutex<Vec<Start<Core>>>,
}

impl Model {
    fn new(cores: usize) -> Arc<Model> {
        Arc::new(Model {
            idle: Idle::new((0..cores).collect()),
            queue: Queue(AtomicUsize::new(0)),
            to_start: StdMutex::new(Vec::new()),
        })
    }

    fn wakep(&self) {
        self.idle
            .wakep(|start| self.to_start.lock().unwrap().push(start));
    }

    /// The submitter: queue one item, then Go's `wakep`.
    fn submit(&self) {
        self.queue.push();
        self.wakep();
    }

    /// A machine holding a core, as `Worker::find_runnable` runs it once the local sources
    /// are empty. Returns whether it took the work. `me` is `None` for a machine that gives up
    /// instead of parking (see the module docs).
    fn run_machine(&self, me: Option<&TestMachine>, mut start: Start<Core>) -> bool {
        loop {
            if self.queue.take() {
                // Go's `resetspinning`: the last spinner to find work starts another.
                if start.spinning && self.idle.found_work_while_spinning() {
                    self.wakep();
                }
                return true; // it keeps its core to run the work
            }
            // Nothing: give the core back, then re-check (idle.rs, "no lost wake-up").
            let was_spinning = start.spinning;
            self.idle.release(start.core);
            if !self.queue.is_empty() {
                if let Some(core) = self.idle.try_acquire() {
                    start = Start {
                        core,
                        spinning: was_spinning,
                    };
                    continue;
                }
            }
            if was_spinning {
                self.idle.stop_spinning();
                if !self.queue.is_empty() {
                    if let Some(core) = self.idle.try_acquire() {
                        self.idle.restart_spinning();
                        start = Start {
                            core,
                            spinning: true,
                        };
                        continue;
                    }
                }
            }
            let Some(me) = me else {
                return false;
            };
            match self.idle.park(me) {
                Some(s) => start = s,
                None => return false, // shut down
            }
        }
    }

    /// Runs every machine `wakep` asked for (and any they ask for in turn). Returns how many
    /// took work.
    fn run_started(&self) -> usize {
        let mut took = 0;
        loop {
            let Some(start) = self.to_start.lock().unwrap().pop() else {
                return took;
            };
            took += usize::from(self.run_machine(None, start));
        }
    }
}

/// Which thread is spawned first (see the module docs).
#[derive(Clone, Copy, Debug)]
enum Order {
    MachineFirst,
    SubmitterFirst,
}

/// One machine holding a core (spinning or not) and looking for work, against one submitter;
/// `cores` in all, the others idle at the start.
fn machine_against_submitter(cores: usize, spinning: bool, order: Order) {
    let model = Model::new(cores);
    let core = model.idle.try_acquire().expect("a core for the machine");
    if spinning {
        assert!(model.idle.try_start_spinning(), "a busy core may spin");
    }
    let me = TestMachine::new();
    let start = Start { core, spinning };

    let spawn_machine = {
        let model = model.clone();
        move || thread::spawn(move || model.run_machine(Some(&me), start))
    };
    let spawn_submitter = {
        let model = model.clone();
        move || thread::spawn(move || model.submit())
    };
    let (machine, submitter) = match order {
        Order::MachineFirst => {
            let m = spawn_machine();
            (m, spawn_submitter())
        }
        Order::SubmitterFirst => {
            let s = spawn_submitter();
            (spawn_machine(), s)
        }
    };

    submitter.join().unwrap();
    let started_took = model.run_started();
    if started_took > 0 {
        // The work is done; release a machine that parked with nothing to do.
        drop(model.idle.shutdown());
    }
    // Otherwise the work is the machine's: it must take it, or stay parked and deadlock.
    let machine_took = machine.join().unwrap();
    // A machine that found the work while spinning may have asked for one more.
    let late_took = model.run_started();

    assert_eq!(
        started_took + usize::from(machine_took) + late_took,
        1,
        "the work was taken exactly once"
    );
    assert_eq!(model.queue.len(), 0);
    assert_eq!(
        model.idle.nspinning(),
        0,
        "a machine stayed counted as spinning"
    );
}

fn both_orders(body: fn(Order)) {
    for order in [Order::MachineFirst, Order::SubmitterFirst] {
        loom::model(move || body(order));
    }
}

/// A machine releasing the only core races a submitter: either the submitter sees the idle
/// core and starts a machine, or the releasing machine's re-check sees the work.
#[test]
fn loom_idle_releasing_machine_against_submitter() {
    both_orders(|order| machine_against_submitter(1, false, order));
}

/// A spinning machine gives up while work is submitted: either the submitter sees nobody
/// spinning and starts a machine, or the spinner's re-check after `stop_spinning` sees the work.
#[test]
fn loom_idle_spinning_machine_stops_while_work_is_submitted() {
    both_orders(|order| machine_against_submitter(1, true, order));
}

/// As above with a second, idle core that the submitter's `wakep` may hand to a new machine
/// while the spinner is still counted, or after it stopped.
#[test]
fn loom_idle_spinning_machine_stops_while_work_is_submitted_two_cores() {
    both_orders(|order| machine_against_submitter(2, true, order));
}

/// A parked machine is woken through its parker with the core `wakep` pops for it.
#[test]
fn loom_idle_parked_machine_is_started_by_wakep() {
    loom::model(|| {
        let model = Model::new(1);
        let me = TestMachine::new();
        // The only core is idle; the machine parks without one, racing the submitter.
        let m = {
            let model = model.clone();
            let me = me.clone();
            thread::spawn(move || match model.idle.park(&me) {
                Some(start) => model.run_machine(Some(&me), start),
                None => false,
            })
        };
        let s = {
            let model = model.clone();
            thread::spawn(move || model.submit())
        };
        s.join().unwrap();
        let started_took = model.run_started();
        if started_took > 0 {
            drop(model.idle.shutdown());
        }
        let took = m.join().unwrap();
        let late_took = model.run_started();
        assert_eq!(started_took + usize::from(took) + late_took, 1);
        assert_eq!(model.queue.len(), 0);
        assert_eq!(model.idle.nspinning(), 0);
    });
}

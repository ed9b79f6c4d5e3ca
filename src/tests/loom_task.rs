//! Loom models of the task state machine (`sched/task`): wakes, completion, the join handle,
//! abort and shutdown racing each other across threads.
//!
//! Every model checks that the future is polled at most once at a time and never after it
//! completed, that futures and outputs are dropped exactly once (drop counters), and that
//! every task cell is freed: each cell holds a clone of the scheduler's `loom::sync::Arc`,
//! which loom reports as leaked otherwise. Accesses to the cell's `UnsafeCell`s (stage, join
//! waker, list links) are tracked by loom, so a data race on them fails the model.
//!
//! ```text
//! RUSTFLAGS="--cfg loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --lib --target-dir target/loom loom_task
//! ```
//!
//! (with debug assertions, so the state machine's own `debug_assert!`s are checked too).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::loom::{thread, Arc, AtomicBool, AtomicUsize, Mutex, Ordering::SeqCst};
use crate::sched::task::{unowned, Id, JoinHandle, Notified, OwnedTasks, Schedule, Task};

#[derive(Clone)]
struct Sched(Arc<Inner>);

struct Inner {
    queue: Mutex<VecDeque<Notified<Sched>>>,
    owned: OwnedTasks<Sched>,
}

impl Schedule for Sched {
    fn schedule(&self, task: Notified<Self>) {
        self.0.queue.lock().push_back(task);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.0.owned.remove(task)
    }
}

impl Sched {
    fn new() -> Sched {
        Sched(Arc::new(Inner {
            queue: Mutex::new(VecDeque::new()),
            owned: OwnedTasks::new(),
        }))
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (handle, notified) = self.0.owned.bind(future, self.clone(), Id::next());
        self.0.queue.lock().extend(notified);
        handle
    }

    fn run_all(&self) {
        loop {
            let next = self.0.queue.lock().pop_front();
            match next {
                Some(task) => task.run(),
                None => break,
            }
        }
    }
}

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Polls: `Pending` (keeping the waker in `slot`) until `open`, then `Ready` with a tracked
/// output. Asserts it is never polled concurrently nor after completion.
struct Probe {
    open: Arc<AtomicBool>,
    slot: Arc<Mutex<Option<Waker>>>,
    polls: Arc<AtomicUsize>,
    in_poll: AtomicBool,
    done: bool,
    output_drops: Arc<AtomicUsize>,
    _drop: Tracked,
}

struct Counters {
    open: Arc<AtomicBool>,
    slot: Arc<Mutex<Option<Waker>>>,
    polls: Arc<AtomicUsize>,
    future_drops: Arc<AtomicUsize>,
    output_drops: Arc<AtomicUsize>,
}

fn probe() -> (Probe, Counters) {
    let c = Counters {
        open: Arc::new(AtomicBool::new(false)),
        slot: Arc::new(Mutex::new(None)),
        polls: Arc::new(AtomicUsize::new(0)),
        future_drops: Arc::new(AtomicUsize::new(0)),
        output_drops: Arc::new(AtomicUsize::new(0)),
    };
    let p = Probe {
        open: c.open.clone(),
        slot: c.slot.clone(),
        polls: c.polls.clone(),
        in_poll: AtomicBool::new(false),
        done: false,
        output_drops: c.output_drops.clone(),
        _drop: Tracked(c.future_drops.clone()),
    };
    (p, c)
}

impl Future for Probe {
    type Output = Tracked;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Tracked> {
        assert!(!self.done, "polled after completion");
        assert!(!self.in_poll.swap(true, SeqCst), "polled concurrently");
        self.polls.fetch_add(1, SeqCst);
        // Register first, then check: a waker set after the check could be missed.
        *self.slot.lock() = Some(cx.waker().clone());
        let ready = self.open.load(SeqCst);
        self.in_poll.store(false, SeqCst);
        if ready {
            self.done = true;
            Poll::Ready(Tracked(self.output_drops.clone()))
        } else {
            Poll::Pending
        }
    }
}

impl Counters {
    fn take_waker(&self) -> Waker {
        self.slot.lock().take().expect("no waker registered")
    }
}

fn poll_handle<T>(
    handle: &mut JoinHandle<T>,
    waker: &Waker,
) -> Poll<Result<T, crate::sched::task::JoinError>> {
    Pin::new(handle).poll(&mut Context::from_waker(waker))
}

/// A waker that does nothing, for polls whose wake-up the model does not need.
fn noop_waker() -> Waker {
    use std::task::{RawWaker, RawWakerVTable};
    const VTABLE: RawWakerVTable =
        RawWakerVTable::new(|p| RawWaker::new(p, &VTABLE), |_| {}, |_| {}, |_| {});
    // SAFETY: the vtable's functions ignore the data pointer and do nothing.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// Polls `handle` until it is ready, blocking on a condition variable between polls. A lost
/// join wake-up leaves this thread blocked forever, which loom reports as a deadlock.
fn wait_for<T>(handle: &mut JoinHandle<T>) -> Result<T, crate::sched::task::JoinError> {
    // loom's mutex and condvar inside a std `Arc`: the wake-up must be visible to loom as
    // synchronisation (a real wake-up happens-before the woken poll); the `Arc` only keeps
    // them alive.
    struct Signal {
        woken: Mutex<bool>,
        cv: crate::loom::Condvar,
    }
    impl std::task::Wake for Signal {
        fn wake(self: std::sync::Arc<Self>) {
            *self.woken.lock() = true;
            self.cv.notify_one();
        }
    }
    let signal = std::sync::Arc::new(Signal {
        woken: Mutex::new(false),
        cv: crate::loom::Condvar::new(),
    });
    let waker = Waker::from(signal.clone());
    loop {
        if let Poll::Ready(out) = poll_handle(handle, &waker) {
            return out;
        }
        let mut woken = signal.woken.lock();
        while !*woken {
            woken = signal.cv.wait(woken);
        }
        *woken = false;
    }
}

/// A wake by another thread races the poll that completes the task: the task is polled
/// exactly twice, never queued again after completing, and freed.
#[test]
fn loom_task_wake_racing_completion() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let mut handle = sched.spawn(future);
        sched.run_all(); // first poll: registers its waker
        c.open.store(true, SeqCst);
        let waker = c.take_waker();
        let other = waker.clone();

        let t = thread::spawn(move || other.wake());
        waker.wake();
        sched.run_all();
        t.join().unwrap();
        sched.run_all();

        assert_eq!(c.polls.load(SeqCst), 2);
        assert!(matches!(
            poll_handle(&mut handle, &noop_waker()),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(c.future_drops.load(SeqCst), 1);
        assert_eq!(c.output_drops.load(SeqCst), 1);
        drop(handle);
    });
}

/// A wake arrives while the task is being polled and has just registered its waker: it
/// must be re-queued (not lost) and polled again, never concurrently.
#[test]
fn loom_task_wake_during_poll_is_not_lost() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let handle = sched.spawn(future);
        let (open, slot) = (c.open.clone(), c.slot.clone());

        let t = thread::spawn(move || {
            open.store(true, SeqCst);
            let waker = slot.lock().take();
            if let Some(w) = waker {
                w.wake();
            }
        });
        sched.run_all();
        t.join().unwrap();
        sched.run_all();

        assert!(handle.is_finished(), "a wake-up was lost");
        assert!(c.polls.load(SeqCst) <= 2);
        drop(handle);
        assert_eq!(c.output_drops.load(SeqCst), 1);
        assert_eq!(c.future_drops.load(SeqCst), 1);
    });
}

/// The `JoinHandle` is dropped on another thread while the task completes: the output is
/// dropped exactly once, by one side or the other.
#[test]
fn loom_task_join_handle_drop_racing_completion() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        c.open.store(true, SeqCst);
        let handle = sched.spawn(future);

        let t = thread::spawn(move || drop(handle));
        sched.run_all();
        t.join().unwrap();

        assert_eq!(c.output_drops.load(SeqCst), 1);
        assert_eq!(c.future_drops.load(SeqCst), 1);
    });
}

/// The `JoinHandle` registers, then replaces, its waker while the task completes: the join
/// waker protocol must deliver the output with no lost wake-up and no race on the slot.
#[test]
fn loom_task_join_waker_racing_completion() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        c.open.store(true, SeqCst);
        let mut handle = sched.spawn(future);

        let t = thread::spawn(move || {
            // First with a throwaway waker, then with a flag waker: a replacement.
            let out = match poll_handle(&mut handle, &noop_waker()) {
                Poll::Ready(out) => out,
                Poll::Pending => wait_for(&mut handle),
            };
            assert!(out.is_ok());
        });
        sched.run_all();
        t.join().unwrap();

        assert_eq!(c.output_drops.load(SeqCst), 1);
        assert_eq!(c.future_drops.load(SeqCst), 1);
    });
}

/// `abort` on one thread races a wake on another while the scheduler runs the queue: the
/// future is dropped exactly once, polled at most twice and never after that, and the
/// handle sees either the output or a cancellation.
#[test]
fn loom_task_abort_racing_wake_and_run() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let handle = sched.spawn(future);
        sched.run_all(); // first poll: registers its waker
        c.open.store(true, SeqCst);
        let waker = c.take_waker();

        let aborter = thread::spawn(move || {
            handle.abort();
            handle
        });
        let waker_thread = thread::spawn(move || waker.wake());
        sched.run_all();
        let mut handle = aborter.join().unwrap();
        waker_thread.join().unwrap();
        sched.run_all();

        assert!(handle.is_finished());
        assert!(c.polls.load(SeqCst) <= 2);
        assert_eq!(c.future_drops.load(SeqCst), 1);
        match poll_handle(&mut handle, &noop_waker()) {
            Poll::Ready(Ok(_)) => assert_eq!(c.polls.load(SeqCst), 2),
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            Poll::Pending => panic!("finished task not ready"),
        }
        drop(handle);
        assert_eq!(c.output_drops.load(SeqCst), c.polls.load(SeqCst) - 1);
    });
}

/// An unowned task (no list reference): the last reference is a waker dropped on another
/// thread, racing the completion and the `JoinHandle`'s drop. The cell is freed exactly once.
#[test]
fn loom_task_waker_drop_racing_last_reference() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let (notified, handle) = unowned(future, sched.clone(), Id::next());
        notified.run(); // registers its waker
        c.open.store(true, SeqCst);
        let waker = c.take_waker();
        let other = waker.clone();

        let t = thread::spawn(move || drop(other));
        waker.wake();
        sched.run_all();
        drop(handle);
        t.join().unwrap();

        assert_eq!(c.future_drops.load(SeqCst), 1);
        assert_eq!(c.output_drops.load(SeqCst), 1);
    });
}

/// Runtime shutdown on another thread races a worker polling a self-waking task: the task is
/// cancelled once (by whichever side holds it), its future dropped once, and later spawns
/// are refused.
#[test]
fn loom_task_shutdown_racing_run() {
    loom::model(|| {
        let sched = Sched::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let d = Tracked(drops.clone());
        let mut handle = sched.spawn(std::future::poll_fn(move |cx| {
            let _keep = &d;
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        }));

        let s = sched.clone();
        let t = thread::spawn(move || s.0.owned.close_and_shutdown_all());
        // Run twice: the task re-queues itself until the shutdown is seen.
        for _ in 0..2 {
            let next = sched.0.queue.lock().pop_front();
            if let Some(task) = next {
                task.run();
            }
        }
        t.join().unwrap();
        sched.run_all();

        assert_eq!(drops.load(SeqCst), 1);
        assert!(
            matches!(poll_handle(&mut handle, &noop_waker()), Poll::Ready(Err(e)) if e.is_cancelled())
        );
        let late = sched.spawn(async {});
        assert!(late.is_finished());
    });
}

/// A spawn on one thread races the closing of the owned list on another: the task either is
/// refused (its future dropped at once) or is linked and then cancelled by the close; never
/// left running or leaked.
#[test]
fn loom_task_bind_racing_close() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let s = sched.clone();
        let spawner = thread::spawn(move || s.spawn(future));
        sched.0.owned.close_and_shutdown_all();
        let mut handle = spawner.join().unwrap();
        sched.run_all(); // a queued `Notified` now only drops its reference

        assert_eq!(c.polls.load(SeqCst), 0);
        assert_eq!(c.future_drops.load(SeqCst), 1);
        assert!(
            matches!(poll_handle(&mut handle, &noop_waker()), Poll::Ready(Err(e)) if e.is_cancelled())
        );
        assert!(sched.0.owned.is_empty());
    });
}

/// The poller's batch path (`take_notified`) races an ordinary wake of the same task from
/// another thread: exactly one of them queues it, and the task completes once.
#[test]
fn loom_task_take_notified_racing_wake() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let mut handle = sched.spawn(future);
        sched.run_all(); // first poll: registers its waker
        c.open.store(true, SeqCst);
        let waker = c.take_waker();
        let other = waker.clone();

        let t = thread::spawn(move || other.wake());
        let taken = match crate::sched::task::take_notified::<Sched>(waker) {
            Ok(taken) => taken,
            Err(_) => panic!("our own waker was not recognised"),
        };
        t.join().unwrap();
        let queued = sched.0.queue.lock().len();
        assert_eq!(
            queued + usize::from(taken.is_some()),
            1,
            "queued twice, or lost"
        );
        if let Some(n) = taken {
            n.run();
        }
        sched.run_all();

        assert_eq!(c.polls.load(SeqCst), 2);
        assert!(matches!(
            poll_handle(&mut handle, &noop_waker()),
            Poll::Ready(Ok(_))
        ));
    });
}

/// A waiting `JoinHandle` (blocked on its join waker) sees the task aborted on one thread
/// while it is woken and run on another: the handle is woken exactly when the task finishes,
/// and gets the output or a cancellation.
#[test]
fn loom_task_join_wait_racing_abort_and_run() {
    loom::model(|| {
        let sched = Sched::new();
        let (future, c) = probe();
        let handle = sched.spawn(future);
        sched.run_all(); // first poll: registers its waker
        c.open.store(true, SeqCst);
        let waker = c.take_waker();
        let handle = Arc::new(Mutex::new(Some(handle)));

        let h = handle.clone();
        let aborter = thread::spawn(move || {
            if let Some(handle) = h.lock().as_ref() {
                handle.abort();
            }
        });
        let h = handle.clone();
        let joiner = thread::spawn(move || {
            let mut handle = h.lock().take().unwrap();
            wait_for(&mut handle).is_ok()
        });
        waker.wake();
        sched.run_all();
        aborter.join().unwrap();
        // The abort may have queued the task after the queue was found empty above.
        sched.run_all();
        let completed = joiner.join().unwrap();

        assert_eq!(c.future_drops.load(SeqCst), 1);
        assert_eq!(completed, c.polls.load(SeqCst) == 2);
    });
}

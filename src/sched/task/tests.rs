//! Lifecycle tests of the task cell, driven by a scheduler that is a queue run by hand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::*;

// ---- allocation counting ----------------------------------------------------------------

/// Counts allocations per thread, so a test can measure exactly what one code path allocates
/// while other tests run on other threads. The lib's test binary can have only one global
/// allocator: this is it.
struct CountingAlloc;

std::thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count_alloc() {
    // `try_with`: the slot may be gone while a thread exits.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a const-initialised
// thread-local `Cell` without destructor, which does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (ALLOCS.with(Cell::get) - before, r)
}

// ---- the test scheduler -------------------------------------------------------------------

#[derive(Clone)]
struct Sched(Arc<SchedInner>);

struct SchedInner {
    queue: Mutex<VecDeque<Notified<Sched>>>,
    scheduled: AtomicUsize,
    yielded: AtomicUsize,
    released: AtomicUsize,
    owned: OwnedTasks<Sched>,
}

impl Schedule for Sched {
    fn schedule(&self, task: Notified<Self>) {
        self.0.scheduled.fetch_add(1, SeqCst);
        self.0.queue.lock().unwrap().push_back(task);
    }

    fn yield_now(&self, task: Notified<Self>) {
        self.0.yielded.fetch_add(1, SeqCst);
        self.0.queue.lock().unwrap().push_back(task);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.0.released.fetch_add(1, SeqCst);
        self.0.owned.remove(task)
    }
}

impl Sched {
    fn new() -> Sched {
        Sched(Arc::new(SchedInner {
            // Room reserved so that queueing does not allocate in the allocation test.
            queue: Mutex::new(VecDeque::with_capacity(16)),
            scheduled: AtomicUsize::new(0),
            yielded: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            owned: OwnedTasks::new(),
        }))
    }

    /// Binds and queues the task, like `spawn`.
    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (handle, notified) = self.0.owned.bind(future, self.clone(), Id::next());
        if let Some(n) = notified {
            self.0.queue.lock().unwrap().push_back(n);
        }
        handle
    }

    fn pop(&self) -> Option<Notified<Sched>> {
        self.0.queue.lock().unwrap().pop_front()
    }

    /// Runs queued tasks until the queue is empty; returns how many runs.
    fn run_all(&self) -> usize {
        let mut n = 0;
        while let Some(task) = self.pop() {
            task.run();
            n += 1;
        }
        n
    }

    fn queued(&self) -> usize {
        self.0.queue.lock().unwrap().len()
    }

    fn scheduled(&self) -> usize {
        self.0.scheduled.load(SeqCst)
    }

    fn yielded(&self) -> usize {
        self.0.yielded.load(SeqCst)
    }

    /// Every task cell holds a clone of the scheduler: back to one means every cell is freed.
    fn live_cells(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A waker that counts its wakes.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (w.clone(), Waker::from(w))
}

fn poll_with<T>(handle: &mut JoinHandle<T>, waker: &Waker) -> Poll<Result<T, JoinError>> {
    Pin::new(handle).poll(&mut Context::from_waker(waker))
}

fn poll_once<T>(handle: &mut JoinHandle<T>) -> Poll<Result<T, JoinError>> {
    poll_with(handle, &counting_waker().1)
}

/// A future that is pending until opened, keeping its last waker where the test can reach it.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<(bool, Option<Waker>)>>);

impl Gate {
    fn open(&self) {
        let waker = {
            let mut g = self.0.lock().unwrap();
            g.0 = true;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn take_waker(&self) -> Waker {
        self.0
            .lock()
            .unwrap()
            .1
            .take()
            .expect("the task has not registered a waker")
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let gate = self.clone();
        std::future::poll_fn(move |cx| {
            let mut g = gate.0.lock().unwrap();
            if g.0 {
                Poll::Ready(())
            } else {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// A future that is always pending and counts its polls and drops.
struct Forever {
    polls: Arc<AtomicUsize>,
    _drop: Tracked,
}

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, SeqCst);
        Poll::Pending
    }
}

// ---- spawn, run, join ---------------------------------------------------------------------

#[test]
fn spawned_task_runs_and_join_handle_returns_its_output() {
    let sched = Sched::new();
    let mut handle = sched.spawn(async { 6 * 7 });
    assert!(!handle.is_finished());
    assert!(poll_once(&mut handle).is_pending());
    assert_eq!(sched.run_all(), 1);
    assert!(handle.is_finished());
    assert_eq!(sched.0.owned.len(), 0);
    assert_eq!(sched.0.released.load(SeqCst), 1);
    match poll_once(&mut handle) {
        Poll::Ready(Ok(v)) => assert_eq!(v, 42),
        other => panic!("unexpected {other:?}"),
    }
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn output_is_delivered_once_and_dropped_once() {
    let sched = Sched::new();
    let drops = counter();
    let d = drops.clone();
    let mut handle = sched.spawn(async move { Tracked(d) });
    sched.run_all();
    let out = match poll_once(&mut handle) {
        Poll::Ready(Ok(out)) => out,
        _ => panic!("output not ready"),
    };
    assert_eq!(drops.load(SeqCst), 0);
    drop(out);
    assert_eq!(drops.load(SeqCst), 1);
    let again = panic::catch_unwind(AssertUnwindSafe(|| poll_once(&mut handle)));
    assert!(
        again.is_err(),
        "a second poll after the output was taken must panic"
    );
    drop(handle);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn join_handle_dropped_before_completion_detaches_and_output_is_dropped_at_completion() {
    let sched = Sched::new();
    let gate = Gate::default();
    let (fut_drops, out_drops) = (counter(), counter());
    let wait = gate.wait();
    let (fd, od) = (Tracked(fut_drops.clone()), out_drops.clone());
    let handle = sched.spawn(async move {
        let _fd = fd;
        wait.await;
        Tracked(od)
    });
    sched.run_all();
    drop(handle);
    assert_eq!(fut_drops.load(SeqCst), 0, "a detached task keeps running");
    gate.open();
    assert_eq!(sched.run_all(), 1);
    assert_eq!(fut_drops.load(SeqCst), 1);
    assert_eq!(
        out_drops.load(SeqCst),
        1,
        "nobody wants the output: the completer drops it"
    );
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn join_handle_dropped_after_completion_drops_the_output() {
    let sched = Sched::new();
    let drops = counter();
    let d = drops.clone();
    let handle = sched.spawn(async move { Tracked(d) });
    sched.run_all();
    assert_eq!(drops.load(SeqCst), 0, "the output waits for its handle");
    drop(handle);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn join_handle_waker_is_woken_on_completion_and_replaced_by_a_newer_one() {
    let sched = Sched::new();
    let gate = Gate::default();
    let wait = gate.wait();
    let mut handle = sched.spawn(wait);
    sched.run_all();
    let (a, waker_a) = counting_waker();
    let (b, waker_b) = counting_waker();
    assert!(poll_with(&mut handle, &waker_a).is_pending());
    assert!(
        poll_with(&mut handle, &waker_a).is_pending(),
        "same waker: kept"
    );
    assert!(
        poll_with(&mut handle, &waker_b).is_pending(),
        "new waker: replaces"
    );
    gate.open();
    sched.run_all();
    assert_eq!(a.0.load(SeqCst), 0);
    assert_eq!(b.0.load(SeqCst), 1);
    assert!(matches!(
        poll_with(&mut handle, &waker_b),
        Poll::Ready(Ok(()))
    ));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
    assert_eq!(Arc::strong_count(&a), 2, "the replaced waker was dropped");
    assert_eq!(
        Arc::strong_count(&b),
        2,
        "the join waker was dropped with the handle"
    );
}

#[test]
fn unowned_task_runs_without_release() {
    let sched = Sched::new();
    let (notified, mut handle) = unowned(async { "done" }, sched.clone(), Id::next());
    notified.run();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok("done"))));
    assert_eq!(sched.0.released.load(SeqCst), 0);
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn ids_are_distinct_and_displayed_as_numbers() {
    let sched = Sched::new();
    let a = sched.spawn(async {});
    let b = sched.spawn(async {});
    assert_ne!(a.id(), b.id());
    assert_eq!(a.id().to_string(), a.id().as_u64().to_string());
    let notified = sched.pop().unwrap();
    assert_eq!(notified.id(), a.id());
    assert!(format!("{a:?}").contains("JoinHandle"));
    notified.run();
    sched.run_all();
}

#[test]
fn notified_round_trips_through_a_raw_task_and_its_queue_link() {
    let sched = Sched::new();
    let _a = sched.spawn(async {});
    let _b = sched.spawn(async {});
    let (na, nb) = (sched.pop().unwrap(), sched.pop().unwrap());
    let (ra, rb) = (na.into_raw(), nb.into_raw());
    // SAFETY: we hold both tasks' `Notified` references (as raw), so the links are ours.
    unsafe {
        assert_eq!(ra.queue_next(), None);
        ra.set_queue_next(Some(rb));
        assert_eq!(ra.queue_next(), Some(rb));
        ra.set_queue_next(None);
    }
    // SAFETY: each came from `Notified::<Sched>::into_raw` and is taken back once.
    let (na, nb) = unsafe {
        (
            Notified::<Sched>::from_raw(ra),
            Notified::<Sched>::from_raw(rb),
        )
    };
    na.run();
    nb.run();
    assert_eq!(sched.0.owned.len(), 0);
}

// ---- wakes --------------------------------------------------------------------------------

#[test]
fn wake_from_another_thread_schedules_the_task_once() {
    let sched = Sched::new();
    let gate = Gate::default();
    let polls = counter();
    let (wait, p) = (gate.wait(), polls.clone());
    let mut handle = sched.spawn(async move {
        p.fetch_add(1, SeqCst);
        wait.await;
    });
    sched.run_all();
    let waker = gate.take_waker();
    let w2 = waker.clone();
    std::thread::spawn(move || {
        w2.wake_by_ref();
        w2.wake();
    })
    .join()
    .unwrap();
    waker.wake_by_ref();
    assert_eq!(
        sched.scheduled(),
        1,
        "wakes of an already queued task are no-ops"
    );
    assert_eq!(sched.queued(), 1);
    drop(waker);
    gate.open();
    sched.run_all();
    assert_eq!(
        polls.load(SeqCst),
        1,
        "the async block ran once; only the gate was re-polled"
    );
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok(()))));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn self_wake_during_poll_goes_to_yield_now_after_the_poll() {
    let sched = Sched::new();
    let polls = counter();
    let p = polls.clone();
    let in_poll = Arc::new(AtomicBool::new(false));
    let ip = in_poll.clone();
    let mut handle = sched.spawn(std::future::poll_fn(move |cx| {
        assert!(!ip.swap(true, SeqCst), "polled concurrently");
        let n = p.fetch_add(1, SeqCst);
        let r = match n {
            0 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            1 => {
                // A wake by value through a clone, twice: still one re-queue.
                let (a, b) = (cx.waker().clone(), cx.waker().clone());
                a.wake();
                b.wake();
                Poll::Pending
            }
            _ => Poll::Ready(n),
        };
        ip.store(false, SeqCst);
        r
    }));
    let first = sched.pop().unwrap();
    first.run();
    assert_eq!(sched.yielded(), 1);
    assert_eq!(sched.scheduled(), 0);
    assert_eq!(sched.queued(), 1);
    sched.run_all();
    assert_eq!(sched.yielded(), 2);
    assert_eq!(sched.scheduled(), 0);
    assert_eq!(polls.load(SeqCst), 3);
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok(2))));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn waker_kept_after_completion_is_harmless_and_frees_the_cell_last() {
    let sched = Sched::new();
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let s = slot.clone();
    let handle = sched.spawn(std::future::poll_fn(move |cx| {
        *s.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    sched.run_all();
    drop(handle);
    assert_eq!(sched.live_cells(), 1, "the kept waker holds the cell");
    let waker = slot.lock().unwrap().take().unwrap();
    waker.wake_by_ref();
    let clone = waker.clone();
    clone.wake();
    assert_eq!(
        sched.scheduled(),
        0,
        "a completed task is never queued again"
    );
    assert_eq!(sched.queued(), 0);
    drop(waker);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn take_notified_performs_the_wake_without_scheduling() {
    let sched = Sched::new();
    let gate = Gate::default();
    let wait = gate.wait();
    let mut handle = sched.spawn(wait);
    sched.run_all();

    // Our waker, task idle: the caller gets the `Notified` to queue.
    let waker = gate.take_waker();
    let second = waker.clone();
    let notified = take_notified::<Sched>(waker)
        .expect("our waker")
        .expect("idle task");
    assert_eq!(notified.id(), handle.id());
    assert_eq!(sched.scheduled(), 0);
    // Our waker, task already notified: nothing to queue.
    assert!(take_notified::<Sched>(second).expect("our waker").is_none());

    // A waker of a task of another scheduler type is foreign.
    let other = crate::sched::blocking::BlockingSchedule;
    let (n, h) = unowned(
        std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())),
        other,
        Id::next(),
    );
    n.run();
    let mut h = h;
    let other_waker = match poll_once(&mut h) {
        Poll::Ready(Ok(w)) => w,
        _ => panic!("blocking-typed task did not complete"),
    };
    assert!(take_notified::<Sched>(other_waker).is_err());

    // A waker that is not a task's at all.
    let (_, foreign) = counting_waker();
    assert!(take_notified::<Sched>(foreign).is_err());

    gate.open();
    notified.run();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok(()))));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

// ---- abort --------------------------------------------------------------------------------

#[test]
fn abort_of_an_idle_task_schedules_it_and_the_run_drops_the_future() {
    let sched = Sched::new();
    let (polls, drops) = (counter(), counter());
    let mut handle = sched.spawn(Forever {
        polls: polls.clone(),
        _drop: Tracked(drops.clone()),
    });
    sched.run_all();
    handle.abort();
    handle.abort();
    assert_eq!(sched.scheduled(), 1);
    assert_eq!(
        drops.load(SeqCst),
        0,
        "abort does not drop the future itself"
    );
    sched.run_all();
    assert_eq!(
        polls.load(SeqCst),
        1,
        "a cancelled task is not polled again"
    );
    assert_eq!(drops.load(SeqCst), 1);
    match poll_once(&mut handle) {
        Poll::Ready(Err(e)) => {
            assert!(e.is_cancelled());
            assert_eq!(e.id(), handle.id());
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn abort_of_a_queued_task_cancels_it_when_it_runs() {
    let sched = Sched::new();
    let (polls, drops) = (counter(), counter());
    let mut handle = sched.spawn(Forever {
        polls: polls.clone(),
        _drop: Tracked(drops.clone()),
    });
    handle.abort();
    assert_eq!(sched.scheduled(), 0, "already queued");
    sched.run_all();
    assert_eq!(polls.load(SeqCst), 0);
    assert_eq!(drops.load(SeqCst), 1);
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_cancelled()));
}

#[test]
fn abort_of_a_running_task_cancels_it_after_the_current_poll() {
    let sched = Sched::new();
    let slot: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let (polls, drops) = (counter(), counter());
    let (s, p, d) = (slot.clone(), polls.clone(), Tracked(drops.clone()));
    let handle = sched.spawn(std::future::poll_fn(move |cx| {
        let _keep = &d;
        p.fetch_add(1, SeqCst);
        s.lock().unwrap().as_ref().unwrap().abort();
        cx.waker().wake_by_ref();
        Poll::Pending
    }));
    *slot.lock().unwrap() = Some(handle);
    sched.run_all();
    assert_eq!(polls.load(SeqCst), 1);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(sched.yielded(), 0, "cancelled instead of re-queued");
    let mut handle = slot.lock().unwrap().take().unwrap();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_cancelled()));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn abort_during_a_poll_that_completes_keeps_the_output() {
    let sched = Sched::new();
    let slot: Arc<Mutex<Option<JoinHandle<u8>>>> = Arc::default();
    let s = slot.clone();
    let handle = sched.spawn(std::future::poll_fn(move |_| {
        s.lock().unwrap().as_ref().unwrap().abort();
        Poll::Ready(9u8)
    }));
    *slot.lock().unwrap() = Some(handle);
    sched.run_all();
    let mut handle = slot.lock().unwrap().take().unwrap();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok(9))));
}

#[test]
fn abort_of_a_finished_task_does_nothing() {
    let sched = Sched::new();
    let mut handle = sched.spawn(async { 5 });
    sched.run_all();
    handle.abort();
    assert_eq!(sched.scheduled(), 0);
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Ok(5))));
}

#[test]
fn wake_after_abort_does_not_queue_the_task_twice() {
    let sched = Sched::new();
    let gate = Gate::default();
    let mut handle = sched.spawn(gate.wait());
    sched.run_all();
    let waker = gate.take_waker();
    handle.abort();
    waker.wake();
    assert_eq!(sched.queued(), 1);
    sched.run_all();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_cancelled()));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

// ---- panics -------------------------------------------------------------------------------

#[test]
fn panic_in_poll_becomes_a_join_error_and_the_future_is_dropped() {
    let sched = Sched::new();
    let drops = counter();
    let d = Tracked(drops.clone());
    let mut handle = sched.spawn(async move {
        let _d = d;
        panic!("boom");
    });
    sched.run_all();
    assert_eq!(drops.load(SeqCst), 1);
    let err = match poll_once(&mut handle) {
        Poll::Ready(Err(e)) => e,
        other => panic!("unexpected {other:?}"),
    };
    assert!(err.is_panic() && !err.is_cancelled());
    assert_eq!(
        err.to_string(),
        format!("task {} panicked with message \"boom\"", handle.id())
    );
    assert!(format!("{err:?}").contains("boom"));
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("drop {}", "boom");
    }
}

/// Ready at once with its output; panics when dropped afterwards.
struct ReadyThenBomb {
    output: Option<Tracked>,
    _bomb: PanicOnDrop,
}

impl Future for ReadyThenBomb {
    type Output = Tracked;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Tracked> {
        Poll::Ready(self.output.take().unwrap())
    }
}

#[test]
fn panic_while_dropping_a_finished_future_becomes_a_join_error() {
    let sched = Sched::new();
    let out_drops = counter();
    let mut handle = sched.spawn(ReadyThenBomb {
        output: Some(Tracked(out_drops.clone())),
        _bomb: PanicOnDrop,
    });
    sched.run_all();
    match poll_once(&mut handle) {
        Poll::Ready(Err(e)) => {
            assert_eq!(
                e.to_string(),
                format!("task {} panicked with message \"drop boom\"", e.id())
            )
        }
        Poll::Ready(Ok(_)) => panic!("the drop panic was lost"),
        Poll::Pending => panic!("not finished"),
    }
    assert_eq!(out_drops.load(SeqCst), 1, "the output was dropped");
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn panic_while_dropping_a_cancelled_future_becomes_a_join_error() {
    let sched = Sched::new();
    let gate = Gate::default();
    let wait = gate.wait();
    let bomb = PanicOnDrop;
    let mut handle = sched.spawn(async move {
        let _bomb = bomb;
        wait.await;
    });
    sched.run_all();
    handle.abort();
    sched.run_all();
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_panic()));
    drop(handle);
    drop(gate); // it still holds the task's waker
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn panic_payload_that_is_not_a_string_is_reported_without_message() {
    let sched = Sched::new();
    let mut handle = sched.spawn(async { std::panic::panic_any(17u32) });
    sched.run_all();
    let err = match poll_once(&mut handle) {
        Poll::Ready(Err(e)) => e,
        _ => panic!("no error"),
    };
    assert_eq!(err.to_string(), format!("task {} panicked", err.id()));
    let err = match err.try_into_panic() {
        Ok(p) => {
            assert_eq!(p.downcast_ref::<u32>(), Some(&17));
            return;
        }
        Err(e) => e,
    };
    panic!("not a panic: {err}");
}

// ---- JoinError ----------------------------------------------------------------------------

#[test]
fn cancelled_join_error_displays_converts_and_refuses_into_panic() {
    let id = Id::next();
    let err = JoinError::cancelled(id);
    assert_eq!(err.to_string(), format!("task {id} was cancelled"));
    assert_eq!(format!("{err:?}"), format!("JoinError::Cancelled({id:?})"));
    let err = err.try_into_panic().unwrap_err();
    assert!(
        panic::catch_unwind(AssertUnwindSafe(|| JoinError::cancelled(id).into_panic())).is_err()
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert_eq!(io.to_string(), format!("task {id} was cancelled"));
    let inner = io.into_inner().unwrap().downcast::<JoinError>().unwrap();
    assert!(inner.is_cancelled());
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<JoinHandle<Vec<u8>>>();
    send_sync::<JoinError>();
    send_sync::<Task<Sched>>();
    send::<Notified<Sched>>();
    send_sync::<OwnedTasks<Sched>>();
    send_sync::<RawTask>();
}

// ---- owned list and shutdown --------------------------------------------------------------

#[test]
fn close_and_shutdown_all_drops_idle_futures_and_cancels_later_binds() {
    let sched = Sched::new();
    let gate = Gate::default();
    let (polls, drops) = (counter(), counter());
    let mut handles: Vec<_> = (0..40)
        .map(|_| {
            sched.spawn(Forever {
                polls: polls.clone(),
                _drop: Tracked(drops.clone()),
            })
        })
        .collect();
    sched.run_all();
    // One more, waiting on a waker parked elsewhere (like a socket), and one left queued.
    let parked = sched.spawn(gate.wait());
    sched.run_all();
    let mut queued = sched.spawn(async { 1 });
    assert_eq!(sched.0.owned.len(), 42);
    assert!(!sched.0.owned.is_closed());

    sched.0.owned.close_and_shutdown_all();
    assert!(sched.0.owned.is_closed() && sched.0.owned.is_empty());
    assert_eq!(drops.load(SeqCst), 40, "idle futures dropped right away");
    for h in &mut handles {
        assert!(matches!(poll_once(h), Poll::Ready(Err(e)) if e.is_cancelled()));
    }
    assert!(parked.is_finished());
    // The queued `Notified` now only drops its reference.
    assert_eq!(sched.run_all(), 1);
    assert!(matches!(poll_once(&mut queued), Poll::Ready(Err(e)) if e.is_cancelled()));

    let late_drops = counter();
    let (mut late, notified) = sched.0.owned.bind(
        Forever {
            polls: counter(),
            _drop: Tracked(late_drops.clone()),
        },
        sched.clone(),
        Id::next(),
    );
    assert!(notified.is_none());
    assert_eq!(late_drops.load(SeqCst), 1, "the future is dropped at once");
    assert!(matches!(poll_once(&mut late), Poll::Ready(Err(e)) if e.is_cancelled()));
    assert_eq!(polls.load(SeqCst), 40);

    drop((handles, parked, queued, late));
    drop(gate);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn close_and_shutdown_all_lets_a_running_task_finish_its_poll_then_cancels_it() {
    let sched = Sched::new();
    let drops = counter();
    let d = Tracked(drops.clone());
    let s = sched.clone();
    let mut handle = sched.spawn(std::future::poll_fn(move |cx| {
        let _keep = &d;
        s.0.owned.close_and_shutdown_all();
        cx.waker().wake_by_ref();
        Poll::<()>::Pending
    }));
    sched.run_all();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(sched.yielded(), 0);
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_cancelled()));
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn notified_shutdown_cancels_a_queued_task() {
    let sched = Sched::new();
    let drops = counter();
    let mut handle = sched.spawn(Forever {
        polls: counter(),
        _drop: Tracked(drops.clone()),
    });
    sched.pop().unwrap().shutdown();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(matches!(poll_once(&mut handle), Poll::Ready(Err(e)) if e.is_cancelled()));
    assert!(sched.0.owned.is_empty());
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
fn notified_dropped_without_running_leaves_the_task_to_shutdown() {
    let sched = Sched::new();
    let drops = counter();
    let handle = sched.spawn(Forever {
        polls: counter(),
        _drop: Tracked(drops.clone()),
    });
    drop(sched.pop());
    drop(handle);
    assert_eq!(sched.live_cells(), 1, "the owned list still holds it");
    sched.0.owned.close_and_shutdown_all();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(sched.live_cells(), 0);
}

#[test]
#[should_panic(expected = "does not belong")]
fn removing_a_task_from_another_list_panics() {
    let (a, b) = (Sched::new(), Sched::new());
    let _h = a.spawn(async {});
    let raw = a.pop().unwrap().into_raw();
    // SAFETY: a borrowed view of the `Notified` reference we hold as `raw`.
    let task = std::mem::ManuallyDrop::new(unsafe { Task::<Sched>::from_raw(raw) });
    b.0.owned.remove(&task);
}

// ---- allocations --------------------------------------------------------------------------

#[test]
fn a_spawn_allocates_once_and_its_life_allocates_nothing_more() {
    let sched = Sched::new();
    let gate = Gate::default();
    let wait = gate.wait();
    let payload = [7u8; 300];
    let (spawn_allocs, mut handle) = allocations_in(|| {
        sched.spawn(async move {
            wait.await;
            payload.len()
        })
    });
    assert_eq!(spawn_allocs, 1, "one allocation per spawn");
    let (waker_slot_allocs, (_, join_waker)) = allocations_in(counting_waker);
    assert_eq!(waker_slot_allocs, 1, "(the test's own join waker)");

    let (life_allocs, ()) = allocations_in(|| {
        sched.run_all();
        assert!(poll_with(&mut handle, &join_waker).is_pending());
        let waker = gate.take_waker();
        let clone = waker.clone();
        clone.wake_by_ref();
        drop(clone);
        gate.0.lock().unwrap().0 = true;
        waker.wake();
        sched.run_all();
        assert!(matches!(
            poll_with(&mut handle, &join_waker),
            Poll::Ready(Ok(300))
        ));
    });
    assert_eq!(
        life_allocs, 0,
        "run, waker clone/wake/drop, join: no allocation"
    );
    drop(handle);
    assert_eq!(sched.live_cells(), 0);
}

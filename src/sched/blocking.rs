//! The blocking pool: Go's extra Ms for work that blocks a thread.
//!
//! When a goroutine enters a blocking system call, Go's runtime hands its P to another M
//! (starting one if needed) so the other goroutines keep running, and parks the extra M in
//! an idle list afterwards. netpoll's workers must never block either, so blocking work —
//! file I/O, DNS through libc, CPU-heavy closures — goes to this pool via `spawn_blocking`:
//! a closure runs on a pool thread, and its result comes back through an ordinary
//! [`JoinHandle`].
//!
//! Each job is a task built on the same task cell as spawned futures, so it costs one
//! allocation and shares `JoinHandle`, `JoinError` and cancellation: its future runs the
//! closure on its first poll, a panic becomes a `JoinError`, and aborting it before it starts
//! cancels it (once started, a closure cannot be interrupted and runs to the end). Its
//! scheduler is [`BlockingSchedule`]; the task is unowned (no `OwnedTasks`), since the pool's
//! queue already knows every job that has not started.
//!
//! # Threads
//!
//! Threads start on demand: a job submitted while no thread is idle starts a new one, up to
//! `max_threads`; beyond that jobs wait in a FIFO queue. A thread that finishes its job takes
//! the next queued one, or goes idle; an idle thread that gets no job for `keep_alive`
//! retires. The counts are kept under one mutex (`Shared`), so the decision to start a thread
//! or wake an idle one is never made on stale numbers:
//!
//! * `num_idle` counts threads waiting for work that nobody has handed a job yet. A submitter
//!   that finds it non-zero decrements it, increments `num_notify` and signals the condvar;
//!   a waking thread that finds `num_notify` non-zero takes one and goes to the queue. So a
//!   wake-up is never lost to a spurious or timed-out wait, and a retiring thread (which
//!   checks `num_notify` first) never leaves a job behind.
//! * A retiring thread leaves `num_threads` and `num_idle` in the same critical section in
//!   which it decides to retire, so a concurrent submitter starts a new thread instead of
//!   counting on it.
//!
//! A thread's `std::thread::JoinHandle` is put in `Shared::threads` by its spawner before the
//! new thread can take the lock, and moved to `Shared::exited` by the thread itself when it
//! leaves; the next retiring thread, or `shutdown`, joins those.
//!
//! # Shutdown
//!
//! `shutdown(timeout)`: (1) under the lock, set `shutdown` (later submissions are cancelled at
//! once) and take the queue; (2) wake every idle thread; (3) cancel the taken jobs (drop their
//! closures, their handles get a cancelled `JoinError`) outside the lock; (4) wait for the
//! threads still running a job to finish it, up to `timeout`; (5) join the threads that
//! exited. Threads still running when the timeout passes are left detached, to finish on
//! their own.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::loom::{thread, Arc, Condvar, Mutex, MutexGuard};
use crate::sched::task::{self, Id, JoinHandle, Notified, Schedule, Task};

/// Settings of a blocking pool.
#[derive(Clone)]
pub(crate) struct BlockingConfig {
    /// The most threads the pool runs at once; further jobs queue. Go puts no such cap on its
    /// Ms (beyond the 10 000-thread `debug.SetMaxThreads` crash limit); 512 is tokio's default,
    /// a guard against runaway thread creation rather than a tuned number.
    pub max_threads: usize,
    /// How long an idle thread waits for a job before it exits. 10 s, tokio's default: long
    /// enough to ride out bursts, short enough not to hoard threads.
    pub keep_alive: Duration,
    /// The name of every pool thread (shows in debuggers and `top -H`).
    pub thread_name: String,
    /// Run on each pool thread when it starts, before its first job.
    pub on_thread_start: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
    /// Run on each pool thread when it stops, after its last job.
    pub on_thread_stop: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl Default for BlockingConfig {
    fn default() -> BlockingConfig {
        BlockingConfig {
            max_threads: 512,
            keep_alive: Duration::from_secs(10),
            thread_name: "netpoll-blocking".to_owned(),
            on_thread_start: None,
            on_thread_stop: None,
        }
    }
}

impl fmt::Debug for BlockingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingConfig")
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .field("thread_name", &self.thread_name)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("on_thread_stop", &self.on_thread_stop.is_some())
            .finish()
    }
}

/// A pool of threads for blocking jobs. Cheap to clone: clones share one pool.
#[derive(Clone)]
pub(crate) struct BlockingPool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Mutex<Shared>,
    /// Idle threads wait here for a job (`num_notify`) or for shutdown.
    work_cv: Condvar,
    /// `shutdown` waits here for `num_threads` to drop.
    exit_cv: Condvar,
    config: BlockingConfig,
}

/// The pool's bookkeeping; see the module doc for the rules on each count.
struct Shared {
    queue: VecDeque<Notified<BlockingSchedule>>,
    /// Threads started and not yet retired or exited.
    num_threads: usize,
    /// Threads waiting for work that have not been handed a job.
    num_idle: usize,
    /// Jobs handed to idle threads that have not woken up to take them yet.
    num_notify: usize,
    shutdown: bool,
    next_thread_id: usize,
    /// Handles of live threads, by the pool's own thread number.
    threads: HashMap<usize, thread::JoinHandle<()>>,
    /// Handles of threads that have left their loop, to be joined.
    exited: Vec<thread::JoinHandle<()>>,
}

std::thread_local! {
    /// The pool whose thread this is (its `Inner`'s address), so that `shutdown` called from a
    /// job does not wait for its own thread. Null on other threads.
    static CURRENT_POOL: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

impl BlockingPool {
    pub(crate) fn new(config: BlockingConfig) -> BlockingPool {
        assert!(
            config.max_threads > 0,
            "runtime: the blocking pool needs at least one thread"
        );
        BlockingPool {
            inner: Arc::new(Inner {
                shared: Mutex::new(Shared {
                    queue: VecDeque::new(),
                    num_threads: 0,
                    num_idle: 0,
                    num_notify: 0,
                    shutdown: false,
                    next_thread_id: 0,
                    threads: HashMap::new(),
                    exited: Vec::new(),
                }),
                work_cv: Condvar::new(),
                exit_cv: Condvar::new(),
                config,
            }),
        }
    }

    /// Runs `f` on a pool thread and returns a handle to its result.
    ///
    /// A thread is started if none is idle and fewer than `max_threads` run; otherwise the job
    /// waits its turn (FIFO). A panic in `f` is caught and comes back as a `JoinError`. After
    /// `shutdown`, the job is not run: the handle resolves to a cancelled `JoinError`.
    ///
    /// # Panics
    ///
    /// If the OS refuses to start a thread while the pool has none to run the job, like Go's
    /// `newm` ("failed to create new OS thread") and tokio.
    #[track_caller]
    pub(crate) fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let id = Id::next();
        #[cfg(feature = "tracing")]
        let f = {
            let span = crate::trace::blocking_span(id, std::panic::Location::caller());
            move || span.in_scope(f)
        };
        let (notified, handle) =
            task::unowned(BlockingTask { func: Some(f) }, BlockingSchedule, id);
        self.submit(notified);
        handle
    }

    fn submit(&self, task: Notified<BlockingSchedule>) {
        let mut shared = self.inner.shared.lock();
        if shared.shutdown {
            drop(shared);
            task.shutdown();
            return;
        }
        shared.queue.push_back(task);
        if shared.num_idle > 0 {
            shared.num_idle -= 1;
            shared.num_notify += 1;
            self.inner.work_cv.notify_one();
        } else if shared.num_threads < self.inner.config.max_threads {
            if let Err(err) = self.start_thread(&mut shared) {
                if shared.num_threads == 0 {
                    let task = shared.queue.pop_back();
                    drop(shared);
                    if let Some(task) = task {
                        task.shutdown();
                    }
                    panic!("runtime: failed to start a blocking-pool thread: {err}");
                }
                // The running threads will get to the job.
            }
        }
    }

    /// Starts a thread; called with the lock held, so the handle is recorded before the new
    /// thread can look for it.
    fn start_thread(&self, shared: &mut MutexGuard<'_, Shared>) -> std::io::Result<()> {
        let id = shared.next_thread_id;
        let inner = self.inner.clone();
        let handle = thread::Builder::new()
            .name(self.inner.config.thread_name.clone())
            .spawn(move || inner.run_thread(id))?;
        shared.next_thread_id += 1;
        shared.num_threads += 1;
        shared.threads.insert(id, handle);
        Ok(())
    }

    /// Stops the pool: later jobs are cancelled, queued ones are cancelled now, running ones
    /// are waited for up to `timeout` (`None`: as long as they take), and the threads that
    /// exited are joined. Idempotent: a second call waits again for what is left.
    ///
    /// Called from a job running on this pool, it does not wait for that job's own thread.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut shared = self.inner.shared.lock();
        let queued = if shared.shutdown {
            VecDeque::new()
        } else {
            shared.shutdown = true;
            self.inner.work_cv.notify_all();
            std::mem::take(&mut shared.queue)
        };
        drop(shared);
        // Dropping the closures runs user code: not under the lock.
        for task in queued {
            task.shutdown();
        }

        let me = &*self.inner as *const Inner as *const ();
        let own_thread = usize::from(CURRENT_POOL.with(Cell::get) == me);
        let mut shared = self.inner.shared.lock();
        while shared.num_threads > own_thread {
            shared = match deadline {
                None => self.inner.exit_cv.wait(shared),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    self.inner.exit_cv.wait_timeout(shared, deadline - now)
                }
            };
        }
        let exited = std::mem::take(&mut shared.exited);
        drop(shared);
        for handle in exited {
            // A thread's panic cannot come from a job (caught by the task); ignore the rest.
            let _ = handle.join();
        }
    }

    /// Threads started and not yet gone.
    pub(crate) fn thread_count(&self) -> usize {
        self.inner.shared.lock().num_threads
    }

    /// Threads waiting for work (and not already handed a job).
    pub(crate) fn idle_count(&self) -> usize {
        self.inner.shared.lock().num_idle
    }

    /// Jobs waiting for a thread.
    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.shared.lock().queue.len()
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.inner.shared.lock();
        f.debug_struct("BlockingPool")
            .field("threads", &shared.num_threads)
            .field("idle", &shared.num_idle)
            .field("queued", &shared.queue.len())
            .field("shutdown", &shared.shutdown)
            .finish()
    }
}

/// Why a pool thread leaves its loop.
#[derive(PartialEq, Eq)]
enum Exit {
    Retire,
    Shutdown,
}

impl Inner {
    /// The body of a pool thread.
    fn run_thread(&self, id: usize) {
        CURRENT_POOL.with(|c| c.set(self as *const Inner as *const ()));
        if let Some(hook) = &self.config.on_thread_start {
            hook();
        }
        let exit = self.work_loop();
        if let Some(hook) = &self.config.on_thread_stop {
            hook();
        }

        let mut shared = self.shared.lock();
        let to_join = match exit {
            // Already counted out when it decided to retire. Joins its predecessors, so at
            // most a few exited handles wait at any time.
            Exit::Retire => std::mem::take(&mut shared.exited),
            Exit::Shutdown => {
                shared.num_threads -= 1;
                Vec::new()
            }
        };
        if let Some(me) = shared.threads.remove(&id) {
            shared.exited.push(me);
        }
        if shared.num_threads == 0 {
            self.exit_cv.notify_all();
        }
        drop(shared);
        for handle in to_join {
            let _ = handle.join();
        }
    }

    /// Runs jobs until shutdown or until idle for `keep_alive`.
    fn work_loop(&self) -> Exit {
        let mut shared = self.shared.lock();
        loop {
            while let Some(task) = shared.queue.pop_front() {
                drop(shared);
                // Panics in the job are caught inside the task.
                task.run();
                shared = self.shared.lock();
            }
            if shared.shutdown {
                return Exit::Shutdown;
            }

            shared.num_idle += 1;
            let deadline = Instant::now() + self.config.keep_alive;
            loop {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared = self.work_cv.wait_timeout(shared, wait);
                if shared.num_notify > 0 {
                    // Handed a job (the submitter took us out of `num_idle`).
                    shared.num_notify -= 1;
                    break;
                }
                if shared.shutdown {
                    shared.num_idle -= 1;
                    return Exit::Shutdown;
                }
                if Instant::now() >= deadline {
                    shared.num_idle -= 1;
                    shared.num_threads -= 1;
                    return Exit::Retire;
                }
                // A spurious wake-up: wait for the rest of the keep-alive.
            }
        }
    }
}

/// The scheduler of blocking tasks. Their future finishes on its first poll and never hands
/// out its waker, so after the queue's first `Notified` a blocking task is never woken, and
/// `JoinHandle::abort` only marks it (a queued task is then cancelled when a thread takes it).
#[derive(Debug)]
pub(crate) struct BlockingSchedule;

impl Schedule for BlockingSchedule {
    fn schedule(&self, _task: Notified<Self>) {
        unreachable!("runtime: a blocking task was woken, but its future never waits");
    }

    fn release(&self, _task: &Task<Self>) -> Option<Task<Self>> {
        // Blocking tasks are unowned: never called.
        None
    }
}

/// The future of a blocking job: runs the closure on its first poll.
struct BlockingTask<F> {
    func: Option<F>,
}

// The closure is never pinned (it is moved out before it runs).
impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let func = self
            .func
            .take()
            .expect("runtime: blocking task polled after it ran");
        Poll::Ready(func())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{mpsc, Arc, Barrier, Mutex};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    use super::{BlockingConfig, BlockingPool};

    /// Parks the thread between polls.
    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unparker(std::thread::Thread);
        impl Wake for Unparker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    /// Waits until `cond` holds; fails after a generous 10 s (a hang, not a speed check).
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn pool(max_threads: usize, keep_alive: Duration) -> BlockingPool {
        BlockingPool::new(BlockingConfig {
            max_threads,
            keep_alive,
            thread_name: "test-blocking".to_owned(),
            ..BlockingConfig::default()
        })
    }

    const LONG: Duration = Duration::from_secs(60);

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn closure_runs_on_a_named_pool_thread() {
        let pool = pool(4, LONG);
        let (name, id) = block_on(pool.spawn_blocking(|| {
            let t = std::thread::current();
            (t.name().map(str::to_owned), t.id())
        }))
        .unwrap();
        assert_eq!(name.as_deref(), Some("test-blocking"));
        assert_ne!(id, std::thread::current().id());
        pool.shutdown(None);
    }

    #[test]
    fn pool_grows_to_n_threads_for_n_concurrent_jobs() {
        const N: usize = 4;
        let pool = pool(16, LONG);
        let barrier = Arc::new(Barrier::new(N + 1));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let b = barrier.clone();
                pool.spawn_blocking(move || {
                    b.wait();
                    i
                })
            })
            .collect();
        barrier.wait(); // every job is running at once
        assert_eq!(pool.thread_count(), N);
        let outs: Vec<usize> = handles.into_iter().map(|h| block_on(h).unwrap()).collect();
        assert_eq!(outs, (0..N).collect::<Vec<_>>());
        eventually("all threads are idle", || pool.idle_count() == N);
        pool.shutdown(None);
        assert_eq!(pool.thread_count(), 0);
    }

    #[test]
    fn idle_thread_is_reused_for_the_next_job() {
        let pool = pool(16, LONG);
        let first = block_on(pool.spawn_blocking(|| std::thread::current().id())).unwrap();
        eventually("the thread is idle", || pool.idle_count() == 1);
        let second = block_on(pool.spawn_blocking(|| std::thread::current().id())).unwrap();
        assert_eq!(first, second);
        assert_eq!(pool.thread_count(), 1);
        pool.shutdown(None);
    }

    #[test]
    fn jobs_beyond_max_threads_queue_in_fifo_order() {
        let pool = pool(1, LONG);
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let first = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap()
        });
        started.recv().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let rest: Vec<_> = (1..5)
            .map(|i| {
                let o = order.clone();
                pool.spawn_blocking(move || o.lock().unwrap().push(i))
            })
            .collect();
        assert_eq!(pool.thread_count(), 1);
        assert_eq!(pool.queue_depth(), 4);
        release.send(()).unwrap();
        block_on(first).unwrap();
        for h in rest {
            block_on(h).unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(pool.queue_depth(), 0);
        pool.shutdown(None);
    }

    #[test]
    fn idle_threads_retire_after_keep_alive_and_new_ones_start_on_demand() {
        let stops = Arc::new(AtomicUsize::new(0));
        let s = stops.clone();
        let pool = BlockingPool::new(BlockingConfig {
            max_threads: 4,
            keep_alive: Duration::from_millis(30),
            on_thread_stop: Some(Arc::new(move || {
                s.fetch_add(1, SeqCst);
            })),
            ..BlockingConfig::default()
        });
        block_on(pool.spawn_blocking(|| ())).unwrap();
        eventually("the idle thread retires", || pool.thread_count() == 0);
        eventually("its stop hook ran", || stops.load(SeqCst) == 1);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(block_on(pool.spawn_blocking(|| 3)).unwrap(), 3);
        pool.shutdown(None);
        assert_eq!(stops.load(SeqCst), 2);
        assert_eq!(pool.thread_count(), 0);
    }

    #[test]
    fn shutdown_cancels_queued_jobs_waits_for_running_ones_and_joins_threads() {
        let (starts, stops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s1, s2) = (starts.clone(), stops.clone());
        let pool = BlockingPool::new(BlockingConfig {
            max_threads: 1,
            keep_alive: LONG,
            on_thread_start: Some(Arc::new(move || {
                s1.fetch_add(1, SeqCst);
            })),
            on_thread_stop: Some(Arc::new(move || {
                s2.fetch_add(1, SeqCst);
            })),
            ..BlockingConfig::default()
        });
        let (started_tx, started) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let running = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
            "finished"
        });
        let queued_drops = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let t = Tracked(queued_drops.clone());
                pool.spawn_blocking(move || drop(t))
            })
            .collect();
        started.recv().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            release.send(()).unwrap();
        });
        pool.shutdown(None);
        releaser.join().unwrap();
        assert_eq!(pool.thread_count(), 0);
        assert_eq!(starts.load(SeqCst), 1);
        assert_eq!(
            stops.load(SeqCst),
            1,
            "the thread was joined: its stop hook has run"
        );
        assert_eq!(
            queued_drops.load(SeqCst),
            3,
            "queued closures dropped without running"
        );
        assert_eq!(block_on(running).unwrap(), "finished");
        for h in queued {
            assert!(block_on(h).unwrap_err().is_cancelled());
        }
        let late = pool.spawn_blocking(|| 1);
        assert!(
            block_on(late).unwrap_err().is_cancelled(),
            "spawns after shutdown are cancelled"
        );
        pool.shutdown(None); // idempotent
    }

    #[test]
    fn shutdown_with_timeout_leaves_a_long_job_running() {
        let pool = pool(2, LONG);
        let (release, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let job = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
            7
        });
        started.recv().unwrap();
        pool.shutdown(Some(Duration::from_millis(20)));
        assert_eq!(pool.thread_count(), 1, "the running job is not interrupted");
        release.send(()).unwrap();
        assert_eq!(block_on(job).unwrap(), 7);
        pool.shutdown(None);
        assert_eq!(pool.thread_count(), 0);
    }

    #[test]
    fn shutdown_from_inside_a_job_does_not_wait_for_its_own_thread() {
        let pool = pool(2, LONG);
        let p = pool.clone();
        let job = pool.spawn_blocking(move || {
            p.shutdown(None);
            p.thread_count()
        });
        assert_eq!(block_on(job).unwrap(), 1);
        pool.shutdown(None);
        assert_eq!(pool.thread_count(), 0);
    }

    #[test]
    fn panic_in_a_blocking_job_becomes_a_join_error() {
        let pool = pool(2, LONG);
        let err = block_on(pool.spawn_blocking(|| -> u8 { panic!("blocking boom") })).unwrap_err();
        assert!(err.is_panic());
        assert!(err
            .to_string()
            .ends_with("panicked with message \"blocking boom\""));
        assert_eq!(
            block_on(pool.spawn_blocking(|| 1)).unwrap(),
            1,
            "the thread survived"
        );
        pool.shutdown(None);
    }

    #[test]
    fn abort_of_a_queued_blocking_job_cancels_it() {
        let pool = pool(1, LONG);
        let (release, gate) = mpsc::channel::<()>();
        let first = pool.spawn_blocking(move || gate.recv().unwrap());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let second = pool.spawn_blocking(move || {
            r.fetch_add(1, SeqCst);
        });
        second.abort();
        release.send(()).unwrap();
        block_on(first).unwrap();
        assert!(block_on(second).unwrap_err().is_cancelled());
        assert_eq!(ran.load(SeqCst), 0);
        pool.shutdown(None);
    }
}

//! `Runtime` and `Builder`: the public face of the scheduler.

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::driver::Driver;
use crate::sched::{blocking, context, Config, Handle, Shared};
use crate::{JoinHandle, RuntimeMetrics};

/// A netpoll runtime: worker threads that run tasks, a network poller and timers.
///
/// Dropping the runtime stops its workers, cancels every task that is still alive (dropping
/// its future, which closes its sockets), waits for running blocking jobs, and joins every
/// thread it started.
///
/// ```
/// let rt = netpoll::Runtime::new()?;
/// let answer = rt.block_on(async {
///     let h = netpoll::spawn(async { 6 * 7 });
///     h.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    handle: Handle,
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = netpoll::Runtime::builder().workers(2).build()?;
/// # drop(rt);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    workers: Option<usize>,
    thread_name: String,
    thread_stack_size: Option<usize>,
    max_blocking_threads: usize,
    blocking_keep_alive: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults: one worker per available CPU, up to 512 blocking threads
    /// kept alive 10 s when idle (tokio's defaults for the blocking pool).
    pub fn new() -> Builder {
        Builder {
            workers: None,
            thread_name: "netpoll-worker".to_string(),
            thread_stack_size: None,
            max_blocking_threads: 512,
            blocking_keep_alive: Duration::from_secs(10),
        }
    }

    /// The number of worker cores (Go's `GOMAXPROCS`): tasks run on at most this many threads
    /// at once. Default: the available parallelism. Must be at least 1.
    pub fn workers(&mut self, n: usize) -> &mut Builder {
        self.workers = Some(n);
        self
    }

    /// The name prefix of the runtime's threads.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        self.thread_name = name.into();
        self
    }

    /// The stack size of worker threads (default: Rust's default, 2 MiB).
    pub fn thread_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// The most threads the blocking pool may run at once. Must be at least 1.
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Builder {
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking thread waits for work before it exits.
    pub fn blocking_keep_alive(&mut self, d: Duration) -> &mut Builder {
        self.blocking_keep_alive = d;
        self
    }

    /// Builds the runtime and starts its threads.
    ///
    /// Fails with `InvalidInput` for zero workers or blocking threads, or with the OS error if
    /// the poller or a thread cannot be created.
    pub fn build(&mut self) -> io::Result<Runtime> {
        let workers = match self.workers {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a runtime needs at least one worker",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.max_blocking_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the blocking pool needs at least one thread",
            ));
        }
        let driver = Driver::new()?;
        // Blocking threads enter the runtime context so that their jobs can spawn tasks; the
        // handle is installed once the scheduler exists.
        // A weak reference: the pool lives inside the scheduler it points to.
        let slot: Arc<std::sync::OnceLock<std::sync::Weak<Shared>>> =
            Arc::new(std::sync::OnceLock::new());
        let on_start_slot = slot.clone();
        let on_thread_start: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(shared) = on_start_slot.get().and_then(std::sync::Weak::upgrade) {
                // The thread stays in the runtime's context for its whole life.
                std::mem::forget(context::enter(Handle { shared }));
            }
        });
        let blocking = blocking::BlockingConfig {
            max_threads: self.max_blocking_threads,
            keep_alive: self.blocking_keep_alive,
            thread_name: format!("{}-blocking", self.thread_name),
            on_thread_start: Some(on_thread_start),
            on_thread_stop: None,
        };
        let config = Config {
            workers,
            thread_name: self.thread_name.clone(),
            thread_stack_size: self.thread_stack_size,
            schedtrace: schedtrace_from_env(),
        };
        let handle = Handle::start(config, driver, blocking)?;
        let _ = slot.set(Arc::downgrade(&handle.shared));
        Ok(Runtime { handle })
    }
}

impl Runtime {
    /// A runtime with the default configuration (one worker per CPU).
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// A [`Builder`] to configure a runtime.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `future` to completion on the current thread, with this runtime as its context:
    /// tasks it spawns run on the workers, and its sockets and timers use this runtime.
    ///
    /// # Panics
    ///
    /// When called from one of a runtime's worker threads (from inside a task): blocking a
    /// worker would stall every task queued on it. Use `.await` instead.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if context::is_worker_thread() {
            panic!(
                "Runtime::block_on called from a netpoll worker thread (inside a task); \
                 blocking a worker stalls its tasks: await the future instead"
            );
        }
        let _guard = context::enter(self.handle.clone());
        let mut future = pin!(future);
        let parker = Arc::new(ThreadParker {
            thread: std::thread::current(),
            notified: AtomicBool::new(false),
        });
        let waker = Waker::from(parker.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            while !parker.notified.swap(false, Ordering::Acquire) {
                std::thread::park();
            }
        }
    }

    /// Spawns a task from any thread; see [`crate::spawn`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs a blocking closure on the blocking pool; see [`crate::spawn_blocking`].
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// Makes this runtime the current one on this thread until the guard drops, so that
    /// `netpoll::spawn`, timers and sockets can be created outside `block_on`.
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard {
            _inner: context::enter(self.handle.clone()),
            _runtime: PhantomData,
        }
    }

    /// Shuts down gracefully: tasks keep running until they have all finished or `timeout`
    /// has passed, whichever comes first; then whatever is left is cancelled as on drop, and
    /// running blocking jobs get what remains of `timeout` to finish.
    ///
    /// Use it after telling your tasks to stop (closing listeners, for instance), so that
    /// in-flight requests complete.
    pub fn shutdown_timeout(self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        while self.handle.shared.alive_tasks() > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.handle.shutdown(Some(left));
    }

    /// The number of tasks spawned and not yet finished. A task that has just completed may
    /// still be counted for a moment after its `JoinHandle` resolved.
    pub fn alive_tasks(&self) -> usize {
        self.handle.shared.alive_tasks()
    }

    /// A snapshot of the scheduler's counters: tasks, polls, steals, queue depths, poller
    /// waits and events, wake-ups, timers, hand-offs and blocking threads.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.shared.metrics()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.handle.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Returned by [`Runtime::enter`]; leaves the runtime context when dropped.
pub struct EnterGuard<'a> {
    _inner: context::EnterGuard,
    _runtime: PhantomData<&'a Runtime>,
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterGuard").finish_non_exhaustive()
    }
}

/// `NETPOLL_SCHEDTRACE=<ms>`: a scheduler trace line every `ms` milliseconds (off when unset,
/// empty, 0 or not a number).
fn schedtrace_from_env() -> Option<Duration> {
    let ms: u64 = std::env::var("NETPOLL_SCHEDTRACE")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Wakes a thread blocked in `block_on`.
struct ThreadParker {
    thread: std::thread::Thread,
    notified: AtomicBool,
}

impl Wake for ThreadParker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

//! Helpers shared by the `rt_*` and `time_*` integration tests: a watchdog that turns a hang
//! into a failure, drop guards, and counters of the process's threads and descriptors.
//!
//! Each test binary includes this module with `mod util_rt;` and uses part of it.

#![allow(dead_code)]

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use crate::util_proc::{open_fds, thread_names, threads, threads_settled, Rng};

/// How long any one test body may run before it counts as hung. Generous: the bodies take
/// well under a second on an idle machine, and CI runs them on two busy cores.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `body` on a thread of its own and returns its result; panics if it has not finished
/// within `limit` (a hang becomes a failure), and re-raises its panic if it panicked.
///
/// A hung body's thread is left behind; the test fails anyway.
#[track_caller]
pub fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let out = body();
            let _ = tx.send(out);
        })
        .expect("spawn the test body's thread");
    match rx.recv_timeout(limit) {
        Ok(out) => {
            thread
                .join()
                .expect("the body returned, so its thread did not panic");
            out
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the body's thread ended without sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test body did not finish within {limit:?}: it hangs")
        }
    }
}

/// [`within`] with the default [`WATCHDOG`].
#[track_caller]
pub fn bounded<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    within(WATCHDOG, body)
}

/// Keeps this thread busy for `d` (work a task does without yielding).
pub fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A runtime with `workers` worker cores.
pub fn rt(workers: usize) -> netpoll::Runtime {
    netpoll::Runtime::builder()
        .workers(workers)
        .build()
        .expect("build a runtime")
}

/// Awaits `fut` for at most `limit`, failing the test with `what` if it takes longer.
pub async fn expect_within<F: std::future::Future>(
    limit: Duration,
    what: &str,
    fut: F,
) -> F::Output {
    match netpoll::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not complete within {limit:?}"),
    }
}

/// Polls `fut` once, with a waker that does nothing, and returns its output; panics if it is
/// not ready (for handles of tasks that must have finished, polled outside any runtime).
#[track_caller]
pub fn ready<F: std::future::Future>(fut: F) -> F::Output {
    let fut = std::pin::pin!(fut);
    match fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("expected a finished future"),
    }
}

/// Counts how many times it has been dropped, through a shared counter.
#[derive(Debug)]
pub struct DropCount(pub Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A shared drop counter and a way to make guards that bump it.
#[derive(Clone, Debug, Default)]
pub struct Drops(pub Arc<AtomicUsize>);

impl Drops {
    pub fn new() -> Drops {
        Drops::default()
    }

    pub fn guard(&self) -> DropCount {
        DropCount(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The message of a panic payload (`panic!("...")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Runs `f`, expecting it to panic, and returns the panic's message.
#[track_caller]
pub fn panic_of<R>(f: impl FnOnce() -> R) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => panic_message(&*payload),
    }
}

/// Polls `cond` every millisecond until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

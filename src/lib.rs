//! netpoll: Go's network poller and scheduler, rebuilt in Rust.
//!
//! Many light tasks do network I/O that reads like blocking code, multiplexed over epoll by a
//! few worker threads — Go's model (per-connection deadlines, close from any task, one reader
//! and one writer at a time) with Rust futures where Go has goroutines.
//!
//! ```
//! let rt = netpoll::Runtime::builder().workers(2).build()?;
//! rt.block_on(async {
//!     let tasks: Vec<_> = (0..10).map(|i| netpoll::spawn(async move { i * 2 })).collect();
//!     let mut sum = 0;
//!     for t in tasks {
//!         sum += t.await.unwrap();
//!     }
//!     assert_eq!(sum, 90);
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The layers, bottom up: the OS poller (`sys`), poll descriptors (`pd`), the scheduler
//! (`sched`), timers (`time`) and the socket types (`net`).
//!
//! Optional features: `futures-io` and `tokio-io` implement those crates' I/O traits for the
//! stream types; `hyper` adds `compat::hyper` (executor, timer and I/O adapter for hyper 1.x);
//! `tracing` gives every task a `tracing` span (target `netpoll::task`, created at spawn with
//! the task's id and spawn site, entered on each poll) and emits an event per wait in the OS
//! poller (`netpoll::poller`) and per monitor hand-off (`netpoll::sysmon`). Without a feature
//! its code is not compiled.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
pub mod compat;
mod driver;
mod loom;
pub mod net;
mod pd;
mod runtime;
mod sched;
mod sys;
pub mod time;
#[cfg(feature = "tracing")]
mod trace;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use runtime::{Builder, EnterGuard, Runtime};
pub use sched::metrics::RuntimeMetrics;
pub use sched::task::{Id as TaskId, JoinError, JoinHandle};

/// Spawns a task on the current runtime and returns a handle to await its output.
///
/// The task starts running at once on one of the workers. Dropping the handle detaches the
/// task; [`JoinHandle::abort`] cancels it.
///
/// # Panics
///
/// Outside a runtime context (a task, `Runtime::block_on` or `Runtime::enter`).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    sched::spawn(future)
}

/// Runs a blocking closure on the runtime's blocking pool (Go's extra Ms for system calls), so
/// that it does not hold up the tasks of a worker.
///
/// # Panics
///
/// Outside a runtime context.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    sched::spawn_blocking(f)
}

/// Yields to the scheduler: the task goes to the back of its worker's queue, so other tasks
/// run before it continues (Go's `runtime.Gosched`).
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

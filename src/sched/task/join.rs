//! [`JoinHandle`]: the owned handle to a spawned task's result.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::raw::RawTask;
use super::{Id, JoinError};

/// An owned permission to await a spawned task's output, and to cancel the task.
///
/// Awaiting the handle gives `Ok(output)` once the task has run to completion, or a
/// [`JoinError`] if it was cancelled or panicked. The output is handed out once: polling the
/// handle again after it returned `Ready` panics, like any completed future.
///
/// Dropping the handle **detaches** the task: it keeps running, and its output is dropped when
/// it finishes (or at once, if it has already finished). To stop the task, call
/// [`abort`](JoinHandle::abort).
///
/// A `JoinHandle` is `Send` and `Sync` when `T` is `Send`, and `Unpin`, so it can be polled
/// from anywhere (`select!`-style) without pinning.
pub struct JoinHandle<T> {
    raw: RawTask,
    _output: PhantomData<T>,
}

// SAFETY: the handle only moves a `T` out of the task (so `T: Send` is required), and all
// its other operations are atomic transitions on the task state, valid from any thread.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: through `&JoinHandle` one can only `abort`, ask `is_finished` or `id`: atomic
// operations on the state word. The output is only reached through `Pin<&mut Self>`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// # Safety
    ///
    /// `raw` is a task whose output type is `T`, and the caller hands over the reference the
    /// task set aside for its `JoinHandle` (with `JOIN_INTEREST`).
    pub(super) unsafe fn from_raw(raw: RawTask) -> JoinHandle<T> {
        JoinHandle {
            raw,
            _output: PhantomData,
        }
    }

    /// Cancels the task.
    ///
    /// A task that is waiting (idle) is scheduled once more, and instead of being polled its
    /// future is dropped; awaiting the handle then gives a [`JoinError`] for which
    /// [`is_cancelled`](JoinError::is_cancelled) is true, and by then the future has been
    /// dropped. A task that is being polled right now is cancelled when that poll returns
    /// `Pending` (if the poll completes the task instead, the output stands). Aborting a task
    /// that has already finished does nothing: its output is kept.
    ///
    /// This does not wait for anything; it may be called from any thread, any number of times.
    pub fn abort(&self) {
        self.raw.remote_abort();
    }

    /// Returns `true` if the task has finished: completed, panicked, or cancelled and dropped.
    ///
    /// Once this returns `true`, awaiting the handle returns without waiting.
    pub fn is_finished(&self) -> bool {
        self.raw.header().state.load().is_complete()
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.raw.id()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ret: Poll<Result<T, JoinError>> = Poll::Pending;
        // SAFETY: we are the task's `JoinHandle<T>`, `T` is its output type (`from_raw`'s
        // contract), and `ret` is a valid `Poll<Result<T, JoinError>>`.
        unsafe {
            self.raw.try_read_output(
                &mut ret as *mut Poll<Result<T, JoinError>> as *mut (),
                cx.waker(),
            )
        };
        ret
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: we are the `JoinHandle` and give up its reference.
        unsafe { self.raw.drop_join_handle() }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

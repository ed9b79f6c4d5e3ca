//! [`JoinError`]: why a task ended without producing its output.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;

use super::Id;

/// The error returned by a [`JoinHandle`] when its task did not run to completion.
///
/// A task ends without an output in two ways:
///
/// * it was **cancelled**: [`JoinHandle::abort`] was called, or the runtime shut down before the
///   task finished, or the task was spawned on a runtime that was already shutting down.
///   Its future has been dropped by the time the error is observed.
/// * it **panicked**: polling its future (or dropping it) panicked. The panic is caught at
///   the task boundary, never unwinds into the scheduler, and its payload travels here;
///   [`into_panic`](JoinError::into_panic) gives it back, e.g. to
///   [`std::panic::resume_unwind`] it in the awaiting task.
///
/// ```text
/// task 7 was cancelled
/// task 7 panicked with message "boom"
/// ```
///
/// [`JoinHandle`]: crate::sched::task::JoinHandle
/// [`JoinHandle::abort`]: crate::sched::task::JoinHandle::abort
pub struct JoinError {
    id: Id,
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panic(SyncPayload),
}

/// A panic payload made `Sync` by never lending out `&` access to it, except to a `Sync` type
/// that it may turn out to be (`&str`, `String`).
///
/// `JoinError` must be `Sync` to be wrapped in an [`io::Error`], while a panic payload is only
/// `Send`. Sharing `&SyncPayload` between threads is harmless because nothing reachable from
/// `&SyncPayload` touches the payload except [`downcast_ref`](SyncPayload::downcast_ref), whose
/// result is itself `Sync`.
struct SyncPayload(Box<dyn Any + Send + 'static>);

// SAFETY: see the type's doc: through `&SyncPayload` one can only reach `&T` for `T: Sync`
// (and `type_id`, which reads no data), so shared references cannot race on the payload.
unsafe impl Sync for SyncPayload {}

impl SyncPayload {
    fn downcast_ref<T: Any + Sync>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// The payload's message when it is a string (what `panic!("...")` produces).
    fn message(&self) -> Option<&str> {
        if let Some(s) = self.downcast_ref::<&'static str>() {
            Some(s)
        } else {
            self.downcast_ref::<String>().map(String::as_str)
        }
    }
}

impl JoinError {
    pub(crate) fn cancelled(id: Id) -> JoinError {
        JoinError {
            id,
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panic(id: Id, payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            id,
            repr: Repr::Panic(SyncPayload(payload)),
        }
    }

    /// Returns `true` if the task was cancelled (aborted, or stopped by runtime shutdown).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// Returns `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The id of the task that failed.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Consumes the error, returning the panic payload.
    ///
    /// # Panics
    ///
    /// Panics if the error is not a panic (see [`is_panic`](JoinError::is_panic)); use
    /// [`try_into_panic`](JoinError::try_into_panic) to check and convert at once.
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("`JoinError::into_panic` called on an error that is not a panic")
    }

    /// Consumes the error, returning the panic payload if the task panicked, or the error
    /// itself otherwise.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.0),
            Repr::Cancelled => Err(self),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "task {} was cancelled", self.id),
            Repr::Panic(payload) => match payload.message() {
                Some(msg) => write!(f, "task {} panicked with message {:?}", self.id, msg),
                None => write!(f, "task {} panicked", self.id),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({:?})", self.id),
            Repr::Panic(payload) => match payload.message() {
                Some(msg) => write!(f, "JoinError::Panic({:?}, {:?}, ..)", self.id, msg),
                None => write!(f, "JoinError::Panic({:?}, ..)", self.id),
            },
        }
    }
}

impl Error for JoinError {}

impl From<JoinError> for io::Error {
    /// Wraps the error with kind [`io::ErrorKind::Other`], keeping its message.
    fn from(err: JoinError) -> io::Error {
        io::Error::other(err)
    }
}

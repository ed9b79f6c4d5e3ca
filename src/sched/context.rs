//! The thread-local runtime context: which runtime the current thread belongs to, and whether it
//! is one of that runtime's machines (worker threads).
//!
//! `netpoll::spawn`, the timers and the sockets find their runtime here. A worker thread also
//! records its [`Machine`], so that a task woken by the task running on this thread can go
//! straight to this thread's core.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use super::worker::Machine;
use super::Handle;

struct Context {
    handle: RefCell<Option<Handle>>,
    /// The machine running on this thread, if it is a worker thread. Valid while set: the
    /// worker thread's stack owns an `Arc<Machine>` for as long as it is recorded here.
    machine: Cell<Option<NonNull<Machine>>>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
            machine: Cell::new(None),
        }
    };
}

/// Restores the previous context when dropped.
pub(crate) struct EnterGuard {
    prev_handle: Option<Handle>,
    prev_machine: Option<NonNull<Machine>>,
}

/// Makes `handle` the current runtime of this thread until the guard drops.
pub(crate) fn enter(handle: Handle) -> EnterGuard {
    CONTEXT.with(|cx| EnterGuard {
        prev_handle: cx.handle.replace(Some(handle)),
        prev_machine: cx.machine.replace(None),
    })
}

/// Like [`enter`], for a worker thread running `machine`.
///
/// The caller must keep `machine` alive until the guard drops.
pub(crate) fn enter_worker(handle: Handle, machine: &Machine) -> EnterGuard {
    CONTEXT.with(|cx| EnterGuard {
        prev_handle: cx.handle.replace(Some(handle)),
        prev_machine: cx.machine.replace(Some(NonNull::from(machine))),
    })
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let handle = self.prev_handle.take();
        let machine = self.prev_machine;
        // `try_with`: the guard may drop during thread-local destruction.
        let _ = CONTEXT.try_with(|cx| {
            cx.machine.set(machine);
            cx.handle.replace(handle)
        });
    }
}

/// The current runtime, if any.
pub(crate) fn try_current() -> Option<Handle> {
    CONTEXT
        .try_with(|cx| cx.handle.borrow().clone())
        .ok()
        .flatten()
}

/// `f` applied to the current runtime, if any, without cloning its handle.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    CONTEXT
        .try_with(|cx| cx.handle.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// The current runtime; panics with a clear message outside one.
#[track_caller]
pub(crate) fn current() -> Handle {
    match try_current() {
        Some(handle) => handle,
        None => panic!(
            "there is no netpoll runtime on this thread: call this from a task, from \
             Runtime::block_on, or inside Runtime::enter"
        ),
    }
}

/// Runs `f` with the machine of this thread, if this is a worker thread.
#[inline]
pub(crate) fn with_machine<R>(f: impl FnOnce(Option<&Machine>) -> R) -> R {
    let machine = CONTEXT.try_with(|cx| cx.machine.get()).ok().flatten();
    // SAFETY: a recorded machine pointer stays valid while recorded (see `Context::machine`).
    f(machine.map(|m| unsafe { m.as_ref() }))
}

/// Whether this thread is a worker of some netpoll runtime (blocking it would stall tasks).
pub(crate) fn is_worker_thread() -> bool {
    with_machine(|m| m.is_some())
}

//! A one-waiter, one-notifier wake-up (a flag and a waker slot), written here so that the
//! ping-pong case measures each runtime's wake-to-run path and not two channel
//! implementations.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

#[derive(Default)]
pub(super) struct Signal {
    set: AtomicBool,
    waiter: Mutex<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiter, if one is registered.
    pub(super) fn notify(&self) {
        self.set.store(true, Ordering::Release);
        let waiter = self.waiter.lock().unwrap().take();
        if let Some(w) = waiter {
            w.wake();
        }
    }

    /// Whether a notification is pending (not yet consumed by a wait).
    #[cfg(test)]
    pub(super) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Waits until the flag is set, and clears it.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.set.swap(false, Ordering::Acquire) {
                return Poll::Ready(());
            }
            *self.waiter.lock().unwrap() = Some(cx.waker().clone());
            // A notify that took the lock before we stored the waker found the slot empty, but
            // its flag is visible to us now (the lock orders the two).
            if self.set.swap(false, Ordering::Acquire) {
                self.waiter.lock().unwrap().take();
                return Poll::Ready(());
            }
            Poll::Pending
        })
    }
}

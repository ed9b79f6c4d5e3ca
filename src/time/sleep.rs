use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::wheel::TimerId;
use crate::driver::COARSE_FROM;
use crate::sched::{context, Handle};

/// Waits until `duration` has elapsed.
///
/// The returned future completes no earlier than `duration` after this call, rounded up to
/// the timer resolution of one millisecond (and, for a second or more inside a runtime, to the
/// coarse clock's: see the [module docs](crate::time)).
///
/// # Panics
///
/// When polled outside a runtime context.
///
/// ```
/// # let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
/// # rt.block_on(async {
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// netpoll::time::sleep(Duration::from_millis(20)).await;
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// # });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(deadline_after(duration))
}

/// `Instant::now() + duration`, or later by the coarse clock's rounding for a second or more
/// inside a runtime (see the module docs); [`far_future`] when it overflows.
pub(crate) fn deadline_after(duration: Duration) -> Instant {
    let coarse = if duration >= COARSE_FROM {
        context::with_current(|h| h.shared.driver.clock.after_instant(duration)).flatten()
    } else {
        None
    };
    coarse
        .or_else(|| Instant::now().checked_add(duration))
        .unwrap_or_else(far_future)
}

/// Waits until `deadline`.
///
/// Like every timer, the returned future finds its runtime when it is first polled, so it may
/// be created anywhere.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
        fired: false,
    }
}

/// Roughly 30 years from now: "never" for durations that overflow `Instant`.
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// It registers its timer with the current runtime on its first poll and removes it when
/// dropped; [`Sleep::reset`] moves it.
///
/// # Panics
///
/// Polling it outside a runtime context panics (creating it does not).
pub struct Sleep {
    deadline: Instant,
    /// The runtime and the timer, once registered (first poll that had to wait).
    timer: Option<(Handle, TimerId)>,
    fired: bool,
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        self.fired || Instant::now() >= self.deadline
    }

    /// Moves the deadline (earlier or later); the sleep can be awaited again afterwards.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.fired = false;
        self.unregister();
    }

    fn unregister(&mut self) {
        if let Some((handle, id)) = self.timer.take() {
            handle.shared.driver.time.sleep_remove(id);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.fired {
            return Poll::Ready(());
        }
        if Instant::now() >= this.deadline {
            this.fired = true;
            this.unregister();
            return Poll::Ready(());
        }
        match &this.timer {
            None => {
                let handle = context::current();
                let shared = &handle.shared;
                let when_ns = shared.driver.clock.instant_ns(this.deadline);
                let (id, earliest) = shared.driver.time.sleep_insert(when_ns, cx.waker().clone());
                if earliest {
                    shared.timer_added(when_ns);
                }
                this.timer = Some((handle, id));
                Poll::Pending
            }
            Some((handle, id)) => {
                if handle.shared.driver.time.sleep_poll(*id, cx.waker()) {
                    this.fired = true;
                    this.unregister();
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("elapsed", &self.fired)
            .finish()
    }
}

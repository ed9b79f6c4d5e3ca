use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::wheel::TimerId;
use crate::sched::{context, Handle};

/// Waits until `duration` has elapsed.
///
/// The returned future completes no earlier than `duration` after this call, rounded up to
/// the timer resolution of one millisecond.
///
/// # Panics
///
/// Outside a runtime context.
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
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(far_future);
    sleep_until(deadline)
}

/// Waits until `deadline`.
///
/// # Panics
///
/// Outside a runtime context.
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    let handle = context::current();
    let when_ns = handle.shared.driver.clock.instant_ns(deadline);
    Sleep {
        handle,
        deadline,
        when_ns,
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
/// It registers its timer on first poll and removes it when dropped; resetting it with
/// [`Sleep::reset`] reuses the same timer entry.
pub struct Sleep {
    handle: Handle,
    deadline: Instant,
    when_ns: u64,
    timer: Option<TimerId>,
    fired: bool,
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        self.fired || self.handle.shared.driver.clock.now_ns() >= self.when_ns
    }

    /// Moves the deadline (earlier or later); the sleep can be awaited again afterwards.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.when_ns = self.handle.shared.driver.clock.instant_ns(deadline);
        self.fired = false;
        if let Some(id) = self.timer.take() {
            self.handle.shared.driver.time.sleep_remove(id);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.fired {
            return Poll::Ready(());
        }
        let shared = &this.handle.shared;
        if shared.driver.clock.now_ns() >= this.when_ns {
            this.fired = true;
            if let Some(id) = this.timer.take() {
                shared.driver.time.sleep_remove(id);
            }
            return Poll::Ready(());
        }
        match this.timer {
            None => {
                let (id, earliest) = shared
                    .driver
                    .time
                    .sleep_insert(this.when_ns, cx.waker().clone());
                this.timer = Some(id);
                if earliest {
                    shared.timer_added(this.when_ns);
                }
                Poll::Pending
            }
            Some(id) => {
                if shared.driver.time.sleep_poll(id, cx.waker()) {
                    this.fired = true;
                    this.timer = None;
                    shared.driver.time.sleep_remove(id);
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
        if let Some(id) = self.timer.take() {
            self.handle.shared.driver.time.sleep_remove(id);
        }
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

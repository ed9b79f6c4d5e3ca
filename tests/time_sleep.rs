//! Sleeps and timeouts: never early, past deadlines at once, many timers, and a timer that must
//! break a poller blocked with a later timeout.

mod util_proc;
mod util_rt;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use util_rt::{bounded, expect_within, rt, Drops, Rng};

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn concurrent_sleeps_of_random_durations_never_return_early() {
    bounded(|| {
        let rt = rt(2);
        let mut rng = Rng::new(1);
        let early: usize = rt.block_on(async {
            let handles: Vec<_> = (0..2_000)
                .map(|_| {
                    let d = Duration::from_micros(rng.below(50_000));
                    netpoll::spawn(async move {
                        let start = Instant::now();
                        netpoll::time::sleep(d).await;
                        let elapsed = start.elapsed();
                        usize::from(elapsed < d)
                    })
                })
                .collect();
            let mut early = 0;
            for h in handles {
                early += h.await.unwrap();
            }
            early
        });
        assert_eq!(early, 0, "sleeps returned before their duration");
    });
}

// From a second on, inside a runtime, the deadline comes from the coarse clock: never before
// `Instant::now() + d`, and late by at most two kernel ticks plus 1 ms (the bound here, 50 ms,
// holds for ticks as long as 10 ms with room to spare). Outside a runtime, and below a second,
// it is the precise `Instant::now() + d`. Many tries, so that the coarse clock's lag sweeps its
// range.
#[test]
fn deadlines_of_sleeps_and_timeouts_are_never_early_and_at_most_a_few_ticks_late() {
    const SLACK: Duration = Duration::from_millis(50);
    /// `CLOCK_MONOTONIC` minus `CLOCK_MONOTONIC_COARSE`, and the most the runtime allows for
    /// it: two coarse ticks and a millisecond.
    fn coarse_lag_and_bound() -> (Duration, Duration) {
        let read = |id| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec to write to.
            assert_eq!(unsafe { libc::clock_gettime(id, &mut ts) }, 0);
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let coarse = read(libc::CLOCK_MONOTONIC_COARSE);
        let precise = read(libc::CLOCK_MONOTONIC);
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `res` is a valid timespec to write to.
        assert_eq!(
            unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) },
            0
        );
        let tick = Duration::new(res.tv_sec as u64, res.tv_nsec as u32);
        (
            precise.saturating_sub(coarse),
            2 * tick + Duration::from_millis(1),
        )
    }
    /// `lag`: the coarse clock's lag read just before `before`. The one exception to "never
    /// early", which the runtime documents: a stall of the kernel's timekeeping (a hypervisor
    /// can cause one) that makes the coarse clock lag by more than its bound. A deadline from
    /// the coarse clock can only be early when that lag, read before the call, was over the
    /// bound (100 µs allowed for the reads in between).
    fn check(
        before: Instant,
        deadline: Instant,
        after: Instant,
        d: Duration,
        slack: Duration,
        (lag, bound): (Duration, Duration),
    ) {
        assert!(
            deadline >= before + d || lag + Duration::from_micros(100) > bound,
            "{d:?}: early by {:?}, with the coarse clock {lag:?} behind (bound {bound:?})",
            before + d - deadline
        );
        assert!(
            deadline <= after + d + slack,
            "{d:?}: late by {:?}",
            deadline - (after + d)
        );
    }
    bounded(|| {
        for d in [
            Duration::from_millis(999),
            Duration::from_secs(1),
            Duration::from_secs(30),
        ] {
            // Outside a runtime: the precise clock.
            let before = Instant::now();
            let deadline = netpoll::time::sleep(d).deadline();
            let no_exception = (Duration::ZERO, Duration::MAX);
            check(
                before,
                deadline,
                Instant::now(),
                d,
                Duration::ZERO,
                no_exception,
            );
        }
        let rt = rt(1);
        rt.block_on(async {
            for i in 0..20_000u32 {
                let d = match i % 3 {
                    0 => Duration::from_millis(999),
                    1 => Duration::from_secs(1),
                    _ => Duration::from_secs(3600),
                };
                let lag = coarse_lag_and_bound();
                let before = Instant::now();
                let deadline = netpoll::time::sleep(d).deadline();
                let after = Instant::now();
                let slack = if d < Duration::from_secs(1) {
                    Duration::ZERO
                } else {
                    SLACK
                };
                check(before, deadline, after, d, slack, lag);
            }
            // A timeout's deadline is a sleep's: the ready future wins, the pending one fails
            // no earlier than a second after the call.
            let start = Instant::now();
            let r = netpoll::time::timeout(Duration::from_secs(1), async { 7 }).await;
            assert_eq!(r.ok(), Some(7));
            let r = netpoll::time::timeout(Duration::from_secs(1), std::future::pending::<()>());
            assert!(r.await.is_err());
            assert!(start.elapsed() >= Duration::from_secs(1), "timed out early");
        });
    });
}

#[test]
fn sleep_until_a_past_instant_and_a_zero_sleep_are_ready_at_once() {
    bounded(|| {
        let rt = rt(1);
        let _guard = rt.enter();
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let mut s = pin!(netpoll::time::sleep_until(past));
        assert!(s.is_elapsed());
        assert_eq!(poll_once(s.as_mut()), Poll::Ready(()));
        let mut z = pin!(netpoll::time::sleep(Duration::ZERO));
        assert_eq!(poll_once(z.as_mut()), Poll::Ready(()));
        let mut later = pin!(netpoll::time::sleep(Duration::from_secs(60)));
        assert_eq!(poll_once(later.as_mut()), Poll::Pending);
        assert!(!later.is_elapsed());
    });
}

#[test]
fn a_reset_sleep_completes_at_its_new_deadline() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let start = Instant::now();
            let mut s = pin!(netpoll::time::sleep(Duration::from_secs(60)));
            assert_eq!(poll_once(s.as_mut()), Poll::Pending);
            s.as_mut().reset(start + Duration::from_millis(15));
            expect_within(Duration::from_secs(10), "the reset sleep", s).await;
            assert!(start.elapsed() >= Duration::from_millis(15));
        });
    });
}

#[test]
fn timeout_fails_a_slow_future_passes_a_fast_one_and_drops_the_inner_future() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            // Slow: Elapsed, not before the timeout, and the inner future is dropped.
            let drops = Drops::new();
            let guard = drops.guard();
            let start = Instant::now();
            let slow = async move {
                let _guard = guard;
                netpoll::time::sleep(Duration::from_secs(60)).await;
                1
            };
            let r = netpoll::time::timeout(Duration::from_millis(20), slow).await;
            let elapsed: netpoll::time::Elapsed = r.unwrap_err();
            assert_eq!(elapsed.to_string(), "deadline has elapsed");
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert_eq!(drops.count(), 1, "the timed-out future is dropped");

            // Fast: its output.
            let r = netpoll::time::timeout(Duration::from_secs(60), async {
                netpoll::time::sleep(Duration::from_millis(1)).await;
                2
            })
            .await;
            assert_eq!(r, Ok(2));

            // A future that is ready wins even against a zero timeout.
            assert_eq!(
                netpoll::time::timeout(Duration::ZERO, async { 3 }).await,
                Ok(3)
            );

            // The error converts to a TimedOut io::Error.
            let e: std::io::Error =
                netpoll::time::timeout(Duration::ZERO, std::future::pending::<()>())
                    .await
                    .unwrap_err()
                    .into();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        });
    });
}

#[test]
fn fifty_thousand_timers_with_random_deadlines_all_fire_and_none_early() {
    const TIMERS: usize = 50_000;
    bounded(|| {
        let rt = rt(2);
        let fired = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng::new(7);
        let (f, e) = (fired.clone(), early.clone());
        rt.block_on(async move {
            let handles: Vec<_> = (0..TIMERS)
                .map(|_| {
                    let d = Duration::from_micros(rng.below(200_000));
                    let (f, e) = (f.clone(), e.clone());
                    netpoll::spawn(async move {
                        let start = Instant::now();
                        netpoll::time::sleep(d).await;
                        if start.elapsed() < d {
                            e.fetch_add(1, SeqCst);
                        }
                        f.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
        assert_eq!(fired.load(SeqCst), TIMERS);
        assert_eq!(early.load(SeqCst), 0);
    });
}

/// Starts a runtime with one worker whose only timer is a 5 s sleep, and waits until the
/// monitor has gone to sleep too (it does after about a second of an idle runtime), so that
/// the 5 s timeout of the worker blocked in the poller is the only thing that would wake it.
fn runtime_blocked_in_the_poller_for_five_seconds() -> (netpoll::Runtime, Arc<AtomicBool>) {
    let rt = rt(1);
    let woke = Arc::new(AtomicBool::new(false));
    let w = woke.clone();
    drop(rt.spawn(async move {
        netpoll::time::sleep(Duration::from_secs(5)).await;
        w.store(true, SeqCst);
    }));
    std::thread::sleep(Duration::from_millis(1_500));
    (rt, woke)
}

// Not a speed assertion: without breaking the poller, the 20 ms sleep would only complete
// when the poller's 5 s timeout ends; anything well under that shows the poller was broken.
const BROKEN_OUT: Duration = Duration::from_secs(2);

#[test]
fn a_sleep_added_from_another_thread_breaks_a_poller_blocked_on_a_later_timer() {
    bounded(|| {
        let (rt, long_woke) = runtime_blocked_in_the_poller_for_five_seconds();
        let elapsed = std::thread::scope(|s| {
            s.spawn(|| {
                // This thread is not a worker: it registers the timer and sleeps in block_on.
                let start = Instant::now();
                rt.block_on(async { netpoll::time::sleep(Duration::from_millis(20)).await });
                start.elapsed()
            })
            .join()
            .unwrap()
        });
        assert!(elapsed >= Duration::from_millis(20));
        assert!(!long_woke.load(SeqCst), "the 5 s sleep is still pending");
        assert!(
            elapsed < BROKEN_OUT,
            "a 20 ms sleep took {elapsed:?}: the poller was not woken for it"
        );
    });
}

#[test]
fn a_sleeping_task_spawned_from_another_thread_wakes_before_the_pollers_later_timer() {
    bounded(|| {
        let (rt, long_woke) = runtime_blocked_in_the_poller_for_five_seconds();
        let elapsed = std::thread::scope(|s| {
            s.spawn(|| {
                let start = Instant::now();
                let h = rt.spawn(async move {
                    netpoll::time::sleep(Duration::from_millis(20)).await;
                    start.elapsed()
                });
                rt.block_on(h).unwrap()
            })
            .join()
            .unwrap()
        });
        assert!(elapsed >= Duration::from_millis(20));
        assert!(!long_woke.load(SeqCst), "the 5 s sleep is still pending");
        assert!(
            elapsed < BROKEN_OUT,
            "a 20 ms sleep took {elapsed:?}: the poller was not woken for it"
        );
    });
}

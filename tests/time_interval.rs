//! Intervals: tick spacing and the three behaviours for missed ticks, as documented in
//! `src/time/interval.rs`.
//!
//! The consumer is made late by blocking the `block_on` thread (not a worker) with
//! `std::thread::sleep`, so the ticks it missed are known exactly.

mod util_proc;
mod util_rt;

use std::time::{Duration, Instant};

use netpoll::time::{interval, interval_at, Interval, MissedTickBehavior};
use util_rt::{bounded, expect_within, rt};

const PERIOD: Duration = Duration::from_millis(10);

/// Awaits the next tick (bounded) and checks it did not complete before its scheduled instant.
async fn tick(iv: &mut Interval) -> Instant {
    let scheduled = expect_within(Duration::from_secs(10), "a tick", iv.tick()).await;
    assert!(
        Instant::now() >= scheduled,
        "a tick completed before its instant"
    );
    scheduled
}

#[test]
fn interval_ticks_first_at_once_then_every_period_and_never_early() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let before = Instant::now();
            let mut iv = interval(PERIOD);
            assert_eq!(iv.period(), PERIOD);
            assert_eq!(iv.missed_tick_behavior(), MissedTickBehavior::Skip);
            let first = tick(&mut iv).await;
            assert!(first >= before && first <= Instant::now());
            let mut prev = first;
            for _ in 0..10 {
                let t = tick(&mut iv).await;
                let gap = t - prev;
                // On a busy machine a tick may be skipped (Skip), never shortened.
                assert!(gap >= PERIOD, "ticks {gap:?} apart");
                assert_eq!(
                    gap.as_nanos() % PERIOD.as_nanos(),
                    0,
                    "off schedule: {gap:?}"
                );
                prev = t;
            }
            assert!(Instant::now() >= first + 10 * PERIOD);
        });
    });
}

#[test]
fn interval_at_a_future_start_waits_for_it() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let start = Instant::now() + Duration::from_millis(30);
            let mut iv = interval_at(start, PERIOD);
            assert_eq!(tick(&mut iv).await, start);
        });
    });
}

/// Takes the first tick, then blocks the consumer for 3.5 periods.
async fn first_tick_then_fall_behind(iv: &mut Interval) -> Instant {
    let t0 = tick(iv).await;
    std::thread::sleep(PERIOD * 7 / 2);
    t0
}

#[test]
fn burst_fires_every_missed_tick_back_to_back() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let mut iv = interval(PERIOD);
            iv.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let t0 = first_tick_then_fall_behind(&mut iv).await;
            // Every tick of the original schedule, none skipped, the missed ones at once.
            for k in 1..=5u32 {
                assert_eq!(tick(&mut iv).await, t0 + PERIOD * k);
            }
        });
    });
}

#[test]
fn skip_drops_missed_ticks_and_stays_on_the_original_schedule() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let mut iv = interval(PERIOD);
            let t0 = first_tick_then_fall_behind(&mut iv).await;
            let behind_since = Instant::now();
            // The tick that was due is delivered (late)...
            assert_eq!(tick(&mut iv).await, t0 + PERIOD);
            let caught_up = Instant::now();
            // ...and the next one is the first instant of the original schedule after the
            // moment it caught up: the ones in between are dropped.
            let next = tick(&mut iv).await;
            let offset = next - t0;
            assert_eq!(
                offset.as_nanos() % PERIOD.as_nanos(),
                0,
                "off schedule: {offset:?}"
            );
            assert!(next > behind_since, "a missed tick was not skipped");
            assert!(
                next - PERIOD <= caught_up,
                "a tick of the schedule was skipped too many"
            );
        });
    });
}

#[test]
fn delay_restarts_the_schedule_one_period_after_the_late_tick() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let mut iv = interval(PERIOD);
            iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let t0 = first_tick_then_fall_behind(&mut iv).await;
            let late_from = Instant::now();
            // The tick that was due is delivered (late).
            let late = tick(&mut iv).await;
            assert!(late >= t0 + PERIOD && late < late_from, "{:?}", late - t0);
            let late_to = Instant::now();
            // The next tick is one period after the moment the late tick was delivered.
            let next = tick(&mut iv).await;
            assert!(next >= late_from + PERIOD && next <= late_to + PERIOD);
        });
    });
}

#[test]
fn delay_keeps_the_schedule_while_no_tick_is_missed() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            // A long period: the consumer is never a period late, so no tick is missed.
            let period = Duration::from_millis(50);
            let mut iv = interval(period);
            iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let t0 = tick(&mut iv).await;
            assert_eq!(tick(&mut iv).await, t0 + period);
        });
    });
}

#[test]
fn reset_moves_the_next_tick_one_period_from_now() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let mut iv = interval(Duration::from_secs(60));
            tick(&mut iv).await;
            let before = Instant::now();
            iv.reset();
            let next = netpoll::time::timeout(Duration::from_millis(30), iv.tick()).await;
            assert!(next.is_err(), "the reset interval ticked before its period");
            assert!(before.elapsed() >= Duration::from_millis(30));
        });
    });
}

#[test]
#[should_panic(expected = "period must be non-zero")]
fn a_zero_period_is_refused() {
    let rt = rt(1);
    let _guard = rt.enter();
    let _ = interval(Duration::ZERO);
}

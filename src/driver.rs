//! The runtime's drivers: the clock, the I/O driver (layers 1–2) and the timers (layer 4).

use std::io;
use std::time::{Duration, Instant};

use crate::pd::driver::IoDriver;
use crate::time::driver::TimeDriver;

pub(crate) struct Driver {
    pub(crate) clock: Clock,
    pub(crate) io: IoDriver,
    pub(crate) time: TimeDriver,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        Ok(Driver {
            clock: Clock::new(),
            io: IoDriver::new()?,
            time: TimeDriver::new(),
        })
    }

    /// At runtime shutdown: every socket still registered (held outside the runtime's tasks)
    /// is marked closing, so its operations fail instead of waiting for a poller that is gone.
    pub(crate) fn shutdown(&self) {
        self.io.shutdown();
    }
}

/// The runtime's monotonic clock, in nanoseconds since the runtime started, plus one: 0 is
/// never a time, so it can mean "none" in atomics (Go's `nanotime` with `lastpoll == 0`).
pub(crate) struct Clock {
    base: Instant,
    /// `CLOCK_MONOTONIC` read right after `base`: at most `base_gap` ns after it.
    base_raw: u64,
    /// How far [`coarse_ns`](Self::coarse_ns) may lag [`now_ns`](Self::now_ns).
    ///
    /// `CLOCK_MONOTONIC_COARSE` is the time of the kernel's last timekeeping update, which
    /// accounts whole ticks only: just after an update it lags by up to a tick, and it lags
    /// one tick more by the next update. So the bound is two ticks (4 ms each at the usual
    /// `HZ=250`), plus a 1 ms margin for a late tick interrupt, plus `base_gap`, by which
    /// mapping the coarse clock through `base_raw` can make it lag further. (Measured on the
    /// benchmark VM: 2.0–6.7 ms lag over 5 s of back-to-back reads. A slack of one tick made
    /// `is_past` call "now" future a quarter of the time.) A hypervisor that stalls the
    /// kernel's timekeeping for longer can exceed it: see [`Clock::after`].
    coarse_slack: u64,
}

/// Durations from which [`Clock::after`] reads the coarse clock: a fifth of the cost of a
/// precise read on the benchmark machine (5.6 against 28.7 ns), and at 1 s its rounding up
/// (at most `coarse_slack`, 9 ms at the usual tick) is under 1%. Idle and request timeouts,
/// the deadlines servers move on every request, are seconds.
pub(crate) const COARSE_FROM: Duration = Duration::from_secs(1);

/// `clock_gettime(id)` in nanoseconds.
fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the monotonic clocks exist on every Linux
    // this crate supports, so the call cannot fail.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Clock {
    fn new() -> Clock {
        // `base` on `CLOCK_MONOTONIC` (`Instant`'s clock), bracketed by two raw reads: the
        // tightest bracket of a few tries, since a preemption between the reads would widen it.
        let mut best: Option<(Instant, u64, u64)> = None;
        for _ in 0..16 {
            let before = clock_ns(libc::CLOCK_MONOTONIC);
            let base = Instant::now();
            let after = clock_ns(libc::CLOCK_MONOTONIC);
            let gap = after.saturating_sub(before);
            if best.is_none_or(|(.., g)| gap < g) {
                best = Some((base, after, gap));
            }
            if gap < 10_000 {
                break;
            }
        }
        let (base, base_raw, base_gap) = best.expect("at least one try");
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `res` is a valid, writable timespec.
        let tick = if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0 {
            res.tv_sec as u64 * 1_000_000_000 + res.tv_nsec as u64
        } else {
            10_000_000 // 10 ms: coarser than any Linux tick
        };
        Clock {
            base,
            base_raw,
            coarse_slack: 2 * tick + 1_000_000 + base_gap,
        }
    }

    /// `CLOCK_MONOTONIC_COARSE` on this clock: `coarse_ns() <= now_ns() < coarse_ns() +
    /// coarse_slack` (see `coarse_slack`).
    #[inline]
    fn coarse_ns(&self) -> u64 {
        (clock_ns(libc::CLOCK_MONOTONIC_COARSE).saturating_sub(self.base_raw)) + 1
    }

    /// Whether `t` (clock ns) is now or in the past. Usually answered by the coarse clock,
    /// which costs a fraction of a precise read: only a `t` within the slack of now needs both.
    #[inline]
    pub(crate) fn is_past(&self, t: u64) -> bool {
        let coarse = self.coarse_ns();
        // coarse <= precise now < coarse + slack
        if t > coarse + self.coarse_slack {
            false
        } else if t + self.coarse_slack <= coarse {
            true
        } else {
            t <= self.now_ns()
        }
    }

    /// The time `d` from now, for a deadline. A `d` of [`COARSE_FROM`] or more is measured
    /// from the coarse clock and rounded up by `coarse_slack`: never earlier than `now_ns() +
    /// d` while the kernel keeps its tick, and at most `coarse_slack` later (9 ms at the usual
    /// 4 ms tick, under 1% of `d`). A shorter `d` reads the precise clock.
    #[inline]
    pub(crate) fn after(&self, d: Duration) -> u64 {
        let d = d.as_nanos().min(u64::MAX as u128) as u64;
        if d >= COARSE_FROM.as_nanos() as u64 {
            self.coarse_ns()
                .saturating_add(self.coarse_slack)
                .saturating_add(d)
        } else {
            self.now_ns().saturating_add(d)
        }
    }

    /// [`after`](Self::after) as an `Instant` (for timers, whose deadlines are instants);
    /// `None` if that is beyond what `Instant` can represent.
    #[inline]
    pub(crate) fn after_instant(&self, d: Duration) -> Option<Instant> {
        self.base
            .checked_add(Duration::from_nanos(self.after(d).saturating_sub(1)))
    }

    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.instant_ns(Instant::now())
    }

    /// `t` on this clock; instants before the runtime started map to 1 (the past).
    #[inline]
    pub(crate) fn instant_ns(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        (ns.min(u64::MAX as u128 - 1) as u64) + 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Asserts that `clock.is_past(t)` for a `t` that is past, with the one exception the
    /// clock allows: a kernel timekeeping stall (as a hypervisor can cause) that makes the
    /// coarse clock lag by more than the slack makes the answer late, never early (see
    /// `coarse_slack`). The coarse clock is read before the call and `t` is not after `now`, so
    /// a "not past" from a correct `is_past` implies `now - coarse > coarse_slack`.
    fn assert_past(clock: &Clock, t: u64, what: &str) {
        let coarse = clock.coarse_ns();
        let now = clock.now_ns();
        assert!(t <= now, "{what}: not a past time");
        if !clock.is_past(t) {
            let lag = now - coarse;
            assert!(
                lag > clock.coarse_slack,
                "{what} reported not past, with the coarse clock only {lag} ns behind (slack {})",
                clock.coarse_slack
            );
        }
    }

    #[test]
    fn is_past_agrees_with_the_precise_clock_far_from_and_close_to_now() {
        let clock = Clock::new();
        let now = clock.now_ns();
        assert!(clock.is_past(1), "the start of the clock is past");
        assert_past(&clock, now, "now");
        assert!(
            !clock.is_past(now + 10_000_000_000),
            "ten seconds ahead is not"
        );
        // Around now, to within the coarse clock's tick: never "past" before it is.
        for ahead_us in [1u64, 100, 1_000, 3_000, 20_000] {
            let t = clock.now_ns() + ahead_us * 1_000;
            if clock.is_past(t) {
                assert!(
                    clock.now_ns() >= t,
                    "{ahead_us} µs ahead reported past early"
                );
            }
        }
        let t = clock.now_ns() + 2_000_000;
        std::thread::sleep(Duration::from_millis(3));
        assert_past(&clock, t, "2 ms ahead, 3 ms later,");
    }

    #[test]
    fn is_past_never_calls_a_passed_time_future() {
        let clock = Clock::new();
        // 300 ms: dozens of kernel ticks, over which the coarse clock's lag sweeps its range.
        let end = clock.now_ns() + 300_000_000;
        for i in 0u64.. {
            let now = clock.now_ns();
            if now > end {
                break;
            }
            let back = (i % 8) * 1_000_000;
            let t = now.saturating_sub(back).max(1);
            assert_past(&clock, t, &format!("{back} ns ago"));
        }
    }

    #[test]
    fn after_is_never_earlier_than_now_plus_the_duration_and_late_by_at_most_the_slack() {
        let clock = Clock::new();
        let end = clock.now_ns() + 300_000_000;
        let mut checked = 0;
        while clock.now_ns() < end {
            // From a second on, the coarse clock rounded up: later than a precise read made
            // right after the call (unless the call was preempted), and no later than that
            // read plus the slack.
            // The exception: a stall of the kernel's timekeeping that makes the coarse clock
            // lag by more than the slack (see `coarse_slack`), read here just before the call.
            let d = COARSE_FROM;
            let coarse = clock.coarse_ns();
            let before = clock.now_ns();
            let t = clock.after(d);
            let since = clock.now_ns();
            if since - before < 100_000 {
                checked += 1;
                assert!(
                    t >= since + d.as_nanos() as u64 || since - coarse > clock.coarse_slack,
                    "early: {t} < {since} + {d:?}, with the coarse clock {} ns behind",
                    since - coarse
                );
            }
            assert!(t <= since + d.as_nanos() as u64 + clock.coarse_slack);
            // Below, the precise clock.
            let d = Duration::from_millis(10);
            let before = clock.now_ns();
            let t = clock.after(d);
            let since = clock.now_ns();
            assert!(t >= before + d.as_nanos() as u64 && t <= since + d.as_nanos() as u64);
        }
        assert!(checked > 1_000, "only {checked} unpreempted calls");
        assert_eq!(clock.after(Duration::MAX), u64::MAX, "saturates");
    }
}

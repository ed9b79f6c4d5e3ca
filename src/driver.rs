//! The runtime's drivers: the clock, the I/O driver (layers 1–2) and the timers (layer 4).

use std::io;
use std::time::Instant;

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
    /// kernel's timekeeping for longer can exceed it.
    coarse_slack: u64,
}

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

    #[test]
    fn is_past_agrees_with_the_precise_clock_far_from_and_close_to_now() {
        let clock = Clock::new();
        let now = clock.now_ns();
        assert!(clock.is_past(1), "the start of the clock is past");
        assert!(clock.is_past(now), "now is past");
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
        assert!(clock.is_past(t), "2 ms ahead is past 3 ms later");
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
            assert!(clock.is_past(t), "{back} ns ago reported not past");
        }
    }
}

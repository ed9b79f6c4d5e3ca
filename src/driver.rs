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
}

impl Clock {
    fn new() -> Clock {
        Clock {
            base: Instant::now(),
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

//! Time: sleeping, timeouts and intervals, on the runtime's timer wheel.
//!
//! Every timer lives in one hierarchical wheel with millisecond ticks (`wheel.rs`), shared with
//! the sockets' deadline timers; the machine blocked in the poller sleeps exactly until the
//! earliest one (Go 1.14+: the network poller *is* the timer sleep). Timers never fire early:
//! a sleep of `d` returns at least `d` after it was created, rounded up to the next millisecond.
//!
//! These futures find their runtime when first polled (inside a task or `Runtime::block_on`),
//! so they may be created anywhere: `rt.block_on(netpoll::time::sleep(d))` works.
//!
//! A [`sleep()`] or [`timeout()`] of a second or more created inside a runtime measures its
//! deadline from the kernel's coarse clock, like the sockets' `set_read_deadline_after`: never
//! earlier than `Instant::now() + d`, at most two kernel ticks plus 1 ms later (9 ms at the
//! usual 4 ms tick, under 1% of `d`), and without the precise clock read that costs most of a
//! timeout around an operation that is ready at once. Shorter durations, and those created
//! outside a runtime, read the precise clock.

pub(crate) mod driver;
pub(crate) mod wheel;

mod interval;
mod sleep;
mod timeout;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};

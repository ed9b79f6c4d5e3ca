//! Time: sleeping, timeouts and intervals, on the runtime's timer wheel.
//!
//! Every timer lives in one hierarchical wheel with millisecond ticks (`wheel.rs`), shared with
//! the sockets' deadline timers; the machine blocked in the poller sleeps exactly until the
//! earliest one (Go 1.14+: the network poller *is* the timer sleep). Timers never fire early:
//! a sleep of `d` returns at least `d` after it was created, rounded up to the next millisecond.
//!
//! These futures find their runtime when first polled (inside a task or `Runtime::block_on`),
//! so they may be created anywhere: `rt.block_on(netpoll::time::sleep(d))` works.

pub(crate) mod driver;
pub(crate) mod wheel;

mod interval;
mod sleep;
mod timeout;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};

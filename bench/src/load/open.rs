//! Open loop (like wrk2): requests leave on a fixed schedule, `rate` per second spread round
//! robin over the connections, whatever the server's answers do. Latency is measured from the
//! time a request was *scheduled*, so a stalled server is charged for every request it delays
//! (no coordinated omission); requests the socket cannot take yet wait in the connection's
//! buffer, still timed from their schedule.

use std::io;
use std::time::{Duration, Instant};

use super::conn::{ConnSet, Protocol};
use crate::sys;

pub fn run<P: Protocol>(set: &mut ConnSet<P>, rate: f64) -> io::Result<()> {
    // Wake-ups every few tens of microseconds need to be precise to be on schedule.
    sys::set_timer_slack_ns(1);
    let start = set.window.start;
    let n = set.conns.len();
    let at = |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut k: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= set.window.end {
            return Ok(());
        }
        let mut next = at(k);
        while next <= now {
            set.send((k % n as u64) as usize, next)?;
            set.stats.lag_sum += now - next;
            set.stats.lag_count += 1;
            k += 1;
            next = at(k);
        }
        let wake = next.min(set.window.end);
        set.poll(wake.saturating_duration_since(Instant::now()), |_, _| {})?;
    }
}

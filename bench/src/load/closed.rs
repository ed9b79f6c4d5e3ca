//! Closed loop: every connection keeps `inflight` requests outstanding and sends a new one as
//! each response arrives — the most a server can do, as seen through this loader.

use std::io;
use std::time::Instant;

use super::conn::{ConnSet, Protocol};

pub fn run<P: Protocol>(set: &mut ConnSet<P>, inflight: usize) -> io::Result<()> {
    let start = Instant::now();
    for i in 0..set.conns.len() {
        for _ in 0..inflight {
            set.send(i, start)?;
        }
    }
    loop {
        let now = Instant::now();
        if now >= set.window.end {
            return Ok(());
        }
        set.poll(set.window.end - now, |conn, done| {
            let now = Instant::now();
            for _ in 0..done {
                conn.queue(now);
            }
        })?;
    }
}

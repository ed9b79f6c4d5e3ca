//! Races on clones of one socket: many tasks reading, writing, peeking, setting deadlines,
//! shutting down, cancelling and closing the same connection while its peer streams, resets,
//! half-closes or closes. Every operation must end — with data or one of the documented
//! errors — and none may panic or hang; data that arrives is never torn; once an operation has
//! seen the close, every later operation sees it too. And closes from several threads at the
//! same instant: exactly one succeeds.
//!
//! `tcp_close.rs` (`close_races_with_operations_and_cancellations_on_clones`) and
//! `tcp_timeout.rs` (`read_write_deadline_race`, `concurrent_set_deadline`) race close and
//! deadlines against a quiet peer; here the peer misbehaves at the same time.

mod util_fault;
mod util_proc;
mod util_tcp;

use std::collections::BTreeMap;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_fault::*;
use util_tcp::{assert_closed, pair, run, within};

const PROMPT: Duration = Duration::from_secs(5);

/// What the peer of the raced connection does.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// Streams, and drains whatever arrives until the connection ends.
    Streams,
    /// Streams, then resets (SO_LINGER 0) after a moment.
    Resets,
    /// Streams, then shuts down its write side (our readers see EOF) and keeps draining.
    HalfCloses,
    /// Streams, then closes.
    Closes,
}

/// Runs the peer on `s`: streams `len` bytes, acts as `how` says after `after`, and returns
/// once the connection has ended.
async fn peer(s: TcpStream, how: Peer, len: usize, after: Duration) {
    let drain = {
        let s = s.clone();
        netpoll::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        })
    };
    // A modest stream (up to 16 KiB, in uneven pieces), so that readers get through it and
    // reach the end the peer chooses.
    let stream = {
        let s = s.clone();
        netpoll::spawn(async move {
            let mut at = 0;
            while at < len {
                let n = (1 + (at * 7919) % 3000).min(len - at);
                if s.write_all(&pattern(at, n)).await.is_err() {
                    return;
                }
                at += n;
                netpoll::yield_now().await;
            }
        })
    };
    netpoll::time::sleep(after).await;
    match how {
        Peer::Streams => {}
        Peer::Resets => {
            s.set_linger(Some(Duration::ZERO)).unwrap();
            s.close().unwrap();
        }
        Peer::HalfCloses => {
            // The writer may be in the middle of a write_all: it then fails with EPIPE.
            let _ = s.shutdown(Shutdown::Write);
        }
        Peer::Closes => s.close().unwrap(),
    }
    stream.abort();
    let _ = stream.await;
    drain.await.unwrap();
}

/// The bytes a read returned are a run of the peer's stream (the pattern is `i % 251`, so a
/// run starts at the value of its first byte): no torn or foreign data.
#[track_caller]
fn check_run(buf: &[u8]) {
    if let Some(&first) = buf.first() {
        assert!(
            is_pattern(first as usize, buf),
            "a read returned bytes out of the stream's order"
        );
    }
}

/// How many operations ended each way, over a whole test.
type Tally = Arc<Mutex<BTreeMap<Outcome, usize>>>;

/// Operations a task runs at most.
const OPS: usize = 200;
/// Operations a task runs after it has seen the close (each must see it again).
const AFTER_CLOSE: usize = 2;

/// One task's random operations on its clone, until a few operations after one reported the
/// close. Returns the outcomes it saw.
async fn hammer(c: TcpStream, seed: u64, closed_seen: Arc<AtomicBool>) -> Vec<Outcome> {
    let mut rng = Rng::new(seed);
    let mut buf = [0u8; 512];
    let mut seen = Vec::new();
    let mut closed_ops = 0;
    for op in 0..OPS {
        // Closed is forever: an operation that starts after another saw it must see it too.
        let after_close = closed_seen.load(Ordering::SeqCst);
        let len = 1 + rng.below(buf.len() as u64) as usize;
        let (what, result): (&str, Result<Outcome, String>) = match rng.below(12) {
            0 | 1 => {
                let r = c.read(&mut buf[..len]).await;
                if let Ok(n) = r {
                    check_run(&buf[..n]);
                }
                ("read", read_outcome(&r))
            }
            2 => {
                let r = c.read_exact(&mut buf[..len.min(64)]).await;
                if r.is_ok() {
                    check_run(&buf[..len.min(64)]);
                }
                ("read_exact", op_outcome(&r))
            }
            3 => {
                let r = c.peek(&mut buf[..len]).await;
                if let Ok(n) = r {
                    check_run(&buf[..n]);
                }
                ("peek", read_outcome(&r))
            }
            4 => ("write", op_outcome(&c.write(&buf[..len]).await)),
            5 => ("write_all", op_outcome(&c.write_all(&buf[..len]).await)),
            6 => {
                let t = match rng.below(4) {
                    0 => Some(Instant::now() - Duration::from_millis(1)),
                    1 => Some(Instant::now() + rng.micros(500)),
                    2 => Some(Instant::now() + Duration::from_secs(3600)),
                    _ => None,
                };
                let r = match rng.below(3) {
                    0 => c.set_deadline(t),
                    1 => c.set_read_deadline(t),
                    _ => c.set_write_deadline(t),
                };
                ("set_deadline", op_outcome(&r))
            }
            7 => {
                // Cancelled midway, or not.
                let d = rng.micros(300);
                match netpoll::time::timeout(d, c.read(&mut buf[..len])).await {
                    Ok(r) => {
                        if let Ok(n) = r {
                            check_run(&buf[..n]);
                        }
                        ("read (timeout)", read_outcome(&r))
                    }
                    Err(_) => ("read (cancelled)", Ok(Outcome::Done)),
                }
            }
            8 => {
                let d = rng.micros(300);
                match netpoll::time::timeout(d, c.write_all(&buf[..len])).await {
                    Ok(r) => ("write_all (timeout)", op_outcome(&r)),
                    Err(_) => ("write_all (cancelled)", Ok(Outcome::Done)),
                }
            }
            9 if rng.below(8) == 0 => {
                let r = c.shutdown(Shutdown::Write);
                match &r {
                    // After a reset the socket is no longer connected (POSIX: ENOTCONN).
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        ("shutdown", Ok(Outcome::Done))
                    }
                    _ => ("shutdown", op_outcome(&r)),
                }
            }
            10 if rng.below(10) == 0 => ("close", op_outcome(&c.close())),
            _ => {
                netpoll::yield_now().await;
                continue;
            }
        };
        let outcome = result.unwrap_or_else(|e| panic!("op {op} ({what}): {e}"));
        if after_close {
            assert_eq!(
                outcome,
                Outcome::Closed,
                "op {op} ({what}) started after an operation had seen the close"
            );
        }
        seen.push(outcome);
        if what == "close" && outcome == Outcome::Done {
            closed_seen.store(true, Ordering::SeqCst);
        }
        if outcome == Outcome::Closed {
            closed_seen.store(true, Ordering::SeqCst);
            closed_ops += 1;
            if closed_ops > AFTER_CLOSE {
                break;
            }
        }
    }
    seen
}

// Six tasks on clones of one connection, running random operations (reads, exact reads,
// peeks, writes, deadlines into the past, the near future, the far future or cleared,
// cancellations, shutdowns, closes) while the peer streams, resets, half-closes or closes;
// then a close from the test at a random moment. 800 rounds, tens of thousands of operations.
#[test]
fn operations_on_clones_race_close_peer_faults_and_deadlines_and_each_ends_documented() {
    run(4, Duration::from_secs(60), async {
        const ROUNDS: u64 = 800;
        const TASKS: u64 = 6;
        const AT_ONCE: u64 = 8;
        let tally = Tally::default();
        for batch in 0..ROUNDS / AT_ONCE {
            let rounds: Vec<_> = (0..AT_ONCE)
                .map(|k| {
                    let round = batch * AT_ONCE + k;
                    let tally = tally.clone();
                    netpoll::spawn(async move {
                        let mut rng = Rng::new(round + 1);
                        let (c, s) = pair().await;
                        let how = [Peer::Streams, Peer::Resets, Peer::HalfCloses, Peer::Closes]
                            [(round % 4) as usize];
                        let len = rng.below(16 * 1024) as usize;
                        let peer = netpoll::spawn(peer(s, how, len, rng.micros(2000)));
                        let closed_seen = Arc::new(AtomicBool::new(false));
                        let tasks: Vec<_> = (0..TASKS)
                            .map(|t| {
                                let seed = round * 100 + t;
                                netpoll::spawn(hammer(c.clone(), seed, closed_seen.clone()))
                            })
                            .collect();
                        netpoll::time::sleep(rng.micros(10_000)).await;
                        match c.close() {
                            Ok(()) => closed_seen.store(true, Ordering::SeqCst),
                            Err(e) => assert!(netpoll::net::is_closed(&e), "{e:?}"),
                        }
                        for t in tasks {
                            let seen = within(PROMPT, "a racing task", t).await.unwrap();
                            let mut tally = tally.lock().unwrap();
                            for o in seen {
                                *tally.entry(o).or_default() += 1;
                            }
                        }
                        drop(c);
                        within(PROMPT, "the peer", peer).await.unwrap();
                    })
                })
                .collect();
            for r in rounds {
                within(PROMPT * 2, "a round", r).await.unwrap();
            }
        }
        // The races went every way they can: each documented ending was seen.
        let tally = tally.lock().unwrap();
        let ops: usize = tally.values().sum();
        assert!(ops >= 40_000, "only {ops} operations ran: {tally:?}");
        for o in [
            Outcome::Done,
            Outcome::Eof,
            Outcome::Closed,
            Outcome::TimedOut,
            Outcome::Reset,
            Outcome::BrokenPipe,
            Outcome::UnexpectedEof,
        ] {
            assert!(
                tally.contains_key(&o),
                "no operation ended {o:?}: {tally:?}"
            );
        }
        println!("{ops} operations: {tally:?}");
    });
}

// Four threads close clones of one connection at the same instant (a barrier releases them),
// while a fifth moves its deadline and two tasks wait on it (a pending read and a read queued
// behind it): exactly one close succeeds, the others get the closed error, the waiting reads
// end with it, and the peer sees EOF. 2000 connections.
#[test]
fn simultaneous_closes_from_many_threads_exactly_one_succeeds() {
    const CLOSERS: usize = 4;
    const CONNS: usize = 2000;
    const BATCH: usize = 100;
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let _dog = util_tcp::Watchdog::new(Duration::from_secs(60));
    let barrier = Arc::new(Barrier::new(CLOSERS + 1));
    let mut to_threads = Vec::new();
    let (results_tx, results) = mpsc::channel::<(usize, io::Result<()>)>();
    let mut threads = Vec::new();
    for k in 0..=CLOSERS {
        let (tx, rx) = mpsc::channel::<TcpStream>();
        to_threads.push(tx);
        let (barrier, results_tx) = (barrier.clone(), results_tx.clone());
        threads.push(std::thread::spawn(move || {
            for c in rx {
                barrier.wait();
                let r = if k == CLOSERS {
                    // The fifth thread moves the deadline instead (a far one: the reads must
                    // end with the close, not a timeout).
                    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
                } else {
                    c.close()
                };
                results_tx.send((k, r)).unwrap();
            }
        }));
    }
    drop(results_tx);
    for _ in 0..CONNS / BATCH {
        let conns = rt.block_on(async {
            let mut conns = Vec::new();
            for _ in 0..BATCH {
                let (c, s) = pair().await;
                let readers: Vec<_> = (0..2)
                    .map(|_| {
                        let c = c.clone();
                        netpoll::spawn(async move { c.read(&mut [0u8; 8]).await })
                    })
                    .collect();
                conns.push((c, s, readers));
            }
            // Let the readers reach their waits.
            netpoll::time::sleep(Duration::from_millis(1)).await;
            conns
        });
        for (c, _, _) in &conns {
            for tx in &to_threads {
                tx.send(c.clone()).unwrap();
            }
            let mut ok = 0;
            for _ in 0..=CLOSERS {
                let (k, r) = results.recv_timeout(PROMPT).expect("a closing thread hung");
                match r {
                    Ok(()) if k < CLOSERS => ok += 1,
                    Ok(()) => {}
                    Err(e) => assert_closed::<()>(Err(e)),
                }
            }
            assert_eq!(ok, 1, "closes that succeeded on one socket");
        }
        rt.block_on(async {
            for (c, s, readers) in conns {
                for r in readers {
                    assert_closed(within(PROMPT, "a read after the close", r).await.unwrap());
                }
                assert_closed(c.close());
                let n = within(PROMPT, "the peer", s.read(&mut [0u8; 1])).await;
                assert_eq!(n.unwrap(), 0);
            }
        });
    }
    drop(to_threads);
    for t in threads {
        t.join().unwrap();
    }
}

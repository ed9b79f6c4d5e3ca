//! Descriptor reuse under load. The kernel hands out the lowest free fd number and the runtime
//! reuses the most recently freed poll descriptor first, so a socket opened right after another
//! closed gets its fd number, and its poll descriptor too once the old socket's last handle is
//! gone. Events, deadline timers and deadline changes meant for the old socket must never reach
//! the new one (the generation check, Go's `fdseq`), and a stale handle must never touch the new
//! socket's data.
//!
//! Every message names its connection (`util_fault::frame`), and the server checks that every
//! frame on a connection carries that connection's id, in sequence; the clients check their
//! echoes the same way. A deadline delivered to the wrong socket shows as a `TimedOut` on a
//! socket without a deadline; a lost event as a hang (each wait is bounded).

mod util_fault;
mod util_proc;
mod util_tcp;

use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};
use util_fault::*;
use util_tcp::{assert_closed, assert_timeout, listener, run, within};

const LIMIT: Duration = Duration::from_secs(60);
const PROMPT: Duration = Duration::from_secs(5);

/// What went wrong on the server side, for the final assertion.
type Violations = Arc<Mutex<Vec<String>>>;

/// An echo server that checks, on every connection, that each frame carries the id of the
/// connection's first frame and the next sequence number. It answers each frame after
/// `delay`, so that a client's read waits across that time.
fn spawn_checking_echo(ln: TcpListener, delay: Duration, violations: Violations) {
    netpoll::spawn(async move {
        loop {
            let (c, _) = match ln.accept().await {
                Ok(x) => x,
                Err(e) => panic!("accept: {e:?}"),
            };
            let violations = violations.clone();
            netpoll::spawn(async move {
                let mut id = None;
                let mut next = 0;
                loop {
                    c.set_read_deadline(Some(Instant::now() + PROMPT)).unwrap();
                    let mut f = [0u8; FRAME];
                    let problem = match c.read_exact(&mut f).await {
                        Ok(()) => match parse_frame(&f) {
                            None => format!("a torn frame on connection {id:?}"),
                            Some((fid, seq)) if *id.get_or_insert(fid) != fid => {
                                format!("frame {seq} of connection {fid} on connection {id:?}")
                            }
                            Some((fid, seq)) if seq != next => {
                                format!("connection {fid}: frame {seq} where {next} was due")
                            }
                            Some(_) => {
                                next += 1;
                                if !delay.is_zero() {
                                    netpoll::time::sleep(delay).await;
                                }
                                if c.write_all(&f).await.is_err() {
                                    return; // the client reset or left
                                }
                                continue;
                            }
                        },
                        Err(e) => match outcome(&e) {
                            // The client left, in one way or another.
                            Ok(Outcome::UnexpectedEof | Outcome::Reset) => return,
                            _ => format!("connection {id:?}: server read failed: {e:?}"),
                        },
                    };
                    violations.lock().unwrap().push(problem);
                    return;
                }
            });
        }
    });
}

fn checking_echo(delay: Duration) -> (SocketAddr, Violations) {
    let (ln, addr) = listener();
    let violations = Violations::default();
    spawn_checking_echo(ln, delay, violations.clone());
    (addr, violations)
}

#[track_caller]
fn assert_no_violations(v: &Violations) {
    let v = v.lock().unwrap();
    assert!(
        v.is_empty(),
        "{} server-side violations: {:?}",
        v.len(),
        &v[..v.len().min(10)]
    );
}

/// `n` round trips of frames `from..from + n` on connection `id`, each echo checked. A
/// `TimedOut` here, on a socket without a deadline, is a deadline that reached the wrong
/// socket.
async fn round_trips(c: &TcpStream, id: u32, from: u32, n: u32) {
    for seq in from..from + n {
        let f = frame(id, seq);
        within(PROMPT, "a write", c.write_all(&f))
            .await
            .unwrap_or_else(|e| panic!("connection {id}, frame {seq}: write: {e:?}"));
        let mut got = [0u8; FRAME];
        within(PROMPT, "an echo", c.read_exact(&mut got))
            .await
            .unwrap_or_else(|e| panic!("connection {id}, frame {seq}: read: {e:?}"));
        assert_eq!(
            parse_frame(&got),
            Some((id, seq)),
            "connection {id} got someone else's echo"
        );
    }
}

/// A closed socket's handle: every operation fails with the closed error, whatever socket now
/// has its fd number and descriptor.
async fn assert_stale_handle_is_inert(stale: &TcpStream) {
    let mut b = [0u8; 8];
    assert_closed(stale.read(&mut b).await);
    assert_closed(stale.write(b"stale").await);
    assert_closed(stale.set_read_deadline(Some(Instant::now() - Duration::from_millis(1))));
    assert_closed(stale.set_deadline(None));
    assert_closed(stale.shutdown(Shutdown::Both));
}

// Sixteen tasks open, use and close 2,400 connections as fast as they can, each ending its
// connection one of six ways (orderly, after a deadline expiry, reset, closed under a pending
// read, abandoned with an operation cancelled midway, half-closed), and each poking the closed
// handle of its previous connection after opening the next — usually on the same fd number.
// No frame reaches the wrong connection, no operation fails in an undocumented way, and no
// socket without a deadline times out.
#[test]
fn descriptor_reuse_under_load_never_crosses_connections() {
    const TASKS: u32 = 16;
    const ITER: u32 = 150;
    run(2, LIMIT, async {
        let (addr, violations) = checking_echo(Duration::ZERO);
        let reused = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let reused = reused.clone();
                netpoll::spawn(async move {
                    let mut rng = Rng::new(t as u64 + 1);
                    let mut prev_fd = None;
                    let mut stale: Option<TcpStream> = None;
                    for i in 0..ITER {
                        let id = t * 1_000_000 + i;
                        let c = within(PROMPT, "connect", TcpStream::connect(addr))
                            .await
                            .unwrap();
                        if prev_fd == Some(c.as_raw_fd()) {
                            reused.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(s) = stale.take() {
                            assert_stale_handle_is_inert(&s).await;
                        }
                        let fd = c.as_raw_fd();
                        let k = 1 + rng.below(4) as u32;
                        match rng.below(6) {
                            0 => {
                                round_trips(&c, id, 0, k).await;
                                c.close().unwrap();
                                stale = Some(c);
                            }
                            1 => {
                                // A read deadline expires (the server never speaks first);
                                // cleared, it leaves the socket working.
                                let d = Instant::now() + rng.micros(2000);
                                c.set_read_deadline(Some(d)).unwrap();
                                let r = within(PROMPT, "a read with a deadline", async {
                                    c.read(&mut [0u8; 8]).await
                                })
                                .await;
                                assert_timeout(r);
                                c.set_read_deadline(None).unwrap();
                                round_trips(&c, id, 0, k).await;
                                c.close().unwrap();
                                stale = Some(c);
                            }
                            2 => {
                                // Reset with a frame in flight.
                                c.write_all(&frame(id, 0)).await.unwrap();
                                c.set_linger(Some(Duration::ZERO)).unwrap();
                                drop(c);
                            }
                            3 => {
                                // Closed under a pending read on a clone.
                                let reader = {
                                    let c = c.clone();
                                    netpoll::spawn(async move { c.read(&mut [0u8; 8]).await })
                                };
                                netpoll::time::sleep(rng.micros(500)).await;
                                c.close().unwrap();
                                assert_closed(within(PROMPT, "the reader", reader).await.unwrap());
                                stale = Some(c);
                            }
                            4 => {
                                // Abandoned, with the echo's read cancelled midway or not.
                                c.write_all(&frame(id, 0)).await.unwrap();
                                let mut got = [0u8; FRAME];
                                let read = c.read_exact(&mut got);
                                if let Ok(r) = netpoll::time::timeout(rng.micros(500), read).await {
                                    r.unwrap();
                                    assert_eq!(parse_frame(&got), Some((id, 0)));
                                }
                                drop(c);
                            }
                            _ => {
                                // Half-closed: every echo still arrives, then EOF.
                                for seq in 0..k {
                                    c.write_all(&frame(id, seq)).await.unwrap();
                                }
                                c.shutdown(Shutdown::Write).unwrap();
                                for seq in 0..k {
                                    let mut got = [0u8; FRAME];
                                    within(PROMPT, "an echo", c.read_exact(&mut got))
                                        .await
                                        .unwrap();
                                    assert_eq!(parse_frame(&got), Some((id, seq)));
                                }
                                let n = within(PROMPT, "EOF", c.read(&mut [0u8; 1])).await;
                                assert_eq!(n.unwrap(), 0);
                                c.close().unwrap();
                                stale = Some(c);
                            }
                        }
                        prev_fd = Some(fd);
                    }
                })
            })
            .collect();
        for t in tasks {
            within(LIMIT / 2, "a client task", t).await.unwrap();
        }
        assert_no_violations(&violations);
        let reused = reused.load(Ordering::Relaxed);
        assert!(
            reused > 0,
            "no fd number was ever reused: the test tested nothing"
        );
        println!(
            "{reused} of {} connections reused their task's last fd",
            TASKS * ITER
        );
    });
}

// A socket gets a read, write or read-write deadline a few hundred microseconds to 3 ms away,
// maybe a reader waiting on it, and is closed before, around or after the deadline. The next
// socket — on the same fd number and poll descriptor, most of the time — has no deadline, or
// one an hour away, and waits 2 ms for each echo: it must never time out. Eight tasks, 2,000
// sockets.
//
// The runtime guards this three ways (close disarms the descriptor's timers, a firing carries
// the sequence it was armed with, and a firing re-checks the deadline against the clock), so
// no single slip breaks it; a new socket inheriting the old one's deadline state does (with
// `Registration::new` no longer resetting `rd`/`wd`, this test fails at once).
#[test]
fn a_closed_sockets_deadline_never_fires_on_the_socket_that_reuses_its_descriptor() {
    const TASKS: u32 = 8;
    const ITER: u32 = 250;
    run(2, LIMIT, async {
        let (addr, violations) = checking_echo(Duration::from_millis(2));
        let reused = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let reused = reused.clone();
                netpoll::spawn(async move {
                    let mut rng = Rng::new(1000 + t as u64);
                    for i in 0..ITER {
                        let a = within(PROMPT, "connect", TcpStream::connect(addr))
                            .await
                            .unwrap();
                        let old_fd = a.as_raw_fd();
                        let when = Some(Instant::now() + rng.micros(3000));
                        let read_deadline = match rng.below(3) {
                            0 => a.set_read_deadline(when).map(|()| true),
                            1 => a.set_write_deadline(when).map(|()| false),
                            _ => a.set_deadline(when).map(|()| true),
                        }
                        .unwrap();
                        let waiter = (rng.below(2) == 0).then(|| {
                            let a = a.clone();
                            netpoll::spawn(async move { a.read(&mut [0u8; 8]).await })
                        });
                        if rng.below(2) == 0 {
                            netpoll::time::sleep(rng.micros(3000)).await;
                        }
                        a.close().unwrap();
                        if let Some(w) = waiter {
                            let r = within(PROMPT, "the old socket's reader", w).await.unwrap();
                            match read_outcome(&r) {
                                Ok(Outcome::Closed) => {}
                                Ok(Outcome::TimedOut) if read_deadline => {}
                                other => panic!("the old socket's reader: {other:?} ({r:?})"),
                            }
                        }
                        drop(a);

                        let b = within(PROMPT, "connect", TcpStream::connect(addr))
                            .await
                            .unwrap();
                        if b.as_raw_fd() == old_fd {
                            reused.fetch_add(1, Ordering::Relaxed);
                        }
                        // Maybe deadlines of its own, far away: the old socket's deadline
                        // state must not leak into them either.
                        let far = Some(Instant::now() + Duration::from_secs(3600));
                        match rng.below(4) {
                            0 => b.set_deadline(far).unwrap(),
                            1 => b.set_read_deadline(far).unwrap(),
                            2 => b.set_write_deadline(far).unwrap(),
                            _ => {}
                        }
                        round_trips(&b, t * 1_000_000 + i, 0, 2).await;
                        b.close().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            within(LIMIT / 2, "a client task", t).await.unwrap();
        }
        assert_no_violations(&violations);
        let reused = reused.load(Ordering::Relaxed);
        assert!(
            reused > 0,
            "no fd number was ever reused: the test tested nothing"
        );
        println!(
            "{reused} of {} new sockets reused the old fd number",
            TASKS * ITER
        );
    });
}

/// One socket for the deadline hammers to work on through a stale handle.
struct Target {
    stale: TcpStream,
    /// Set once `close` has returned.
    closed: Arc<AtomicBool>,
    /// Set when the hammers should move on to the next target.
    done: Arc<AtomicBool>,
}

// Two threads keep setting past deadlines (read, write, both) through clones of a socket, in a
// tight loop, while the test closes it and opens the next socket, which takes over its fd
// number. Once `close` has returned, every call through the old handle fails with the closed
// error; and the new socket, without a deadline, never times out — a call that slipped past
// the closed check just before the close finds the old socket's descriptor closing, because a
// descriptor is not reused while a handle of its socket lives. 600 sockets.
//
// A call slips past the closed check often enough: with the descriptor freed at close instead
// (when the socket leaves the poller), this test fails within a fraction of a second in a
// release build (3 runs of 3).
#[test]
fn deadlines_set_through_a_stale_handle_never_reach_the_socket_that_reuses_its_descriptor() {
    const ITER: u32 = 600;
    const HAMMERS: usize = 2;
    let calls_after_close = Arc::new(AtomicUsize::new(0));
    let mut feeds = Vec::new();
    let mut hammers = Vec::new();
    for h in 0..HAMMERS {
        let (tx, rx) = mpsc::channel::<Target>();
        feeds.push(tx);
        let calls_after_close = calls_after_close.clone();
        hammers.push(std::thread::spawn(move || {
            let past = Instant::now() - Duration::from_secs(1);
            for target in rx {
                let mut k = h;
                while !target.done.load(Ordering::Acquire) {
                    let closed = target.closed.load(Ordering::Acquire);
                    let r = match k % 3 {
                        0 => target.stale.set_read_deadline(Some(past)),
                        1 => target.stale.set_write_deadline(Some(past)),
                        _ => target.stale.set_deadline(Some(past)),
                    };
                    k += 1;
                    match r {
                        Ok(()) if closed => panic!("a deadline was set on a closed socket"),
                        Ok(()) => {}
                        Err(e) => {
                            assert!(netpoll::net::is_closed(&e), "{e:?}");
                            calls_after_close.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    run(2, LIMIT, async {
        let (addr, violations) = checking_echo(Duration::ZERO);
        let mut rng = Rng::new(7);
        let mut reused = 0;
        for i in 0..ITER {
            let a = TcpStream::connect(addr).await.unwrap();
            let old_fd = a.as_raw_fd();
            let closed = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicBool::new(false));
            for feed in &feeds {
                feed.send(Target {
                    stale: a.clone(),
                    closed: closed.clone(),
                    done: done.clone(),
                })
                .unwrap();
            }
            netpoll::time::sleep(rng.micros(200)).await;
            a.close().unwrap();
            closed.store(true, Ordering::Release);
            let b = TcpStream::connect(addr).await.unwrap();
            if b.as_raw_fd() == old_fd {
                reused += 1;
            }
            round_trips(&b, i, 0, 2).await;
            done.store(true, Ordering::Release);
            b.close().unwrap();
        }
        assert_no_violations(&violations);
        assert!(
            reused > ITER / 2,
            "only {reused} of {ITER} sockets reused the fd number"
        );
    });
    drop(feeds);
    for h in hammers {
        h.join().unwrap();
    }
    assert!(calls_after_close.load(Ordering::Relaxed) > 0);
}

//! Deadlines on TCP sockets: Go's `net/timeout_test.go` (§9.1 of the reference), re-expressed.
//!
//! Timing is asserted only one way: an operation never times out *before* its deadline. Upper
//! bounds are generous (seconds) and exist only to tell "the deadline fired" from "the kernel's
//! own two-minute connect timeout fired" or "nothing fired": the machine is a shared 2-core box.

mod util_proc;
mod util_tcp;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};
use socket2::{Domain, Socket, Type};
use util_tcp::*;

const LIMIT: Duration = Duration::from_secs(20);
/// How long "stays blocked" is watched (Go: 100 ms).
const BLOCKED: Duration = Duration::from_millis(100);
/// Upper bound for "fails at once" and "fires near its deadline": generous on purpose.
const PROMPT: Duration = Duration::from_secs(3);

/// A loopback address whose connects hang: a listener with backlog 0 whose accept queue is
/// already full, so the kernel drops further SYNs (and the client retransmits for minutes).
/// Returns what must stay alive while the address is used.
fn black_hole() -> (SocketAddr, Socket, Vec<std::net::TcpStream>) {
    let ln = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    ln.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    ln.listen(0).unwrap();
    let addr = ln.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (addr, ln, fill),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled up");
}

// Go: TestDialTimeout
#[test]
fn dial_timeout() {
    run(2, LIMIT, async {
        let (addr, _ln, _fill) = black_hole();
        // Past and zero deadlines fail before any wait.
        for (name, deadline) in [
            ("past", ago(Duration::from_secs(5))),
            ("long past", ago(Duration::from_secs(3600))),
            ("now", Instant::now()),
        ] {
            let start = Instant::now();
            let r = TcpStream::connect_deadline(addr, deadline).await;
            assert!(
                start.elapsed() < PROMPT,
                "{name}: took {:?}",
                start.elapsed()
            );
            assert_timeout(r);
        }
        let start = Instant::now();
        assert_timeout(TcpStream::connect_timeout(addr, Duration::ZERO).await);
        assert!(start.elapsed() < PROMPT);
        // Short deadlines fail once they pass, not before.
        for d in [Duration::from_millis(1), Duration::from_millis(50)] {
            let start = Instant::now();
            assert_timeout(TcpStream::connect_timeout(addr, d).await);
            let took = start.elapsed();
            assert!(took >= d, "{d:?}: timed out early, after {took:?}");
            assert!(took < d + PROMPT, "{d:?}: took {took:?}");
            let deadline = Instant::now() + d;
            assert_timeout(TcpStream::connect_deadline(addr, deadline).await);
            assert!(Instant::now() >= deadline);
        }
    });
}

// Go: TestDialTimeoutMaxDuration
#[test]
fn dial_timeout_max_duration() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        let accept = netpoll::spawn(async move {
            for _ in 0..3 {
                ln.accept().await.unwrap();
            }
        });
        // Timeouts that overflow the clock are clamped, not treated as past.
        let c = TcpStream::connect_timeout(addr, Duration::MAX)
            .await
            .unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        let c = TcpStream::connect_timeout(addr, Duration::from_secs(u64::MAX / 4))
            .await
            .unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        let far = Instant::now() + Duration::from_secs(i64::MAX as u64 / 4);
        let c = TcpStream::connect_deadline(addr, far).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        // The dial's deadline is cleared afterwards: it does not leak into later writes.
        c.write_all(b"x").await.unwrap();
        accept.await.unwrap();
    });
}

// Go: TestAcceptTimeout
#[test]
fn accept_timeout() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        // A pending connection does not matter: a past deadline fails first.
        let _pending = std::net::TcpStream::connect(addr).unwrap();
        ln.set_deadline(Some(ago(Duration::from_secs(5)))).unwrap();
        assert_timeout(ln.accept().await);
        assert_timeout(ln.accept().await);

        // A future deadline: the pending connection may be accepted first, then it times out.
        let deadline = Instant::now() + Duration::from_millis(50);
        ln.set_deadline(Some(deadline)).unwrap();
        let mut accepted = 0;
        let err = loop {
            match ln.accept().await {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&err), "{err:?}");
        assert!(Instant::now() >= deadline, "accept timed out early");
        assert!(accepted <= 1);
        // Sticky: still expired.
        assert_timeout(ln.accept().await);
    });
}

// Go: TestAcceptTimeoutMustReturn
#[test]
fn accept_timeout_must_return() {
    run(2, LIMIT, async {
        let (ln, _) = listener();
        ln.set_deadline(None).unwrap();
        let deadline = Instant::now() + Duration::from_millis(10);
        ln.set_deadline(Some(deadline)).unwrap();
        let r = within(PROMPT, "accept with a deadline", ln.accept()).await;
        assert_timeout(r);
        assert!(Instant::now() >= deadline);
    });
}

// Go: TestAcceptTimeoutMustNotReturn
#[test]
fn accept_timeout_must_not_return() {
    run(2, LIMIT, async {
        let (ln, _) = listener();
        ln.set_deadline(Some(ago(Duration::from_secs(1)))).unwrap();
        ln.set_deadline(None).unwrap();
        let ln2 = ln.clone();
        let accept = netpoll::spawn(async move { ln2.accept().await.map(drop) });
        netpoll::time::sleep(BLOCKED).await;
        assert!(
            !accept.is_finished(),
            "accept returned with its deadline cleared"
        );
        ln.close().unwrap();
        assert_closed(within(PROMPT, "accept after close", accept).await.unwrap());
    });
}

// Go: TestReadTimeout
#[test]
fn read_timeout() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        const MSG: &[u8] = b"READ TIMEOUT TEST";
        s.write_all(MSG).await.unwrap();
        netpoll::time::sleep(Duration::from_millis(10)).await; // let the data arrive

        // A past deadline fails even though data is queued, and reads nothing.
        c.set_read_deadline(Some(ago(Duration::from_secs(5))))
            .unwrap();
        let mut buf = [0u8; 64];
        assert_timeout(c.read(&mut buf).await);
        assert_timeout(c.read(&mut buf).await);
        assert_timeout(c.peek(&mut buf).await);

        // A future deadline: the queued data is read (all of it: nothing was consumed), then
        // reads time out, not before the deadline.
        let deadline = Instant::now() + Duration::from_millis(50);
        c.set_read_deadline(Some(deadline)).unwrap();
        let mut got = Vec::new();
        let err = loop {
            match c.read(&mut buf).await {
                Ok(0) => panic!("unexpected EOF"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&err), "{err:?}");
        assert!(Instant::now() >= deadline, "read timed out early");
        assert!(MSG.starts_with(&got), "{got:?}");
        assert_timeout(c.read(&mut buf).await); // sticky

        // Clearing the deadline makes the connection usable again.
        c.set_read_deadline(None).unwrap();
        s.write_all(b"!").await.unwrap();
        let mut rest = vec![0u8; MSG.len() - got.len() + 1];
        c.read_exact(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(&got[..MSG.len()], MSG);
        assert_eq!(got[MSG.len()], b'!');
    });
}

/// An operation that starts after its deadline has passed times out, even with data ready or
/// buffer space free, and before the deadline's timer has run. (Go's `prepareRead` looks only
/// at the expired bit that the timer sets, so in that window Go returns the data.)
///
/// netpoll compares the deadline with the kernel's coarse clock, trusting it to lag by at most
/// two ticks and a millisecond; a longer stall of the kernel's timekeeping (a hypervisor can
/// cause one) lets an operation through late, never early. So of 40 rounds, 35 must time out;
/// without the comparison, none does.
#[test]
fn an_operation_started_after_its_deadline_times_out_before_the_timer_runs() {
    const ROUNDS: usize = 40;
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 8];
        let (mut read_timeouts, mut write_timeouts, mut sent) = (0, 0, 0);
        let mut pending = false;
        for _ in 0..ROUNDS {
            // A byte to read: the one from the round before unless a read took it.
            if !pending {
                c.set_deadline(None).unwrap();
                s.write_all(b"r").await.unwrap();
                assert_eq!(c.peek(&mut buf[..1]).await.unwrap(), 1); // it has arrived
                pending = true;
            }
            // Spin past the deadline without yielding: the timer fires at the earliest at the
            // wheel's next tick after it, a little later, so the operations below start in the
            // window between.
            let deadline = Instant::now() + Duration::from_millis(2);
            c.set_read_deadline(Some(deadline)).unwrap();
            c.set_write_deadline(Some(deadline)).unwrap();
            while Instant::now() < deadline {
                std::hint::spin_loop();
            }
            match c.read(&mut buf).await {
                Err(e) if is_timeout(&e) => read_timeouts += 1,
                Ok(n) => {
                    assert!(n > 0, "unexpected EOF");
                    pending = false;
                }
                Err(e) => panic!("read: {e:?}"),
            }
            match c.write(b"x").await {
                Err(e) if is_timeout(&e) => write_timeouts += 1,
                Ok(n) => sent += n,
                Err(e) => panic!("write: {e:?}"),
            }
        }
        assert!(
            read_timeouts >= ROUNDS - 5 && write_timeouts >= ROUNDS - 5,
            "of {ROUNDS} operations started after their deadline, {read_timeouts} reads and \
             {write_timeouts} writes timed out"
        );
        // A write that timed out sent nothing.
        let mut got = vec![0u8; sent];
        s.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
        s.set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        assert_timeout(s.read(&mut buf).await);
    });
}

// Go: TestReadTimeoutMustNotReturn
#[test]
fn read_timeout_must_not_return() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        let past = ago(Duration::from_secs(1));
        c.set_deadline(Some(past)).unwrap();
        c.set_write_deadline(Some(past)).unwrap();
        c.set_read_deadline(None).unwrap();
        let c2 = c.clone();
        let read = netpoll::spawn(async move {
            let mut buf = [0u8; 16];
            c2.read(&mut buf).await
        });
        netpoll::time::sleep(BLOCKED).await;
        assert!(
            !read.is_finished(),
            "read returned with its deadline cleared"
        );
        // The write side kept its past deadline.
        assert_timeout(c.write(b"x").await);
        c.close().unwrap();
        assert_closed(within(PROMPT, "read after close", read).await.unwrap());
    });
}

/// Writes 16 KiB chunks until an error; returns it and the bytes written.
async fn write_until_error(c: &TcpStream) -> (io::Error, usize) {
    let chunk = vec![7u8; 16 * 1024];
    let mut total = 0;
    loop {
        match c.write(&chunk).await {
            Ok(n) => total += n,
            Err(e) => return (e, total),
        }
    }
}

// Go: TestWriteTimeout
#[test]
fn write_timeout() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await; // the peer never reads
        c.set_write_deadline(Some(ago(Duration::from_secs(5))))
            .unwrap();
        // Fails at once although the send buffer has room, and writes nothing.
        assert_timeout(c.write(b"x").await);
        assert_timeout(c.write_all(b"x").await);
        c.set_write_deadline(None).unwrap();
        c.write_all(b"y").await.unwrap();

        let deadline = Instant::now() + Duration::from_millis(10);
        c.set_write_deadline(Some(deadline)).unwrap();
        let (err, _) = write_until_error(&c).await;
        assert!(is_timeout(&err), "{err:?}");
        assert!(Instant::now() >= deadline, "write timed out early");
        assert_timeout(c.write(b"x").await); // sticky
    });
}

// Go: TestWriteTimeoutMustNotReturn
#[test]
fn write_timeout_must_not_return() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await; // the peer never reads
        let past = ago(Duration::from_secs(1));
        c.set_deadline(Some(past)).unwrap();
        c.set_read_deadline(Some(past)).unwrap();
        c.set_write_deadline(None).unwrap();
        let c2 = c.clone();
        let writer = netpoll::spawn(async move { write_until_error(&c2).await });
        netpoll::time::sleep(BLOCKED * 2).await;
        assert!(
            !writer.is_finished(),
            "write returned with its deadline cleared"
        );
        // The read side kept its past deadline.
        assert_timeout(c.read(&mut [0u8; 4]).await);
        c.close().unwrap();
        let (err, written) = within(PROMPT, "write after close", writer).await.unwrap();
        assert!(written > 0);
        assert_closed::<()>(Err(err));
    });
}

// Go: TestReadTimeoutFluctuation
#[test]
fn read_timeout_fluctuation() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        let mut buf = [0u8; 8];
        for ms in [1, 5, 20, 50, 100] {
            let d = Duration::from_millis(ms);
            let start = Instant::now();
            let deadline = start + d;
            c.set_read_deadline(Some(deadline)).unwrap();
            assert_timeout(c.read(&mut buf).await);
            let now = Instant::now();
            assert!(
                now >= deadline,
                "{d:?}: timed out {:?} early",
                deadline - now
            );
            assert!(now - start < d + PROMPT, "{d:?}: took {:?}", now - start);
        }
    });
}

// Go: TestWriteTimeoutFluctuation
#[test]
fn write_timeout_fluctuation() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await; // the peer never reads
        for ms in [1, 5, 20, 50, 100] {
            let d = Duration::from_millis(ms);
            let start = Instant::now();
            let deadline = start + d;
            c.set_write_deadline(Some(deadline)).unwrap();
            let (err, _) = write_until_error(&c).await;
            assert!(is_timeout(&err), "{err:?}");
            let now = Instant::now();
            assert!(
                now >= deadline,
                "{d:?}: timed out {:?} early",
                deadline - now
            );
            assert!(now - start < d + PROMPT, "{d:?}: took {:?}", now - start);
        }
    });
}

/// Go's `testVariousDeadlines`: a read-until-error loop (`io.Copy`) from a peer that never
/// writes always ends with a timeout, for deadlines from 1 ns to 100 ms.
fn various_deadlines(workers: usize) {
    run(workers, LIMIT, async {
        let (ln, addr) = listener();
        let server = netpoll::spawn(async move {
            let mut held = Vec::new();
            loop {
                match ln.accept().await {
                    Ok((c, _)) => held.push(c), // never writes; held open
                    Err(e) => break e,
                }
            }
        });
        let ds = [
            1,
            2,
            5,
            50,
            100,
            200,
            500,
            750,
            1_000,
            5_000,
            25_000,
            250_000,
            2_500_000,
            10_000_000,
            50_000_000,
            100_000_000,
        ];
        for ns in ds {
            let d = Duration::from_nanos(ns);
            for _ in 0..3 {
                let c = TcpStream::connect(addr).await.unwrap();
                let deadline = Instant::now() + d;
                c.set_deadline(Some(deadline)).unwrap();
                let mut buf = [0u8; 64];
                // Go's io.Copy: read until an error. The peer never writes, so the first read
                // is the last.
                let err = match c.read(&mut buf).await {
                    Ok(0) => panic!("{d:?}: EOF from a peer that is still open"),
                    Ok(_) => panic!("{d:?}: data from a peer that never writes"),
                    Err(e) => e,
                };
                assert!(is_timeout(&err), "{d:?}: {err:?}");
                assert!(Instant::now() >= deadline, "{d:?}: timed out early");
            }
        }
        server.abort();
    });
}

// Go: TestVariousDeadlines1Proc
#[test]
fn various_deadlines_1_worker() {
    various_deadlines(1);
}

// Go: TestVariousDeadlines4Proc
#[test]
fn various_deadlines_4_workers() {
    various_deadlines(4);
}

// Go: TestReadWriteProlongedTimeout
#[test]
fn read_write_prolonged_timeout() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let (s_r, s_w) = (s.clone(), s);
        let reader = netpoll::spawn(async move {
            let mut b = [0u8; 1];
            let mut n = 0usize;
            loop {
                s_r.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
                    .unwrap();
                match s_r.read(&mut b).await {
                    Ok(0) => return Ok(n),
                    Ok(_) => n += 1,
                    Err(e) => return Err(e),
                }
            }
        });
        let writer = netpoll::spawn(async move {
            let b = [0u8; 1];
            loop {
                s_w.set_write_deadline(Some(Instant::now() + Duration::from_secs(3600)))
                    .unwrap();
                if let Err(e) = s_w.write(&b).await {
                    return e;
                }
            }
        });
        let mut b = [0u8; 1];
        for _ in 0..1000 {
            c.write(&b).await.unwrap();
            assert_eq!(c.read(&mut b).await.unwrap(), 1);
        }
        // Half-close: the server's reader sees every byte, then EOF. (A reset straight away
        // could discard bytes still queued on this side.)
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), 1000);
        // Then a reset (linger 0) stops the server's writer.
        c.set_linger(Some(Duration::ZERO)).unwrap();
        c.close().unwrap();
        let err = writer.await.unwrap();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "the server's writer stopped with {err:?}"
        );
    });
}

// Go: TestReadWriteDeadlineRace
#[test]
fn read_write_deadline_race() {
    run(2, LIMIT, async {
        const N: usize = 300;
        let (c, s) = pair().await;
        let done = Arc::new(AtomicBool::new(false));
        let setter = {
            let (c, done) = (c.clone(), done.clone());
            netpoll::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now() + Duration::from_micros(2);
                    c.set_read_deadline(Some(t)).unwrap();
                    c.set_write_deadline(Some(t)).unwrap();
                    netpoll::yield_now().await;
                }
            })
        };
        let reader = {
            let c = c.clone();
            netpoll::spawn(async move {
                let mut b = [0u8; 1];
                for _ in 0..N {
                    let _ = c.read(&mut b).await;
                }
            })
        };
        let writer = {
            let c = c.clone();
            netpoll::spawn(async move {
                for _ in 0..N {
                    let _ = c.write(&[0u8]).await;
                }
            })
        };
        reader.await.unwrap();
        writer.await.unwrap();
        done.store(true, Ordering::Relaxed);
        setter.await.unwrap();

        // Afterwards the connection works normally in both directions.
        c.set_deadline(None).unwrap();
        s.write_all(&[0xff]).await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(b, [0xff]);
        c.write_all(&[0xff]).await.unwrap();
        let mut buf = [0u8; 1024];
        'outer: loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            for &x in &buf[..n] {
                if x == 0xff {
                    break 'outer;
                }
            }
        }
    });
}

// Go: TestConcurrentSetDeadline
#[test]
fn concurrent_set_deadline() {
    run(2, LIMIT, async {
        const TASKS: usize = 8;
        const CONNS: usize = 10;
        const TRIES: u64 = 100;
        let mut pairs = Vec::new();
        for _ in 0..CONNS {
            pairs.push(pair().await);
        }
        let conns: Arc<Vec<TcpStream>> = Arc::new(pairs.iter().map(|p| p.0.clone()).collect());
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let conns = conns.clone();
                netpoll::spawn(async move {
                    for i in 0..TRIES {
                        for c in conns.iter() {
                            let t = Instant::now() + Duration::from_secs(2 * 3600 - i);
                            c.set_read_deadline(Some(t)).unwrap();
                            c.set_write_deadline(Some(t)).unwrap();
                        }
                        netpoll::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // The connections still work, with the (far) deadlines in place.
        for (c, s) in &pairs {
            c.write_all(b"ok").await.unwrap();
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ok");
        }
    });
}

// Go: TestReadTimeoutUnblocksRead
#[test]
fn read_timeout_unblocks_read() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        let c2 = c.clone();
        let read = netpoll::spawn(async move {
            let mut buf = [0u8; 8];
            c2.read(&mut buf).await
        });
        netpoll::time::sleep(BLOCKED).await;
        assert!(!read.is_finished());
        // Go: SetReadDeadline(time.Unix(123, 0)), a deadline long past.
        c.set_read_deadline(Some(ago(Duration::from_secs(123))))
            .unwrap();
        assert_timeout(
            within(PROMPT, "read after a past deadline", read)
                .await
                .unwrap(),
        );
    });
}

/// Moving a deadline later while an operation waits keeps it waiting; moving it earlier makes
/// it fail at the new time (§3: "a blocked operation fails as soon as the deadline passes or is
/// moved into the past; extending a deadline makes later operations block again").
#[test]
fn extending_and_shortening_a_deadline_applies_to_a_blocked_read() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let first = Instant::now() + Duration::from_millis(150);
        c.set_read_deadline(Some(first)).unwrap();
        let c2 = c.clone();
        let read = netpoll::spawn(async move {
            let mut buf = [0u8; 8];
            c2.read(&mut buf).await
        });
        netpoll::time::sleep(Duration::from_millis(5)).await;
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
            .unwrap();
        netpoll::time::sleep_until(first + BLOCKED).await;
        assert!(!read.is_finished(), "the old, earlier deadline still fired");
        let deadline = Instant::now() + Duration::from_millis(20);
        c.set_read_deadline(Some(deadline)).unwrap();
        assert_timeout(within(PROMPT, "read after shortening", read).await.unwrap());
        assert!(Instant::now() >= deadline);
        // An expired deadline, extended: reads block again and get data.
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
            .unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hi");
    });
}

/// Deadline setters fail on a closed socket (Go: `SetDeadline` on a closed conn → ErrNetClosing).
#[test]
fn set_deadline_on_a_closed_socket_fails() {
    run(1, LIMIT, async {
        let (c, _s) = pair().await;
        c.close().unwrap();
        assert_closed(c.set_deadline(None));
        assert_closed(c.set_read_deadline(Some(Instant::now())));
        assert_closed(c.set_write_deadline(None));
        let ln = TcpListener::bind("127.0.0.1:0").unwrap();
        ln.close().unwrap();
        assert_closed(ln.set_deadline(None));
    });
}

/// `set_*_deadline_after(d)` sets the deadline `d` from now: never early, on both of its
/// clocks (the precise one below a second, the coarse one, rounded up, from a second on), and
/// a zero `d` has passed at once, even with data ready.
#[test]
fn a_deadline_after_a_duration_never_fires_early() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 8];
        for d in [Duration::from_millis(30), Duration::from_millis(1_000)] {
            let start = Instant::now();
            c.set_read_deadline_after(d).unwrap();
            let r = within(PROMPT + d, "read with a deadline", c.read(&mut buf)).await;
            assert_timeout(r);
            let took = start.elapsed();
            assert!(took >= d, "a deadline {d:?} ahead fired after {took:?}");
        }

        // Zero: now, which has passed; the ready byte stays queued.
        s.write_all(b"x").await.unwrap();
        netpoll::time::sleep(Duration::from_millis(10)).await;
        c.set_read_deadline_after(Duration::ZERO).unwrap();
        assert_timeout(c.read(&mut buf).await);
        // A long one: reads block again and get the byte.
        c.set_read_deadline_after(Duration::from_secs(3600))
            .unwrap();
        assert_eq!(c.read(&mut buf).await.unwrap(), 1);

        // The write side and both sides at once.
        c.set_write_deadline_after(Duration::ZERO).unwrap();
        assert_timeout(c.write(b"y").await);
        c.set_deadline_after(Duration::from_secs(3600)).unwrap();
        c.write_all(b"y").await.unwrap();
        c.set_deadline_after(Duration::ZERO).unwrap();
        assert_timeout(c.read(&mut buf).await);
        assert_timeout(c.write(b"y").await);

        // A duration past the end of the clock is a deadline that never comes.
        c.set_read_deadline_after(Duration::MAX).unwrap();
        let c2 = c.clone();
        let read = netpoll::spawn(async move { c2.read(&mut [0u8; 8]).await });
        netpoll::time::sleep(BLOCKED).await;
        assert!(
            !read.is_finished(),
            "a read with Duration::MAX ahead returned"
        );
        c.close().unwrap();
        assert_closed(within(PROMPT, "read after close", read).await.unwrap());
        assert_closed(c.set_read_deadline_after(Duration::from_secs(1)));
    });
}

/// A listener's `set_deadline_after` bounds `accept`.
#[test]
fn accept_deadline_after_a_duration() {
    run(1, LIMIT, async {
        let ln = TcpListener::bind("127.0.0.1:0").unwrap();
        let d = Duration::from_millis(30);
        let start = Instant::now();
        ln.set_deadline_after(d).unwrap();
        assert_timeout(within(PROMPT, "accept", ln.accept()).await);
        assert!(start.elapsed() >= d);
        ln.close().unwrap();
        assert_closed(ln.set_deadline_after(d));
    });
}

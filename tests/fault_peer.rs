//! Peers that misbehave, in one process: half-closes with data still flowing the other way, a
//! slowloris client against a server with a per-request read deadline, a subscriber that never
//! reads against a server with a write deadline, and tasks that panic while holding sockets.
//!
//! Resets in the middle of a large write (with `SIGPIPE` at its default) and descriptor
//! exhaustion change process-wide state and are in `fault_process.rs`; plain resets, close and
//! half-close of an idle connection are in `tcp_close.rs`.

mod util_fault;
mod util_proc;
mod util_tcp;

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};
use util_fault::*;
use util_tcp::{listener, pair, run, within};

const LIMIT: Duration = Duration::from_secs(30);
/// Upper bound for "promptly": generous, the machine is a shared 2-core box.
const PROMPT: Duration = Duration::from_secs(5);

/// Reads until EOF, checking that the bytes are the test pattern; returns how many arrived.
async fn read_pattern_to_eof(c: &TcpStream) -> io::Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        assert!(
            is_pattern(total, &buf[..n]),
            "corrupt stream at offset {total}"
        );
        total += n;
    }
}

/// Writes `len` bytes of the test pattern, from stream offset `from`, in 64 KiB pieces.
async fn write_pattern(c: &TcpStream, from: usize, len: usize) -> io::Result<()> {
    let mut at = from;
    while at < from + len {
        let n = (64 * 1024).min(from + len - at);
        c.write_all(&pattern(at, n)).await?;
        at += n;
    }
    Ok(())
}

// Half-close in each direction (shutdown(Write) by the dialer, then by the acceptor) while the
// other direction is in the middle of a multi-megabyte transfer: the half-closing side's peer
// reads EOF after exactly the bytes sent, the other direction keeps flowing intact before and
// after the half-close and ends with its own EOF, and writing to the half-closed direction is
// an error (EPIPE), not a signal or a hang.
#[test]
fn half_close_in_each_direction_while_the_other_direction_streams() {
    run(2, LIMIT, async {
        const UP: usize = 256 * 1024; // a → b, then a shuts down its write side
        const HALF: usize = 2 << 20; // b → a, before and after the half-close
        for dialer_half_closes in [true, false] {
            let (c, s) = pair().await;
            let (a, b) = if dialer_half_closes { (c, s) } else { (s, c) };

            // b reads a's upload until EOF...
            let b_reader = {
                let b = b.clone();
                netpoll::spawn(async move { read_pattern_to_eof(&b).await })
            };
            // ...while streaming its own: half of it before a's half-close, half after, and
            // then its own EOF.
            let b_writer = {
                let b = b.clone();
                netpoll::spawn(async move {
                    write_pattern(&b, 0, HALF).await.unwrap();
                    let up = b_reader.await.unwrap();
                    write_pattern(&b, HALF, HALF).await.unwrap();
                    b.shutdown(Shutdown::Write).unwrap();
                    up
                })
            };
            let a_reader = {
                let a = a.clone();
                netpoll::spawn(async move { read_pattern_to_eof(&a).await })
            };

            write_pattern(&a, 0, UP).await.unwrap();
            a.shutdown(Shutdown::Write).unwrap();
            let e = a.write(b"late").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");

            let up = within(PROMPT * 2, "b's writer", b_writer).await.unwrap();
            assert_eq!(up.unwrap(), UP, "b read a's upload, then EOF");
            let down = within(PROMPT * 2, "a's reader", a_reader).await.unwrap();
            assert_eq!(
                down.unwrap(),
                2 * HALF,
                "a got all of b's stream, across its own half-close"
            );
            // Both directions are shut: reads see EOF at once, the sockets still close cleanly.
            assert_eq!(a.read(&mut [0u8; 8]).await.unwrap(), 0);
            assert_eq!(b.read(&mut [0u8; 8]).await.unwrap(), 0);
            a.close().unwrap();
            b.close().unwrap();
        }
    });
}

/// An echo server of fixed-size requests with a deadline per request (Go's
/// `http.Server.ReadTimeout` shape): a client that does not deliver a whole request in time is
/// dropped. Returns the number of connections dropped that way so far.
fn spawn_request_server(ln: TcpListener, req: usize, per_request: Duration) -> Arc<AtomicUsize> {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    netpoll::spawn(async move {
        loop {
            let (c, _) = match ln.accept().await {
                Ok(x) => x,
                Err(e) if netpoll::net::is_closed(&e) => return,
                Err(e) => panic!("accept: {e:?}"),
            };
            let d = d.clone();
            netpoll::spawn(async move {
                let mut buf = vec![0u8; req];
                loop {
                    c.set_read_deadline(Some(Instant::now() + per_request))
                        .unwrap();
                    match c.read_exact(&mut buf).await {
                        Ok(()) => {
                            if c.write_all(&buf).await.is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            d.fetch_add(1, Ordering::SeqCst);
                            c.close().unwrap();
                            return;
                        }
                        // The client left (EOF mid-request, reset): nothing to count.
                        Err(_) => return,
                    }
                }
            });
        }
    });
    dropped
}

/// The request size of the slowloris test's server.
const REQ: usize = 4 * FRAME;

/// A well-behaved client: `n` requests of [`REQ`] bytes, each checked against its echo.
async fn fast_client(addr: SocketAddr, id: u32, n: u32) {
    let c = TcpStream::connect(addr).await.unwrap();
    let mut got = [0u8; REQ];
    for seq in 0..n {
        let mut req = [0u8; REQ];
        for (k, f) in req.chunks_mut(FRAME).enumerate() {
            f.copy_from_slice(&frame(id, seq * 4 + k as u32));
        }
        c.write_all(&req).await.unwrap();
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, req, "client {id}: wrong echo for request {seq}");
    }
}

// A slowloris client (one byte every 100 ms of a 64-byte request) against a server that gives
// each request 1 s: the server drops every such client once its deadline passes — not
// before, and long before the request could complete — while well-behaved clients are served
// throughout, and a new client is served afterwards.
#[test]
fn slowloris_clients_are_dropped_at_the_request_deadline_while_others_are_served() {
    run(2, LIMIT, async {
        const PER_REQUEST: Duration = Duration::from_secs(1);
        const DRIP: Duration = Duration::from_millis(100);
        const SLOW: usize = 4;
        let (ln, addr) = listener();
        let dropped = spawn_request_server(ln, REQ, PER_REQUEST);

        let slow: Vec<_> = (0..SLOW)
            .map(|_| {
                netpoll::spawn(async move {
                    // Before the connect, hence before the server starts the request's clock.
                    let start = Instant::now();
                    let c = TcpStream::connect(addr).await.unwrap();
                    // Learns of the drop: EOF, or a reset (the server closed with our bytes
                    // unread).
                    let watcher = {
                        let c = c.clone();
                        netpoll::spawn(async move {
                            let r = c.read(&mut [0u8; 1]).await;
                            (Instant::now(), r)
                        })
                    };
                    let mut sent = 0;
                    while sent < REQ && !watcher.is_finished() {
                        if c.write(b"x").await.is_err() {
                            break;
                        }
                        sent += 1;
                        netpoll::time::sleep(DRIP).await;
                    }
                    let (at, r) = within(PROMPT, "the slow client's drop", watcher)
                        .await
                        .unwrap();
                    match r {
                        Ok(0) => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                        other => panic!("the slow client read {other:?}"),
                    }
                    (at - start, sent)
                })
            })
            .collect();

        // Well-behaved clients while the slow ones drip.
        let fast: Vec<_> = (0..8u32)
            .map(|id| netpoll::spawn(fast_client(addr, id, 40)))
            .collect();
        for f in fast {
            within(PROMPT * 2, "a well-behaved client", f)
                .await
                .unwrap();
        }
        for s in slow {
            let (after, sent) = within(PROMPT * 2, "a slow client", s).await.unwrap();
            assert!(
                after >= PER_REQUEST,
                "dropped after {after:?}, before its deadline"
            );
            assert!(
                sent < REQ,
                "the slowloris client completed its request ({sent} bytes, {after:?})"
            );
        }
        assert_eq!(dropped.load(Ordering::SeqCst), SLOW);
        // The server still serves.
        within(PROMPT, "a client after the storm", fast_client(addr, 99, 3)).await;
    });
}

// A subscriber that never reads, on a server that gives every write a deadline: its writer
// times out once the socket buffers are full and drops it, while the subscribers that read
// receive every message in order — they are not held up by the stuck one. The dropped
// subscriber, reading at last, gets what was written and then EOF.
#[test]
fn a_subscriber_that_never_reads_is_dropped_by_the_write_deadline_while_others_receive() {
    run(2, LIMIT, async {
        const MSG: usize = 16 * 1024;
        const READ_MSGS: u32 = 64;
        const PER_WRITE: Duration = Duration::from_secs(1);
        #[derive(Debug, PartialEq)]
        enum End {
            TimedOut { sent: u32 },
            Left { sent: u32 },
        }
        let (ln, addr) = listener();
        let server = netpoll::spawn(async move {
            let mut writers = Vec::new();
            for _ in 0..4 {
                let (c, _) = ln.accept().await.unwrap();
                writers.push(netpoll::spawn(async move {
                    let mut id = [0u8; 4];
                    c.read_exact(&mut id).await.unwrap();
                    let id = u32::from_le_bytes(id);
                    let mut msg = vec![0u8; MSG];
                    for seq in 0.. {
                        msg[..FRAME].copy_from_slice(&frame(id, seq));
                        c.set_write_deadline(Some(Instant::now() + PER_WRITE))
                            .unwrap();
                        match c.write_all(&msg).await {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                                c.close().unwrap();
                                return (id, End::TimedOut { sent: seq });
                            }
                            Err(e) => {
                                match outcome(&e) {
                                    Ok(Outcome::Reset | Outcome::BrokenPipe) => {}
                                    other => panic!("subscriber {id}: {other:?}"),
                                }
                                return (id, End::Left { sent: seq });
                            }
                        }
                    }
                    unreachable!()
                }));
            }
            let mut ends = Vec::new();
            for w in writers {
                ends.push(w.await.unwrap());
            }
            ends.sort_by_key(|(id, _)| *id);
            ends
        });

        let stuck = TcpStream::connect(addr).await.unwrap();
        stuck.write_all(&0u32.to_le_bytes()).await.unwrap();
        let readers: Vec<_> = (1..4u32)
            .map(|id| {
                netpoll::spawn(async move {
                    let c = TcpStream::connect(addr).await.unwrap();
                    c.write_all(&id.to_le_bytes()).await.unwrap();
                    let mut msg = vec![0u8; MSG];
                    for seq in 0..READ_MSGS {
                        c.read_exact(&mut msg).await.unwrap();
                        let f: [u8; FRAME] = msg[..FRAME].try_into().unwrap();
                        assert_eq!(parse_frame(&f), Some((id, seq)), "subscriber {id}");
                    }
                    // Leaves: the server's next writes fail.
                    c.set_linger(Some(Duration::ZERO)).unwrap();
                })
            })
            .collect();
        for r in readers {
            within(PROMPT * 2, "a reading subscriber", r).await.unwrap();
        }
        let ends = within(PROMPT * 2, "the server's writers", server)
            .await
            .unwrap();
        match ends[0] {
            (0, End::TimedOut { sent }) => assert!(sent > 0, "nothing fit in the buffers"),
            ref other => panic!("the stuck subscriber: {other:?}"),
        }
        for (id, end) in &ends[1..] {
            match end {
                End::Left { sent } => assert!(*sent >= READ_MSGS, "{id}: {end:?}"),
                other => panic!("subscriber {id}: {other:?}"),
            }
        }
        // What the server wrote before it gave up arrives, in order, then EOF.
        let mut msg = vec![0u8; MSG];
        let mut seq = 0u32;
        loop {
            match within(
                PROMPT,
                "the stuck subscriber's backlog",
                stuck.read_exact(&mut msg),
            )
            .await
            {
                Ok(()) => {
                    let f: [u8; FRAME] = msg[..FRAME].try_into().unwrap();
                    assert_eq!(parse_frame(&f), Some((0, seq)));
                    seq += 1;
                }
                // The timed-out write may have sent part of a message.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(seq > 0);
    });
}

/// Polls `fut` once in the current task's context; true if it is still pending.
async fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.take().unwrap().poll(cx).is_pending())).await
}

// A task that panics while it holds a socket (with a read waiting, or in the middle of a large
// write) drops it during the unwind: the peer sees the close, the `JoinHandle` reports the
// panic, and the other tasks and the runtime carry on. A listener owned by a panicking task
// frees its port. A socket with a clone held by another task stays open until that clone goes.
#[test]
fn a_task_that_panics_while_holding_a_socket_closes_it() {
    run(2, LIMIT, async {
        // Panics with a read pending on the socket (its waker is in the descriptor).
        let (c, s) = pair().await;
        let h = netpoll::spawn(async move {
            let mut buf = [0u8; 8];
            let mut read = pin!(c.read(&mut buf));
            assert!(poll_once(read.as_mut()).await);
            panic!("boom with a read pending");
        });
        let e = within(PROMPT, "the panicking task", h).await.unwrap_err();
        assert!(e.is_panic(), "{e:?}");
        let n = within(PROMPT, "EOF after the panic", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);

        // Panics in the middle of a write that fills the buffers (the peer does not read).
        let (c, s) = pair().await;
        let h = netpoll::spawn(async move {
            let big = pattern(0, 16 << 20);
            let mut write = pin!(c.write_all(&big));
            assert!(poll_once(write.as_mut()).await, "16 MiB fit in the buffers");
            panic!("boom in the middle of a write");
        });
        assert!(within(PROMPT, "the panicking task", h)
            .await
            .unwrap_err()
            .is_panic());
        let got = within(PROMPT, "the peer draining", read_pattern_to_eof(&s))
            .await
            .unwrap();
        assert!(
            got > 0 && got < 16 << 20,
            "the peer got {got} bytes, then EOF"
        );

        // A listener whose task panics: its port is free afterwards.
        let (ln, addr) = listener();
        let h = netpoll::spawn(async move {
            let mut accept = pin!(ln.accept());
            assert!(poll_once(accept.as_mut()).await);
            panic!("boom with an accept pending");
        });
        assert!(within(PROMPT, "the panicking task", h)
            .await
            .unwrap_err()
            .is_panic());
        let e = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");

        // A clone held elsewhere keeps the connection open: the survivor's blocked read is not
        // disturbed, still receives, and the peer sees EOF only when the survivor leaves.
        let (c, s) = pair().await;
        let survivor = {
            let c = c.clone();
            netpoll::spawn(async move {
                let mut b = [0u8; 5];
                c.read_exact(&mut b).await.unwrap();
                c.write_all(&b).await.unwrap();
                b
            })
        };
        let h = netpoll::spawn(async move {
            let _c = c;
            panic!("boom with a clone elsewhere");
        });
        assert!(within(PROMPT, "the panicking task", h)
            .await
            .unwrap_err()
            .is_panic());
        assert!(
            util_tcp::stays_pending(Duration::from_millis(50), s.read(&mut [0u8; 1])).await,
            "the connection closed although a clone is alive"
        );
        s.write_all(b"alive").await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"alive");
        assert_eq!(
            &within(PROMPT, "the survivor", survivor).await.unwrap(),
            b"alive"
        );
        let n = within(PROMPT, "EOF after the survivor", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);
    });
}

//! Close, half-close, reset and the one-reader-one-writer rule (Go's `fdMutex`) on TCP sockets:
//! §9.2 and §9.4 of the reference, through the public API.

mod util_proc;
mod util_tcp;

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};
use util_tcp::*;

const LIMIT: Duration = Duration::from_secs(20);
const PROMPT: Duration = Duration::from_secs(3);
const BLOCKED: Duration = Duration::from_millis(100);

/// Polls `fut` once in the current task's context; true if it is still pending. The future
/// keeps whatever place it took (a lock, a queue slot) for as long as it lives.
async fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.take().unwrap().poll(cx).is_pending())).await
}

// Go: TestCloseRead
#[test]
fn close_read() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        c.shutdown(Shutdown::Read).unwrap();
        // A shut-down read side reads EOF at once instead of blocking.
        let n = within(PROMPT, "read after shutdown(Read)", c.read(&mut [0u8; 8]))
            .await
            .unwrap();
        assert_eq!(n, 0);
        // The write side still works.
        c.write_all(b"still writing").await.unwrap();
        let mut b = [0u8; 13];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"still writing");
    });
}

// Go: TestCloseWrite
#[test]
fn close_write() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        c.write_all(b"request").await.unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // The peer reads everything, then EOF.
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"request");
        // Half-close: the peer can still answer, and we can still read.
        s.write_all(b"response").await.unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut b = [0u8; 8];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"response");
        assert_eq!(c.read(&mut buf).await.unwrap(), 0);
        // Writing after our own shutdown(Write) is an error (EPIPE), not a signal.
        let e = c.write(b"late").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");
        let e = s.write(b"late").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e:?}");
    });
}

// Go: TestConnClose
#[test]
fn conn_close() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        c.close().unwrap();
        let mut buf = [0u8; 8];
        assert_closed(c.read(&mut buf).await);
        assert_closed(c.read_exact(&mut buf).await);
        assert_closed(c.peek(&mut buf).await);
        assert_closed(c.write(b"x").await);
        assert_closed(c.write_all(b"x").await);
        assert_closed(c.local_addr());
        assert_closed(c.peer_addr());
        assert_closed(c.shutdown(Shutdown::Both));
        assert_closed(c.set_nodelay(true));
        // Even a zero-length read reports the close (Go takes the read lock first).
        assert_closed(c.read(&mut []).await);
        // The peer sees an orderly close.
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
    });
}

// Go: TestListenerClose
#[test]
fn listener_close() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        ln.close().unwrap();
        assert_closed(ln.accept().await.map(drop));
        assert_closed(ln.local_addr());
        // The socket itself is closed: nobody listens on the port any more.
        let e = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
    });
}

/// A pending accept is woken by close from another clone (the listener half of
/// `close_wakes_pending_and_queued_operations`).
#[test]
fn listener_close_wakes_a_pending_accept() {
    run(2, LIMIT, async {
        let (ln, _) = listener();
        let ln2 = ln.clone();
        let accept = netpoll::spawn(async move { ln2.accept().await.map(drop) });
        netpoll::time::sleep(Duration::from_millis(20)).await;
        assert!(!accept.is_finished());
        ln.close().unwrap();
        assert_closed(within(PROMPT, "accept after close", accept).await.unwrap());
    });
}

// Go: TestListenCloseListen
#[test]
fn listen_close_listen() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        assert_eq!(sockopt_int(&ln, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
        // Leave a connection in TIME_WAIT on the listener's port: the accepted side closes
        // first. Rebinding then needs SO_REUSEADDR.
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = ln.accept().await.unwrap();
        server.close().unwrap();
        assert_eq!(client.read(&mut [0u8; 1]).await.unwrap(), 0);
        client.close().unwrap();
        ln.close().unwrap();
        let ln = TcpListener::bind(addr).expect("rebinding a just-closed listener's port");
        assert_eq!(ln.local_addr().unwrap(), addr);
        // And it works.
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = ln.accept().await.unwrap();
        c.write_all(b"x").await.unwrap();
        s.read_exact(&mut [0u8; 1]).await.unwrap();
    });
}

// Go: TestAcceptIgnoreAbortedConnRequest
#[test]
fn accept_ignore_aborted_conn_request() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        // A client that connects and resets before the connection is accepted.
        let aborted =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        aborted.connect(&addr.into()).unwrap();
        let aborted_addr = aborted.local_addr().unwrap().as_socket().unwrap();
        aborted.set_linger(Some(Duration::ZERO)).unwrap();
        drop(aborted);
        let good = std::net::TcpStream::connect(addr).unwrap();
        let good_addr = good.local_addr().unwrap();
        // Linux hands out the reset connection (reads then fail) where BSDs fail accept with
        // ECONNABORTED, which we retry; either way accept must not fail and must go on to the
        // good connection.
        loop {
            let (c, peer) = within(PROMPT, "accept", ln.accept()).await.unwrap();
            if peer == good_addr {
                break;
            }
            assert_eq!(peer, aborted_addr);
            let e = c.read(&mut [0u8; 1]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
        }
    });
}

// Go: TestZeroByteRead
#[test]
fn zero_byte_read() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        // No data, no EOF: a zero-length read still returns at once.
        let n = within(PROMPT, "zero-byte read", c.read(&mut []))
            .await
            .unwrap();
        assert_eq!(n, 0);
        let n = within(PROMPT, "zero-byte peek", c.peek(&mut []))
            .await
            .unwrap();
        assert_eq!(n, 0);
        within(PROMPT, "zero-byte read_exact", c.read_exact(&mut []))
            .await
            .unwrap();
        // It consumed nothing and did not break the connection.
        s.write_all(b"abc").await.unwrap();
        let mut b = [0u8; 3];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"abc");
    });
}

// Go: TestCloseUnblocksRead
#[test]
fn close_unblocks_read() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let read = netpoll::spawn(async move { c.read(&mut [0u8; 8]).await });
        netpoll::time::sleep(Duration::from_millis(20)).await;
        assert!(!read.is_finished());
        s.close().unwrap();
        let n = within(PROMPT, "read after the peer's close", read)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the peer's close reads as EOF");
    });
}

// Go: TestNotTemporaryRead
#[test]
fn not_temporary_read() {
    run(2, LIMIT, async {
        // A blocked read, then a reset.
        let (c, s) = pair().await;
        let c2 = c.clone();
        let read = netpoll::spawn(async move { c2.read(&mut [0u8; 8]).await });
        netpoll::time::sleep(Duration::from_millis(20)).await;
        s.set_linger(Some(Duration::ZERO)).unwrap();
        s.close().unwrap();
        let e = within(PROMPT, "read after a reset", read)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
        assert!(!netpoll::net::is_closed(&e));
        // A reset that arrived before the read.
        let (c, s) = pair().await;
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        netpoll::time::sleep(Duration::from_millis(10)).await;
        let e = c.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}");
    });
}

// Go: TestMutexLock/TestMutexStress through the API: concurrent reads on clones are served one
// at a time, in the order they arrived.
#[test]
fn concurrent_reads_on_clones_are_served_fifo() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let clones = [c.clone(), c.clone(), c.clone()];
        let mut bufs = [[0u8; 1]; 3];
        let [b0, b1, b2] = &mut bufs;
        let (o0, o1, o2) = {
            let mut r0 = pin!(clones[0].read(b0));
            let mut r1 = pin!(clones[1].read(b1));
            let mut r2 = pin!(clones[2].read(b2));
            // r0 takes the read lock and waits for data; r1 and r2 queue behind it, in that order.
            assert!(poll_once(r0.as_mut()).await);
            assert!(poll_once(r1.as_mut()).await);
            assert!(poll_once(r2.as_mut()).await);
            s.write_all(b"123").await.unwrap();
            let (mut o0, mut o1, mut o2) = (None, None, None);
            within(
                PROMPT,
                "three queued reads",
                std::future::poll_fn(|cx| {
                    if o0.is_none() {
                        if let Poll::Ready(r) = r0.as_mut().poll(cx) {
                            o0 = Some(r);
                        }
                    }
                    if o1.is_none() {
                        if let Poll::Ready(r) = r1.as_mut().poll(cx) {
                            o1 = Some(r);
                        }
                    }
                    if o2.is_none() {
                        if let Poll::Ready(r) = r2.as_mut().poll(cx) {
                            o2 = Some(r);
                        }
                    }
                    if o0.is_some() && o1.is_some() && o2.is_some() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }),
            )
            .await;
            (o0, o1, o2)
        };
        assert_eq!(o0.unwrap().unwrap(), 1);
        assert_eq!(o1.unwrap().unwrap(), 1);
        assert_eq!(o2.unwrap().unwrap(), 1);
        assert_eq!(bufs, [[b'1'], [b'2'], [b'3']]);
    });
}

/// Writes on clones do not interleave: each `write_all` holds the write side for its whole
/// buffer (Go's `Write` holds `writeLock` across its loop).
#[test]
fn concurrent_write_alls_on_clones_do_not_interleave() {
    run(2, LIMIT, async {
        const LEN: usize = 256 * 1024;
        const WRITERS: u8 = 4;
        let (c, s) = pair().await;
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let c = c.clone();
                netpoll::spawn(async move { c.write_all(&vec![i; LEN]).await })
            })
            .collect();
        let mut seen = Vec::new();
        let mut buf = vec![0u8; LEN];
        for _ in 0..WRITERS {
            s.read_exact(&mut buf).await.unwrap();
            assert!(buf.iter().all(|&x| x == buf[0]), "writes interleaved");
            seen.push(buf[0]);
        }
        for w in writers {
            w.await.unwrap().unwrap();
        }
        seen.sort();
        assert_eq!(seen, (0..WRITERS).collect::<Vec<_>>());
    });
}

// Go: TestMutexCloseUnblock through the API: close wakes the operation waiting for data and the
// ones queued behind it, on every clone, on both sides, with the closed error.
#[test]
fn close_wakes_pending_and_queued_operations() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        // Fill the send buffer so that writes block too.
        let filler = vec![0u8; 64 * 1024];
        c.set_write_deadline(Some(std::time::Instant::now() + Duration::from_millis(50)))
            .unwrap();
        while c.write(&filler).await.is_ok() {}
        c.set_write_deadline(None).unwrap();

        let (a, b, d, e) = (c.clone(), c.clone(), c.clone(), c.clone());
        let big = vec![0u8; 32 << 20]; // more than any socket buffer takes
        let (mut ba, mut bb) = ([0u8; 1], [0u8; 1]);
        let mut read_pending = pin!(a.read(&mut ba));
        let mut read_queued = pin!(b.read(&mut bb));
        let mut write_pending = pin!(d.write_all(&big));
        let mut write_queued = pin!(e.write(b"x"));
        assert!(poll_once(read_pending.as_mut()).await);
        assert!(poll_once(read_queued.as_mut()).await);
        assert!(poll_once(write_pending.as_mut()).await);
        assert!(poll_once(write_queued.as_mut()).await);
        // None of them completes on its own.
        assert!(stays_pending(Duration::from_millis(30), read_queued.as_mut()).await);

        c.close().unwrap();
        assert_closed(within(PROMPT, "pending read", read_pending).await);
        assert_closed(within(PROMPT, "queued read", read_queued).await);
        assert_closed(within(PROMPT, "pending write", write_pending).await);
        assert_closed(within(PROMPT, "queued write", write_queued).await);
        // A second close is an error.
        assert_closed(c.close());
        assert_closed(a.close());
        drop(s);
    });
}

/// Dropping clones does not close the socket; dropping the last one does, and the peer sees
/// EOF.
#[test]
fn dropping_the_last_clone_closes() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let c2 = c.clone();
        drop(c);
        assert!(stays_pending(BLOCKED, s.read(&mut [0u8; 1])).await);
        c2.write_all(b"alive").await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        drop(c2);
        let n = within(PROMPT, "read after the last drop", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);
    });
}

/// A read future dropped while waiting (e.g. by a timeout) leaves the socket usable: the next
/// read gets the data, and close afterwards still works.
#[test]
fn a_cancelled_read_leaves_the_socket_usable() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            assert!(stays_pending(Duration::from_millis(5), c.read(&mut buf)).await);
        }
        // A cancelled queued read, too.
        let c2 = c.clone();
        let mut b2 = [0u8; 1];
        {
            let mut first = pin!(c.read(&mut buf));
            let mut queued = pin!(c2.read(&mut b2));
            assert!(poll_once(first.as_mut()).await);
            assert!(poll_once(queued.as_mut()).await);
        }
        s.write_all(b"data").await.unwrap();
        within(PROMPT, "read after cancellations", c.read_exact(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf, b"data");
        c.close().unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
    });
}

/// `Runtime` drop closes the sockets its tasks held: a peer in another runtime sees EOF.
#[test]
fn dropping_the_runtime_closes_its_sockets() {
    let peer_rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    let _dog = Watchdog::new(LIMIT);
    let (ln, addr) = {
        let _g = peer_rt.enter();
        listener()
    };
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let c = TcpStream::connect(addr).await.unwrap();
        netpoll::spawn(async move {
            let _ = c.read(&mut [0u8; 1]).await; // blocks until the runtime goes away
        });
    });
    peer_rt.block_on(async {
        let (s, _) = ln.accept().await.unwrap();
        drop(rt);
        let n = within(PROMPT, "read after the runtime drop", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);
    });
}

/// A small deterministic generator for the stress tests' choices.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// Go: TestMutexStress and TestMutexCloseUnblock through the API, with cancellation: tasks on
// clones of one connection read, write, peek, set deadlines and give up on operations midway,
// then a close lands at a varying moment. Every task must end with the closed error (none
// hangs, none panics), and the peer must see the connection end.
#[test]
fn close_races_with_operations_and_cancellations_on_clones() {
    run(4, Duration::from_secs(60), async {
        for round in 0..40u64 {
            let (c, s) = pair().await;
            let peer = netpoll::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            // Answer some of it so that reads on the other side have data.
                            let _ = s.write(&buf[..n.min(7)]).await;
                        }
                    }
                }
            });
            let tasks: Vec<_> = (0..8u64)
                .map(|k| {
                    let c = c.clone();
                    netpoll::spawn(async move {
                        let mut rng = XorShift(round * 1000 + k + 1);
                        let mut buf = [0u8; 64];
                        loop {
                            let r: io::Result<()> = match rng.next(6) {
                                0 => c.read(&mut buf).await.map(drop),
                                1 => c.write_all(&buf[..rng.next(64) as usize]).await,
                                2 => c.peek(&mut buf).await.map(drop),
                                3 => {
                                    let d = Duration::from_micros(rng.next(500));
                                    match netpoll::time::timeout(d, c.read_exact(&mut buf[..3]))
                                        .await
                                    {
                                        Ok(r) => r,
                                        Err(_) => Ok(()), // cancelled midway
                                    }
                                }
                                4 => {
                                    let t = std::time::Instant::now()
                                        + Duration::from_micros(rng.next(300));
                                    c.set_deadline(Some(t)).and_then(|()| c.set_deadline(None))
                                }
                                _ => {
                                    let d = Duration::from_micros(rng.next(300));
                                    match netpoll::time::timeout(d, c.write(b"ping")).await {
                                        Ok(r) => r.map(drop),
                                        Err(_) => Ok(()),
                                    }
                                }
                            };
                            match r {
                                Err(e) if netpoll::net::is_closed(&e) => return,
                                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                                Err(e) => panic!("task {k}: {e:?}"),
                                Ok(()) => {}
                            }
                        }
                    })
                })
                .collect();
            match round % 3 {
                0 => netpoll::yield_now().await,
                1 => netpoll::time::sleep(Duration::from_micros(200)).await,
                _ => netpoll::time::sleep(Duration::from_millis(2)).await,
            }
            c.close().unwrap();
            for t in tasks {
                within(PROMPT, "an operation after close", t).await.unwrap();
            }
            drop(c);
            within(PROMPT, "the peer to see the close", peer)
                .await
                .unwrap();
        }
    });
}

/// A socket kept past its runtime's drop: operations fail with the closed error (without a
/// runtime to wait on, none may block), and dropping the socket still closes it.
#[test]
fn a_socket_that_outlives_its_runtime_fails_and_closes() {
    let _dog = Watchdog::new(LIMIT);
    let std_ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_ln.local_addr().unwrap();
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    let c = rt.block_on(TcpStream::connect(addr)).unwrap();
    let ln = {
        let _g = rt.enter();
        TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let (mut peer, _) = std_ln.accept().unwrap();
    drop(rt);

    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut buf = [0u8; 4];
    match pin!(c.read(&mut buf)).poll(&mut cx) {
        Poll::Ready(r) => assert_closed(r),
        Poll::Pending => panic!("a read blocked on a runtime that is gone"),
    }
    match pin!(c.write(b"x")).poll(&mut cx) {
        Poll::Ready(r) => assert_closed(r),
        Poll::Pending => panic!("a write blocked on a runtime that is gone"),
    }
    match pin!(ln.accept()).poll(&mut cx) {
        Poll::Ready(r) => assert_closed(r.map(drop)),
        Poll::Pending => panic!("an accept blocked on a runtime that is gone"),
    }
    drop(c);
    drop(ln);
    use std::io::Read;
    peer.set_read_timeout(Some(PROMPT)).unwrap();
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "the peer sees the close");
}

/// Forgetting an operation in flight (`mem::forget` is safe) and then dropping the socket
/// leaks nothing but that operation: the socket is still closed, and nothing panics.
#[test]
fn dropping_a_socket_whose_operation_was_forgotten_still_closes_it() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 4];
        {
            let mut read = Box::pin(c.read(&mut buf));
            assert!(poll_once(read.as_mut()).await); // holds the read lock, waits for data
            std::mem::forget(read);
        }
        drop(c);
        let n = within(PROMPT, "the peer to see the close", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);

        // The same after an explicit close, which had to leave the fd to the operation.
        let (c, s) = pair().await;
        let mut buf = [0u8; 4];
        {
            let mut read = Box::pin(c.read(&mut buf));
            assert!(poll_once(read.as_mut()).await);
            std::mem::forget(read);
        }
        c.close().unwrap();
        drop(c);
        let n = within(PROMPT, "the peer to see the close", s.read(&mut [0u8; 1]))
            .await
            .unwrap();
        assert_eq!(n, 0);
    });
}

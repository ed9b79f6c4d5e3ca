//! `futures_io::AsyncRead`/`AsyncWrite` on netpoll's streams (feature `futures-io`): data
//! through the traits, and the socket's semantics (deadlines, close, one reader at a time)
//! kept under poll-based callers.
//!
//! Run with `cargo test --features futures-io --test compat_futures_io`.

#![cfg(feature = "futures-io")]

mod util_proc;
mod util_tcp;

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use netpoll::net::{TcpStream, UnixStream};
use util_tcp::*;

// The streams have inherent async methods of the same names (`read`, `write_all`, ...), which
// method resolution prefers; these generic helpers make sure the trait impls are what runs.

async fn t_read(mut r: impl AsyncRead + Unpin, buf: &mut [u8]) -> io::Result<usize> {
    r.read(buf).await
}

async fn t_read_exact(mut r: impl AsyncRead + Unpin, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).await
}

async fn t_read_to_end(mut r: impl AsyncRead + Unpin) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

async fn t_read_vectored(
    mut r: impl AsyncRead + Unpin,
    bufs: &mut [IoSliceMut<'_>],
) -> io::Result<usize> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut r).poll_read_vectored(cx, bufs)).await
}

async fn t_write(mut w: impl AsyncWrite + Unpin, buf: &[u8]) -> io::Result<usize> {
    w.write(buf).await
}

async fn t_write_all(mut w: impl AsyncWrite + Unpin, buf: &[u8]) -> io::Result<()> {
    w.write_all(buf).await
}

async fn t_write_vectored(
    mut w: impl AsyncWrite + Unpin,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
    w.write_vectored(bufs).await
}

async fn t_flush(mut w: impl AsyncWrite + Unpin) -> io::Result<()> {
    w.flush().await
}

async fn t_close(mut w: impl AsyncWrite + Unpin) -> io::Result<()> {
    w.close().await
}

const LIMIT: Duration = Duration::from_secs(20);
const MIB: usize = 1 << 20;

/// A recognisable payload (a wrong offset or a lost chunk changes the comparison).
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An echo server through the traits: `futures::io::copy` from the connection to itself, then a
/// half-close so that the client's `read_to_end` ends.
fn spawn_copy_echo(s: TcpStream) -> netpoll::JoinHandle<u64> {
    netpoll::spawn(async move {
        let n = futures_util::io::copy(&s, &mut &s).await.unwrap();
        t_close(&s).await.unwrap();
        n
    })
}

#[test]
fn copy_echo_of_one_mib_round_trips_through_write_all_and_read_to_end() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let echo = spawn_copy_echo(s);
        let data = payload(MIB);
        // Write from another task: 1 MiB does not fit in the socket buffers, so the echo must
        // be read while it is still being written.
        let writer = {
            let (c, data) = (c.clone(), data.clone());
            netpoll::spawn(async move {
                t_write_all(&c, &data).await.unwrap();
                // Half-close: the echo server sees EOF; reading still works.
                t_close(&c).await.unwrap();
            })
        };
        let back = t_read_to_end(&c).await.unwrap();
        writer.await.unwrap();
        assert_eq!(echo.await.unwrap(), MIB as u64);
        assert_eq!(back.len(), MIB);
        assert!(back == data, "echoed bytes differ from those sent");
    });
}

#[test]
fn owned_stream_implements_the_traits_and_reads_and_writes_vectored() {
    run(2, LIMIT, async {
        let (mut c, mut s) = pair().await;
        t_write_all(&mut c, b"hello, vectored world").await.unwrap();
        let (mut a, mut b) = ([0u8; 7], [0u8; 14]);
        let mut got = 0;
        while got < 21 {
            let mut bufs = [
                IoSliceMut::new(&mut a[got.min(7)..]),
                IoSliceMut::new(&mut b[got.saturating_sub(7)..]),
            ];
            let n = t_read_vectored(&mut s, &mut bufs).await.unwrap();
            assert!(n > 0, "unexpected EOF");
            got += n;
        }
        assert_eq!(&a, b"hello, ");
        assert_eq!(&b, b"vectored world");
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        let n = t_write_vectored(&mut s, &bufs).await.unwrap();
        assert_eq!(
            n, 4,
            "a 4-byte gather write to an empty socket buffer is whole"
        );
        let mut back = [0u8; 4];
        t_read_exact(&mut c, &mut back).await.unwrap();
        assert_eq!(&back, b"abcd");
        // Zero-length reads return at once (Go's zero-length read), without waiting for data.
        assert_eq!(t_read(&mut c, &mut []).await.unwrap(), 0);
        // Flush is a no-op: nothing is buffered.
        t_flush(&mut s).await.unwrap();
    });
}

#[test]
fn unix_stream_echoes_through_the_traits() {
    run(2, LIMIT, async {
        let (c, s) = UnixStream::pair().unwrap();
        let echo = netpoll::spawn(async move {
            let n = futures_util::io::copy(&s, &mut &s).await.unwrap();
            t_close(&s).await.unwrap();
            n
        });
        let data = payload(MIB / 4);
        let writer = {
            let (mut c, data) = (c.clone(), data.clone());
            netpoll::spawn(async move {
                t_write_all(&mut c, &data).await.unwrap();
                t_close(&mut c).await.unwrap();
            })
        };
        let back = t_read_to_end(&c).await.unwrap();
        writer.await.unwrap();
        assert_eq!(echo.await.unwrap(), data.len() as u64);
        assert!(back == data, "echoed bytes differ from those sent");
    });
}

#[test]
fn read_deadline_fails_a_trait_read_with_timed_out() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)))
            .unwrap();
        let start = Instant::now();
        assert_timeout(t_read(&c, &mut [0u8; 16]).await);
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "timed out early"
        );
        // A deadline in the past fails at once, even with data ready (Go).
        t_write_all(&s, b"x").await.unwrap();
        assert_timeout(t_read(&c, &mut [0u8; 16]).await);
        c.set_read_deadline(None).unwrap();
        let mut b = [0u8; 1];
        t_read_exact(&c, &mut b).await.unwrap();
        assert_eq!(&b, b"x");
    });
}

#[test]
fn write_deadline_fails_a_blocked_trait_write_with_timed_out() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await; // the peer never reads: the buffers fill up
        c.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        let chunk = vec![0u8; 256 * 1024];
        let err = loop {
            if let Err(e) = t_write_all(&c, &chunk).await {
                break e;
            }
        };
        assert!(is_timeout(&err), "expected a timeout, got {err:?}");
    });
}

#[test]
fn close_from_another_clone_wakes_a_pending_trait_read() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        let reader = {
            let c = c.clone();
            netpoll::spawn(async move { t_read(&c, &mut [0u8; 16]).await })
        };
        netpoll::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished(), "the read returned without data");
        c.close().unwrap();
        let res = within(Duration::from_secs(5), "read after close", reader).await;
        assert_closed(res.unwrap());
        // Every trait call on the closed socket fails the same way.
        assert_closed(t_write(&c, b"x").await);
        assert_closed(t_read(&c, &mut []).await);
    });
}

#[test]
fn one_task_reads_while_another_writes_through_shared_references() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let _echo = spawn_copy_echo(s);
        let c = Arc::new(c);
        let data = payload(MIB);
        let writer = {
            let (c, data) = (c.clone(), data.clone());
            netpoll::spawn(async move {
                let w: &TcpStream = &c;
                for chunk in data.chunks(4096) {
                    t_write_all(w, chunk).await.unwrap();
                }
            })
        };
        let reader = {
            let c = c.clone();
            netpoll::spawn(async move {
                let r: &TcpStream = &c;
                let mut back = vec![0u8; MIB];
                t_read_exact(r, &mut back).await.unwrap();
                back
            })
        };
        writer.await.unwrap();
        let back = reader.await.unwrap();
        assert!(back == data, "echoed bytes differ from those sent");
    });
}

/// A trait-based reader parks its waker in the descriptor without holding the read lock; an
/// async `read` on a clone then takes the lock and the descriptor over. The displaced reader
/// must be woken (to wait for the lock) rather than left waiting for a readiness notification
/// that now goes to the other reader. Each round, both readers must get a byte.
#[test]
fn trait_reader_and_async_reader_on_clones_both_make_progress() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        for round in 0..20u8 {
            let trait_reader = {
                let c = c.clone();
                netpoll::spawn(async move {
                    let mut b = [0u8; 1];
                    t_read_exact(&c, &mut b).await.map(|()| b[0])
                })
            };
            // Let the trait reader park in the descriptor first.
            netpoll::time::sleep(Duration::from_millis(5)).await;
            let async_reader = {
                let c = c.clone();
                netpoll::spawn(async move {
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).await.map(|()| b[0])
                })
            };
            netpoll::time::sleep(Duration::from_millis(5)).await;
            s.write_all(&[2 * round]).await.unwrap();
            netpoll::time::sleep(Duration::from_millis(2)).await;
            s.write_all(&[2 * round + 1]).await.unwrap();
            let what = format!("round {round}: trait reader");
            let a = within(Duration::from_secs(5), &what, trait_reader).await;
            let what = format!("round {round}: async reader");
            let b = within(Duration::from_secs(5), &what, async_reader).await;
            let mut got = [a.unwrap().unwrap(), b.unwrap().unwrap()];
            got.sort_unstable();
            assert_eq!(got, [2 * round, 2 * round + 1], "round {round}");
        }
    });
}

#[test]
fn dropping_a_pending_trait_read_then_reading_again_works() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 5];
        for _ in 0..5 {
            // The read parks its waker and is dropped mid-way by the timeout.
            assert!(stays_pending(Duration::from_millis(10), t_read(&c, &mut buf)).await);
        }
        s.write_all(b"after").await.unwrap();
        within(Duration::from_secs(5), "trait read after drops", async {
            t_read_exact(&c, &mut buf).await.unwrap()
        })
        .await;
        assert_eq!(&buf, b"after");
        // Nor is the async API disturbed by a stale waker left in the descriptor.
        assert!(stays_pending(Duration::from_millis(10), t_read(&c, &mut buf)).await);
        s.write_all(b"again").await.unwrap();
        within(Duration::from_secs(5), "async read after a drop", async {
            c.read_exact(&mut buf).await.unwrap()
        })
        .await;
        assert_eq!(&buf, b"again");
    });
}

/// The smallest case of the bug marked on the tests above: a task that polls a pending trait
/// read again before any data arrives (as one does when it is woken for another reason: hyper's
/// connection, `copy_bidirectional`) must simply get `Pending` again. In debug builds
/// `Slot::reset` (through `Registration::prepare`) asserts that no waker is parked, but the
/// first poll left this read's own waker parked, without the lock, by design.
#[test]
fn repolling_a_pending_trait_read_is_pending_again() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 8];
        let mut read = std::pin::pin!(t_read(&c, &mut buf));
        std::future::poll_fn(|cx| {
            assert!(read.as_mut().poll(cx).is_pending(), "no data was sent");
            assert!(read.as_mut().poll(cx).is_pending(), "no data was sent");
            std::task::Poll::Ready(())
        })
        .await;
        s.write_all(b"x").await.unwrap();
        let n = within(Duration::from_secs(5), "the re-polled read", read).await;
        assert_eq!(n.unwrap(), 1);
    });
}

/// Two tasks reading one socket through the traits at once, with no data coming: each poll
/// parks its waker in the descriptor, displacing (and waking) the other's, which polls again
/// and displaces it back, so the two poll each other without end (about one core busy) until
/// data arrives. An idle reader should be polled a handful of times, not thousands.
#[test]
fn two_idle_trait_readers_of_one_socket_do_not_poll_each_other_awake() {
    /// Counts the polls of the inner future.
    struct Counted<F> {
        inner: F,
        polls: Arc<std::sync::atomic::AtomicUsize>,
    }
    impl<F: Future + Unpin> Future for Counted<F> {
        type Output = F::Output;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<F::Output> {
            self.polls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll(cx)
        }
    }

    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (c, polls) = (c.clone(), polls.clone());
                netpoll::spawn(async move {
                    let mut b = [0u8; 1];
                    let read = Box::pin(t_read(&c, &mut b));
                    Counted { inner: read, polls }.await
                })
            })
            .collect();
        netpoll::time::sleep(Duration::from_millis(200)).await;
        let idle_polls = polls.load(std::sync::atomic::Ordering::Relaxed);
        s.write_all(b"ab").await.unwrap();
        for r in readers {
            let n = within(Duration::from_secs(5), "a reader", r).await;
            assert_eq!(n.unwrap().unwrap(), 1);
        }
        assert!(
            idle_polls <= 20,
            "two idle readers were polled {idle_polls} times in 200 ms"
        );
    });
}

#[test]
fn close_through_the_trait_half_closes() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        t_close(&c).await.unwrap();
        // The peer reads EOF...
        assert_eq!(t_read(&s, &mut [0u8; 4]).await.unwrap(), 0);
        // ...and can still send: this side still reads.
        t_write_all(&s, b"pong").await.unwrap();
        let mut b = [0u8; 4];
        t_read_exact(&c, &mut b).await.unwrap();
        assert_eq!(&b, b"pong");
        // The socket stays open until `close`.
        c.close().unwrap();
    });
}

//! tokio's `AsyncRead`/`AsyncWrite` on netpoll's streams (feature `tokio-io`): data through
//! the traits (with tokio's own `copy`, `copy_bidirectional`, `read_to_end`), reads into
//! uninitialised memory, and the socket's semantics (deadlines, close, one reader at a time)
//! kept under poll-based callers. No tokio runtime runs: the tasks are netpoll's.
//!
//! Run with `cargo test --features tokio-io --test compat_tokio_io`.

#![cfg(feature = "tokio-io")]

mod util_proc;
mod util_tcp;

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::{TcpStream, UnixStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use util_tcp::*;

// The streams have inherent async methods of the same names (`read`, `write_all`, ...), which
// method resolution prefers; these generic helpers make sure the trait impls are what runs.

async fn t_read(mut r: impl AsyncRead + Unpin, buf: &mut [u8]) -> io::Result<usize> {
    r.read(buf).await
}

async fn t_read_exact(mut r: impl AsyncRead + Unpin, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).await.map(drop)
}

async fn t_read_to_end(mut r: impl AsyncRead + Unpin) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
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
    w.shutdown().await
}

const LIMIT: Duration = Duration::from_secs(20);
const MIB: usize = 1 << 20;

/// A recognisable payload (a wrong offset or a lost chunk changes the comparison).
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An echo server through the traits: `tokio::io::copy` from the connection to itself, then a
/// half-close so that the client's `read_to_end` ends.
fn spawn_copy_echo(s: TcpStream) -> netpoll::JoinHandle<u64> {
    netpoll::spawn(async move {
        let n = tokio::io::copy(&mut &s, &mut &s).await.unwrap();
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
fn owned_stream_implements_the_traits_and_writes_vectored() {
    run(2, LIMIT, async {
        let (mut c, mut s) = pair().await;
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
        fn vectored(w: &impl AsyncWrite) -> bool {
            w.is_write_vectored()
        }
        assert!(vectored(&c) && vectored(&&c));
        let n = t_write_vectored(&mut c, &bufs).await.unwrap();
        assert_eq!(
            n, 4,
            "a 4-byte gather write to an empty socket buffer is whole"
        );
        let mut back = [0u8; 4];
        t_read_exact(&mut s, &mut back).await.unwrap();
        assert_eq!(&back, b"abcd");
        // A read with no room returns at once, without waiting for data.
        assert_eq!(t_read(&mut s, &mut []).await.unwrap(), 0);
        // Flush is a no-op: nothing is buffered.
        t_flush(&mut c).await.unwrap();
    });
}

/// `poll_read` fills the unfilled part of a `ReadBuf` straight from the socket: the bytes are
/// marked initialised and filled exactly as far as the kernel wrote them, and nothing else is
/// touched (no zeroing of the rest).
#[test]
fn reads_into_uninitialised_memory_and_marks_only_what_was_read() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        s.write_all(b"hello").await.unwrap();
        let mut storage = [MaybeUninit::<u8>::uninit(); 64];
        let mut rb = ReadBuf::uninit(&mut storage);
        std::future::poll_fn(|cx| Pin::new(&mut &c).poll_read(cx, &mut rb))
            .await
            .unwrap();
        assert_eq!(rb.filled(), b"hello");
        assert_eq!(
            rb.initialized().len(),
            5,
            "only the bytes read are initialised"
        );
        // A second read appends after the filled part.
        s.write_all(b", world").await.unwrap();
        std::future::poll_fn(|cx| Pin::new(&mut &c).poll_read(cx, &mut rb))
            .await
            .unwrap();
        assert_eq!(rb.filled(), b"hello, world");
        assert_eq!(rb.initialized().len(), 12);
        // Part-initialised storage: the initialised tail beyond what is read stays so.
        let mut storage = [0xaau8; 16];
        let mut rb = ReadBuf::new(&mut storage);
        rb.set_filled(2);
        s.write_all(b"xyz").await.unwrap();
        std::future::poll_fn(|cx| Pin::new(&mut &c).poll_read(cx, &mut rb))
            .await
            .unwrap();
        assert_eq!(rb.filled(), &[0xaa, 0xaa, b'x', b'y', b'z']);
        assert_eq!(rb.initialized().len(), 16);
    });
}

/// A proxy built on `tokio::io::copy_bidirectional` (which half-closes each direction with
/// `poll_shutdown` when the other reaches EOF) relays 1 MiB both ways.
#[test]
fn copy_bidirectional_proxies_one_mib_and_propagates_the_half_close() {
    run(2, LIMIT, async {
        let (client, proxy_front) = pair().await;
        let (proxy_back, server) = pair().await;
        let _echo = spawn_copy_echo(server);
        let proxy = netpoll::spawn(async move {
            let (mut a, mut b) = (proxy_front, proxy_back);
            tokio::io::copy_bidirectional(&mut a, &mut b).await.unwrap()
        });
        let data = payload(MIB);
        let writer = {
            let (c, data) = (client.clone(), data.clone());
            netpoll::spawn(async move {
                t_write_all(&c, &data).await.unwrap();
                t_close(&c).await.unwrap();
            })
        };
        let back = t_read_to_end(&client).await.unwrap();
        writer.await.unwrap();
        assert_eq!(proxy.await.unwrap(), (MIB as u64, MIB as u64));
        assert!(back == data, "proxied bytes differ from those sent");
    });
}

#[test]
fn unix_stream_echoes_through_the_traits() {
    run(2, LIMIT, async {
        let (c, s) = UnixStream::pair().unwrap();
        let echo = netpoll::spawn(async move {
            let n = tokio::io::copy(&mut &s, &mut &s).await.unwrap();
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

// After a trait read that drained the socket, the next one looks for readiness before it
// reads (`NetFd::poll_read_stream`, "Skipping the read that would fail" in `src/net/fd.rs`).
// These check that no byte, end of stream or deadline is missed because of it.

#[test]
fn trait_reads_after_drained_reads_see_every_byte_of_bursts_with_pauses() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        const TOTAL: usize = 300_000;
        let data = payload(TOTAL);
        let sent = data.clone();
        let writer = netpoll::spawn(async move {
            let mut at = 0;
            let mut k = 0usize;
            while at < TOTAL {
                let n = [1, 7, 100, 4096, 65536, 3][k % 6].min(TOTAL - at);
                t_write_all(&s, &sent[at..at + n]).await.unwrap();
                at += n;
                k += 1;
                if k % 5 == 0 {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            }
            s
        });
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = vec![0u8; 8192];
        let mut k = 0usize;
        while got.len() < TOTAL {
            // Mostly short trait reads into a large buffer (each drains the socket), mixed
            // with tiny ones (which leave data behind) and the inherent async read.
            let n = within(Duration::from_secs(10), "a read during the bursts", async {
                match k % 4 {
                    0 | 1 => t_read(&c, &mut buf).await,
                    2 => t_read(&c, &mut buf[..3]).await,
                    _ => c.read(&mut buf).await,
                }
            })
            .await
            .unwrap();
            assert!(n > 0, "EOF after {} of {TOTAL} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            k += 1;
        }
        assert!(got == data, "the bytes read differ from those sent");
        drop(writer.await.unwrap());
    });
}

/// A connected pair whose first stream has just made a trait read that drained its socket.
async fn drained_pair() -> (TcpStream, TcpStream) {
    let (c, s) = pair().await;
    t_write_all(&s, b"abc").await.unwrap();
    // Shorter than the buffer: the read emptied the receive queue.
    assert_eq!(t_read(&c, &mut [0u8; 64]).await.unwrap(), 3);
    (c, s)
}

#[test]
fn peer_close_after_a_drained_trait_read_reads_as_eof() {
    run(2, LIMIT, async {
        let (c, s) = drained_pair().await;
        let mut buf = [0u8; 64];
        s.close().unwrap();
        let n = within(Duration::from_secs(5), "EOF after a drained read", async {
            t_read(&c, &mut buf).await.unwrap()
        })
        .await;
        assert_eq!(n, 0);
    });
}

#[test]
fn deadlines_still_fail_a_trait_read_after_a_drained_read() {
    run(2, LIMIT, async {
        let (c, s) = drained_pair().await;
        let mut buf = [0u8; 64];
        // A deadline that passes while the read waits...
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)))
            .unwrap();
        assert_timeout(t_read(&c, &mut buf).await);
        // ...and one already past, even with data ready (Go).
        t_write_all(&s, b"d").await.unwrap();
        assert_timeout(t_read(&c, &mut buf).await);
        c.set_read_deadline(None).unwrap();
        assert_eq!(t_read(&c, &mut buf).await.unwrap(), 1);
        assert_eq!(&buf[..1], b"d");
    });
}

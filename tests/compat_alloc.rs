//! The trait paths (`futures-io`, `tokio-io`) allocate nothing per call once a connection is
//! set up, waits for readiness included (DESIGN §4), like the async methods
//! (`tests/tcp_alloc.rs`).
//!
//! The counting allocator is `tests/util_alloc` (the monitor's allocations are counted apart
//! and not checked here). Run with `cargo test --all-features --test compat_alloc`; set `NETPOLL_ALLOC_TRACE=1` to
//! print a backtrace of each allocation made while measuring.

#![cfg(any(feature = "futures-io", feature = "tokio-io"))]

mod util_alloc;
mod util_proc;
mod util_tcp;

use std::future::Future;
use std::time::Duration;

use netpoll::net::TcpStream;
use util_alloc::{count_allocs, serial};
use util_tcp::*;

/// The fewest allocations over up to three runs of `f` (stopping at a run with none). Threads
/// that start late on a loaded machine (a worker, the test's watchdog) allocate once in their
/// first moments, which may fall inside a measurement; an allocation per call would show in
/// every run.
async fn fewest_allocs<F: Future<Output = ()>>(mut f: impl FnMut() -> F) -> usize {
    let mut fewest = usize::MAX;
    for _ in 0..3 {
        let n = count_allocs(f()).await.0.others;
        fewest = fewest.min(n);
        if n == 0 {
            break;
        }
    }
    fewest
}

const ROUND_TRIPS: usize = 1000;
const BULK: usize = 4 << 20;

/// An echo peer on the async API (spawned before measuring).
async fn echo_pair() -> (TcpStream, netpoll::JoinHandle<()>) {
    let (c, s) = pair().await;
    let echo = netpoll::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
            }
        }
    });
    (c, echo)
}

/// A peer that reads `BULK` bytes, then answers one byte, for as long as the connection lasts.
fn spawn_sink(s: TcpStream) -> netpoll::JoinHandle<()> {
    netpoll::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut total = 0;
            while total < BULK {
                match s.read(&mut buf).await.unwrap() {
                    0 => return,
                    n => total += n,
                }
            }
            s.write_all(b"k").await.unwrap();
        }
    })
}

/// One test per trait family (futures-io, tokio): the same round trips and bulk writes through
/// the traits' extension methods, counted by the allocator. The families differ only in which
/// traits are in scope, so the body is written once.
macro_rules! trait_io_does_not_allocate {
    ($name:ident, $feature:literal, $($traits:tt)+) => {
        #[cfg(feature = $feature)]
        #[test]
        fn $name() {
            use $($traits)+::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

            async fn round_trips(mut io: impl AsyncRead + AsyncWrite + Unpin, n: usize) {
                let mut back = [0u8; 32];
                for i in 0..n {
                    let msg = [i as u8; 32];
                    io.write_all(&msg).await.unwrap();
                    io.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, msg);
                }
            }
            async fn bulk(mut io: impl AsyncRead + AsyncWrite + Unpin, chunk: &[u8]) {
                for _ in 0..BULK / chunk.len() {
                    io.write_all(chunk).await.unwrap();
                }
                io.read_exact(&mut [0u8; 1]).await.unwrap();
            }

            let _serial = serial();
            run(2, Duration::from_secs(60), async {
                let (c, echo) = echo_pair().await;
                round_trips(&c, 200).await; // warm up
                let n = fewest_allocs(|| round_trips(&c, ROUND_TRIPS)).await;
                assert_eq!(n, 0, "{ROUND_TRIPS} trait round trips allocated {n} times");
                drop(c);
                echo.await.unwrap();

                let (c, s) = pair().await;
                let sink = spawn_sink(s);
                let chunk = vec![0x5au8; 64 * 1024];
                bulk(&c, &chunk).await; // warm up
                let n = fewest_allocs(|| bulk(&c, &chunk)).await;
                assert_eq!(n, 0, "a {BULK}-byte trait transfer allocated {n} times");
                drop(c);
                sink.await.unwrap();
            });
        }
    };
}

trait_io_does_not_allocate!(
    futures_io_round_trips_and_bulk_writes_do_not_allocate,
    "futures-io",
    futures_util::io
);
trait_io_does_not_allocate!(
    tokio_io_round_trips_and_bulk_writes_do_not_allocate,
    "tokio-io",
    tokio::io
);

//! The trait paths (`futures-io`, `tokio-io`) allocate nothing per call once a connection is
//! set up, waits for readiness included (DESIGN §4), like the async methods
//! (`tests/tcp_alloc.rs`).
//!
//! A counting global allocator counts every allocation in the process but the runtime
//! monitor's, so the tests of this binary run one at a time and measure while nothing but the
//! measured traffic runs.
//!
//! Run with `cargo test --all-features --test compat_alloc`; set `NETPOLL_ALLOC_TRACE=1` to
//! print a backtrace of each allocation made while measuring.

#![cfg(any(feature = "futures-io", feature = "tokio-io"))]

mod util_tcp;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use netpoll::net::TcpStream;
use util_tcp::*;

struct Counting;

/// Allocations by every thread but the runtime's monitor (whose rounds are timed, not driven
/// by the traffic; `tests/tcp_alloc.rs` checks it apart).
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
const SYSMON_THREAD: &str = "netpoll-worker-sysmon";
/// Print a backtrace of each counted allocation (while measuring, if asked).
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread is the monitor: unknown until its first allocation.
    static IS_SYSMON: Cell<Option<bool>> = const { Cell::new(None) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

fn note_alloc() {
    if IN_HOOK.with(|t| t.replace(true)) {
        return; // an allocation made by the bookkeeping below
    }
    let sysmon = IS_SYSMON.with(|k| match k.get() {
        Some(v) => v,
        None => {
            let v = std::thread::current().name() == Some(SYSMON_THREAD);
            k.set(Some(v));
            v
        }
    });
    if !sysmon {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) {
            let bt = std::backtrace::Backtrace::force_capture();
            let name = std::thread::current().name().map(str::to_owned);
            let _ = writeln!(std::io::stderr(), "allocation on {name:?}:\n{bt}");
        }
    }
    IN_HOOK.with(|t| t.set(false));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

async fn count_allocs<F: Future>(f: F) -> (usize, F::Output) {
    let trace = std::env::var_os("NETPOLL_ALLOC_TRACE").is_some();
    let before = ALLOCS.load(Ordering::SeqCst);
    TRACE.store(trace, Ordering::SeqCst);
    let out = f.await;
    TRACE.store(false, Ordering::SeqCst);
    (ALLOCS.load(Ordering::SeqCst) - before, out)
}

/// The fewest allocations over up to three runs of `f` (stopping at a run with none). Threads
/// that start late on a loaded machine (a worker, the test's watchdog) allocate once in their
/// first moments, which may fall inside a measurement; an allocation per call would show in
/// every run.
async fn fewest_allocs<F: Future<Output = ()>>(mut f: impl FnMut() -> F) -> usize {
    let mut fewest = usize::MAX;
    for _ in 0..3 {
        let (n, ()) = count_allocs(f()).await;
        fewest = fewest.min(n);
        if n == 0 {
            break;
        }
    }
    fewest
}

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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

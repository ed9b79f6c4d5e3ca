//! The I/O paths allocate nothing once a connection is set up (DESIGN §4: "no allocation ... per
//! I/O operation and per wake").
//!
//! A counting global allocator counts every allocation in the process, the runtime's worker
//! threads included, so this binary has a single test and measures while nothing but the
//! measured traffic runs. Set `NETPOLL_ALLOC_TRACE=1` to print a backtrace of each allocation
//! made while measuring.

mod util_tcp;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_tcp::*;

struct Counting;

/// Allocations by every thread but the runtime's monitor.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Allocations by the monitor thread (sysmon), counted apart: see
/// `sysmon_does_not_allocate_while_workers_are_busy`.
static SYSMON_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
/// Serialises the traces of concurrent allocations.
static TRACE_LOCK: AtomicBool = AtomicBool::new(false);
/// The monitor thread's name: the builder's default thread name plus "-sysmon".
const SYSMON_THREAD: &str = "netpoll-worker-sysmon";

thread_local! {
    /// Set while this thread runs allocator bookkeeping, whose own allocations are not counted.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is the monitor: unknown until its first allocation.
    static IS_SYSMON: Cell<Option<bool>> = const { Cell::new(None) };
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
    if sysmon {
        SYSMON_ALLOCS.fetch_add(1, Ordering::Relaxed);
    } else {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    if TRACE.load(Ordering::Relaxed) {
        while TRACE_LOCK.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let bt = std::backtrace::Backtrace::force_capture();
        let name = std::thread::current().name().map(str::to_owned);
        let _ = writeln!(std::io::stderr(), "allocation on {name:?}:\n{bt}");
        TRACE_LOCK.store(false, Ordering::Release);
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

/// Allocations counted by [`count_allocs`]: (all threads but the monitor, the monitor).
struct Counts {
    others: usize,
    sysmon: usize,
}

/// Runs `f` with allocations counted (and traced if asked).
async fn count_allocs<F: std::future::Future>(f: F) -> (Counts, F::Output) {
    let trace = std::env::var_os("NETPOLL_ALLOC_TRACE").is_some();
    let before = (
        ALLOCS.load(Ordering::SeqCst),
        SYSMON_ALLOCS.load(Ordering::SeqCst),
    );
    TRACE.store(trace, Ordering::SeqCst);
    let out = f.await;
    TRACE.store(false, Ordering::SeqCst);
    let counts = Counts {
        others: ALLOCS.load(Ordering::SeqCst) - before.0,
        sysmon: SYSMON_ALLOCS.load(Ordering::SeqCst) - before.1,
    };
    (counts, out)
}

/// The tests of this binary run one at a time: they count the whole process's allocations.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An echo server on one end of a fresh pair; returns the other end.
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

/// `n` echo round trips of 32 bytes, optionally pushing a deadline forward before each one
/// (Go's idle timeout pattern).
async fn round_trips(c: &TcpStream, n: usize, with_deadline: bool) {
    let mut back = [0u8; 32];
    for i in 0..n {
        if with_deadline {
            c.set_deadline(Some(Instant::now() + Duration::from_secs(30)))
                .unwrap();
        }
        let msg = [i as u8; 32];
        c.write_all(&msg).await.unwrap();
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
}

const ROUND_TRIPS: usize = 2000;
const ACCEPTS: usize = 200;
const BULK: usize = 8 << 20;

#[test]
fn read_write_and_accept_paths_do_not_allocate() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        // The echo task is spawned (one allocation) before measuring.
        let (c, echo) = echo_pair().await;
        // Warm up: lazily allocated state (timers, queues, thread-locals) is created here.
        round_trips(&c, 200, true).await;
        round_trips(&c, 200, false).await;

        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, false)).await;
        assert_eq!(
            n.others, 0,
            "{ROUND_TRIPS} echo round trips allocated {} times",
            n.others
        );
        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, true)).await;
        assert_eq!(
            n.others, 0,
            "{ROUND_TRIPS} echo round trips with deadlines allocated {} times",
            n.others
        );
        drop(c);
        echo.await.unwrap();

        // Bulk transfer: writes wait for buffer space and are woken as the peer drains it.
        let (c, s) = pair().await;
        let sink = netpoll::spawn(async move {
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
        });
        let chunk = vec![0x5au8; 64 * 1024];
        let bulk = || async {
            for _ in 0..BULK / chunk.len() {
                c.write_all(&chunk).await.unwrap();
            }
            c.read_exact(&mut [0u8; 1]).await.unwrap();
        };
        bulk().await; // warm up
        let (n, ()) = count_allocs(bulk()).await;
        assert_eq!(
            n.others, 0,
            "a {BULK}-byte transfer allocated {} times",
            n.others
        );
        drop(c);
        sink.await.unwrap();

        // Accept: the connections wait in the kernel's queue (dialled by std, which allocates
        // nothing here), so the count is the accept path's alone. Each accepted stream is one
        // allocation: its shared state (an `Arc`), which Go allocates too (`newFD`).
        let (ln, addr) = listener();
        for _ in 0..20 {
            let _c = std::net::TcpStream::connect(addr).unwrap();
            drop(ln.accept().await.unwrap()); // warm up
        }
        let mut clients = Vec::with_capacity(ACCEPTS);
        for _ in 0..ACCEPTS {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let (n, ()) = count_allocs(async {
            for _ in 0..ACCEPTS {
                let (conn, _) = ln.accept().await.unwrap();
                drop(conn);
            }
        })
        .await;
        assert_eq!(
            n.others, ACCEPTS,
            "{ACCEPTS} accepts allocated {} times (expected one per connection)",
            n.others
        );
        // Accepts that wait, woken by connections made while they wait.
        let mut held = Vec::with_capacity(20);
        let dialer = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(2));
                held.push(std::net::TcpStream::connect(addr).unwrap());
            }
            held
        });
        let (n, ()) = count_allocs(async {
            for _ in 0..20 {
                drop(ln.accept().await.unwrap());
            }
        })
        .await;
        drop(dialer.join().unwrap());
        // (The dialer thread allocates nothing: `held` has its capacity.)
        assert_eq!(
            n.others, 20,
            "20 waiting accepts allocated {} times (expected 20)",
            n.others
        );
    });
}

/// A read that times out allocates nothing either: idle timeouts are a normal event for a
/// server, not an exceptional one.
#[test]
fn timed_out_reads_do_not_allocate() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        let (c, _s) = pair().await;
        let timed_out_read = || async {
            c.set_read_deadline(Some(Instant::now() + Duration::from_micros(200)))
                .unwrap();
            assert_timeout(c.read(&mut [0u8; 8]).await);
        };
        for _ in 0..10 {
            timed_out_read().await; // warm up
        }
        let (n, ()) = count_allocs(async {
            for _ in 0..50 {
                timed_out_read().await;
            }
        })
        .await;
        assert_eq!(
            n.others, 0,
            "50 timed-out reads allocated {} times",
            n.others
        );
    });
}

/// The monitor thread must not allocate on its rounds either: they run every 20 µs to 10 ms
/// while the workers are busy, so an allocation there is a steady trickle under load.
#[test]
fn sysmon_does_not_allocate_while_workers_are_busy() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        let (c, echo) = echo_pair().await;
        round_trips(&c, 200, false).await;
        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, false)).await;
        assert_eq!(
            n.sysmon, 0,
            "sysmon allocated {} times during {ROUND_TRIPS} round trips",
            n.sysmon
        );
        drop(c);
        echo.await.unwrap();
    });
}

//! A counting global allocator for the allocation tests (`tcp_alloc`, `compat_alloc`): a test
//! binary that declares this module counts every allocation in the process, the runtime's
//! worker threads included, with the monitor thread's counted apart (its rounds are timed, not
//! driven by the traffic). The tests of such a binary take [`serial`] and measure while nothing
//! but the measured traffic runs. `NETPOLL_ALLOC_TRACE=1` prints a backtrace of each
//! allocation made while measuring.

#![allow(dead_code)] // each test binary uses a different subset

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct Counting;

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
pub struct Counts {
    pub others: usize,
    pub sysmon: usize,
}

/// Runs `f` with allocations counted (and traced if asked).
pub async fn count_allocs<F: std::future::Future>(f: F) -> (Counts, F::Output) {
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

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

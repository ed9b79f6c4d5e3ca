//! Allocation counting for the `micro` cases: a global allocator that forwards to the system
//! allocator and, only between [`start`] and [`stop`], counts allocations (all threads). While
//! counting is off it costs one relaxed load per allocation. The cargo feature `alloc-count`
//! (on by default) installs it; without it [`stop`] returns `None`.

#[cfg(feature = "alloc-count")]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    pub(super) static ON: AtomicBool = AtomicBool::new(false);
    pub(super) static COUNT: AtomicU64 = AtomicU64::new(0);

    struct Counting;

    fn note() {
        if ON.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
    // `GlobalAlloc` contract is `System`'s; counting touches only two atomics.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note();
            // SAFETY: forwarded as is.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            // SAFETY: forwarded as is; `ptr` came from `System` through this allocator.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded as is; `ptr` came from `System` through this allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

/// Starts counting allocations (from zero).
pub(super) fn start() {
    #[cfg(feature = "alloc-count")]
    {
        use std::sync::atomic::Ordering;
        counting::COUNT.store(0, Ordering::Relaxed);
        counting::ON.store(true, Ordering::SeqCst);
    }
}

/// Stops counting; the allocations since [`start`], or `None` when counting is compiled out.
pub(super) fn stop() -> Option<u64> {
    #[cfg(feature = "alloc-count")]
    {
        use std::sync::atomic::Ordering;
        counting::ON.store(false, Ordering::SeqCst);
        Some(counting::COUNT.load(Ordering::Relaxed))
    }
    #[cfg(not(feature = "alloc-count"))]
    None
}

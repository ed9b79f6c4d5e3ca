//! Type-stable storage for poll descriptors: Go's `pollcache`.
//!
//! The kernel hands back whatever 64-bit token a descriptor was registered with, and an
//! `epoll_wait` already in progress can return an event for a socket that another thread has
//! just closed. So the memory a token names must stay a valid [`PollDesc`] for the life of the
//! runtime: descriptors are allocated in pages that are never freed or moved while the cache
//! lives, and a freed descriptor goes on a free list to be reused. The token carries the
//! descriptor's generation, and an event whose generation is stale is dropped (Go's `fdseq`).
//!
//! Page `k` holds `FIRST_PAGE << k` descriptors, so index → (page, offset) is a couple of bit
//! operations and the first page is small (a runtime with a handful of sockets stays small).
//!
//! # Ground rules
//!
//! * `pages[k]` is null until page `k` is allocated (under `synced`), then published with
//!   `Release` and never changed until `Drop`; readers load it with `Acquire`.
//! * `synced` owns the free list and the high-water mark. A descriptor's own fields follow the
//!   rules in `pd/mod.rs`.

use super::PollDesc;
use crate::loom::{AtomicPtr, Mutex, Ordering};
use std::ptr;

/// Descriptors in page 0. 64 descriptors of about 200 bytes: a few kilobytes, like Go's
/// 4 KiB `pollBlockSize`.
#[cfg(not(loom))]
const FIRST_PAGE: usize = 64;
/// Under loom, two, so that a model's third descriptor already needs a new page.
#[cfg(loom)]
const FIRST_PAGE: usize = 2;
/// Enough pages for `FIRST_PAGE * (2^PAGES - 1)` ≥ 2^32 descriptors: every u32 index has a
/// page (27 pages of 64 upwards).
const PAGES: usize = 33 - FIRST_PAGE.trailing_zeros() as usize;

pub(crate) struct Cache {
    pages: [AtomicPtr<PollDesc>; PAGES],
    synced: Mutex<Synced>,
}

struct Synced {
    free: Vec<u32>,
    /// Indexes below this have been handed out at least once.
    high_water: u32,
}

fn page_of(index: u32) -> (usize, usize) {
    let i = index as u64 + FIRST_PAGE as u64;
    let page = (63 - i.leading_zeros()) as usize - FIRST_PAGE.trailing_zeros() as usize;
    let offset = (i - ((FIRST_PAGE as u64) << page)) as usize;
    (page, offset)
}

fn page_len(page: usize) -> usize {
    FIRST_PAGE << page
}

impl Cache {
    pub(crate) fn new() -> Cache {
        Cache {
            pages: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            synced: Mutex::new(Synced {
                free: Vec::new(),
                high_water: 0,
            }),
        }
    }

    /// Takes a descriptor (reused or new) and returns its index.
    pub(crate) fn alloc(&self) -> (u32, &PollDesc) {
        let mut synced = self.synced.lock();
        let index = match synced.free.pop() {
            Some(index) => index,
            None => {
                let index = synced.high_water;
                synced.high_water = index
                    .checked_add(1)
                    .expect("netpoll: more than 2^32 poll descriptors");
                let (page, _) = page_of(index);
                if self.pages[page].load(Ordering::Relaxed).is_null() {
                    let descs: Box<[PollDesc]> =
                        (0..page_len(page)).map(|_| PollDesc::new()).collect();
                    self.pages[page].store(Box::into_raw(descs).cast(), Ordering::Release);
                }
                index
            }
        };
        drop(synced);
        let pd = self.get(index).expect("allocated index has a page");
        (index, pd)
    }

    /// Puts a descriptor back on the free list. The caller has bumped its generation.
    pub(crate) fn free(&self, index: u32) {
        self.synced.lock().free.push(index);
    }

    /// The descriptor at `index`, if its page exists. Lock-free.
    pub(crate) fn get(&self, index: u32) -> Option<&PollDesc> {
        let (page, offset) = page_of(index);
        if page >= PAGES {
            return None;
        }
        let base = self.pages[page].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: a non-null page pointer names a live allocation of `page_len(page)`
        // descriptors that is not freed before `self` drops (ground rules), and
        // `offset < page_len(page)` by construction of `page_of`.
        Some(unsafe { &*base.add(offset) })
    }

    // Part of the structure's API; only the unit tests need it so far.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    /// Descriptors handed out and not freed.
    pub(crate) fn in_use(&self) -> usize {
        let synced = self.synced.lock();
        synced.high_water as usize - synced.free.len()
    }

    /// Calls `f` on every descriptor ever handed out (used at shutdown).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&PollDesc)) {
        let high_water = self.synced.lock().high_water;
        for index in 0..high_water {
            if let Some(pd) = self.get(index) {
                f(pd);
            }
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for (page, slot) in self.pages.iter().enumerate() {
            let base = slot.load(Ordering::Acquire);
            if !base.is_null() {
                let slice = ptr::slice_from_raw_parts_mut(base, page_len(page));
                // SAFETY: the page was created by `Box::into_raw` of a boxed slice of exactly
                // `page_len(page)` descriptors, and nobody can reach it after the cache drops.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn page_of_maps_indexes_to_growing_pages() {
        assert_eq!(page_of(0), (0, 0));
        assert_eq!(page_of(63), (0, 63));
        assert_eq!(page_of(64), (1, 0));
        assert_eq!(page_of(191), (1, 127));
        assert_eq!(page_of(192), (2, 0));
        assert_eq!(page_of(u32::MAX).0, PAGES - 1);
    }

    #[test]
    fn freed_descriptors_are_reused_and_stay_at_the_same_address() {
        let cache = Cache::new();
        let (a, pa) = cache.alloc();
        let addr = pa as *const PollDesc;
        let (b, _) = cache.alloc();
        assert_ne!(a, b);
        cache.free(a);
        let (c, pc) = cache.alloc();
        assert_eq!(c, a);
        assert_eq!(pc as *const PollDesc, addr);
        assert_eq!(cache.in_use(), 2);
    }

    #[test]
    fn many_descriptors_span_pages_without_moving() {
        let cache = Cache::new();
        let first = cache.alloc().1 as *const PollDesc;
        for _ in 0..1000 {
            cache.alloc();
        }
        assert_eq!(cache.get(0).unwrap() as *const PollDesc, first);
        assert!(cache.get(1000).is_some());
        assert!(cache.get(100_000).is_none());
    }
}

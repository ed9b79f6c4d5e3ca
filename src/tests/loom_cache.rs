//! Loom models of the descriptor cache (`pd::cache`) with the poller's side of it
//! (`pd::driver::dispatch`): descriptors handed out and taken back while events for them are
//! still arriving.
//!
//! Run: `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --release --lib
//! --target-dir target/loom loom_cache`.
//!
//! The models run the runtime's own code: `Cache::alloc`/`free`, `PollDesc::reuse` (what
//! `Registration::new` does to a descriptor before registering the socket), `PollDesc::retire`
//! (what dropping the registration does before the free) and `dispatch` (the poller's handling
//! of one event). The kernel is left out: a token reaches the poller through an atomic that
//! stands in for `epoll_ctl` and `epoll_wait`. Under loom the first page holds two
//! descriptors, so a third already needs a new page.
//!
//! Mutations each model fails on (checked when they were written):
//! * checking the generation before the CAS in `set_event_err` instead of inside it: a late
//!   error marks the next socket (the first model);
//! * setting the exceptional bit after the readiness in `dispatch` (the second);
//! * creating a new page after the cache's lock is released: two openers each create it, and
//!   one's descriptor moves (the third).
//!
//! In the second model the reader runs on the spawned thread. With the reader on the main
//! thread right after the spawn, loom explored six interleavings and none in which the
//! poller's event lands first, so the reordering above went unnoticed: loom 0.7 remembers only
//! the last access to an atomic, and the poller loads the slot's state before its CAS
//! (tokio-rs/loom#166; `loom_queue.rs` has the longer story).

use crate::loom::{thread, Arc, AtomicU64, Ordering};
use crate::pd::cache::Cache;
use crate::pd::driver::dispatch;
use crate::pd::{Mode, PollError};
use crate::sched::inject::Batch;
use crate::sys::Event;

fn token(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

/// The poller delivering one event with `bits` for `token`. No task waits in these models, so
/// nothing may come out for the scheduler.
fn deliver(cache: &Cache, token: u64, bits: i32) {
    let mut batch = Batch::new();
    dispatch(cache, Event::from_bits(token, bits as u32), &mut batch);
    assert!(batch.is_empty());
}

/// A socket closes (its registration drops) while the poller handles a late error event for it
/// (exactly `EPOLLERR`: "not pollable", and exceptional), and the next socket takes the
/// descriptor. The generation check and the generation-guarded CASes must keep the event's
/// error bits off the new socket, whatever the interleaving (Go #59545). Readiness may reach
/// it, a spurious wake-up by design (`pd/mod.rs`), so the slots are not asserted on.
#[test]
fn loom_cache_a_late_error_event_never_marks_the_socket_that_reuses_the_descriptor() {
    loom::model(|| {
        let cache = Arc::new(Cache::new());
        let (index, pd) = cache.alloc();
        let old = token(index, pd.reuse());
        let poller = {
            let cache = cache.clone();
            thread::spawn(move || deliver(&cache, old, libc::EPOLLERR))
        };
        pd.retire();
        cache.free(index);
        let (again, pd) = cache.alloc();
        assert_eq!(again, index, "the free list hands the descriptor out again");
        let generation = pd.reuse();
        assert_ne!(token(index, generation), old);
        poller.join().unwrap();
        assert_eq!(
            pd.check_now(Mode::Read),
            Ok(()),
            "a stale error reached the new socket"
        );
        assert!(!pd.exceptional(), "a stale hang-up reached the new socket");
        assert_eq!(pd.generation(), generation);
    });
}

/// An event with data and the peer's FIN (`EPOLLIN | EPOLLRDHUP`) for the current socket, as a
/// reader takes the readiness. A reader that took the event's readiness must also see the
/// exceptional bit: otherwise it could take its next short read for "drained" and wait for an
/// event that edge-triggered epoll never sends again (`net/fd.rs`, "Skipping the read that
/// would fail"). The control for the first model, too: the socket's own events do mark it.
#[test]
fn loom_cache_a_reader_that_takes_an_events_readiness_sees_its_hang_up() {
    loom::model(|| {
        let cache = Arc::new(Cache::new());
        let (index, pd) = cache.alloc();
        let current = token(index, pd.reuse());
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || {
                let pd = cache.get(index).unwrap();
                if pd.slot(Mode::Read).take_ready() {
                    assert!(
                        pd.exceptional(),
                        "readiness seen before the hang-up it came with"
                    );
                }
            })
        };
        deliver(&cache, current, libc::EPOLLIN | libc::EPOLLRDHUP);
        reader.join().unwrap();
        assert!(pd.exceptional(), "the socket's own hang-up was lost");
        assert_eq!(pd.check_now(Mode::Read), Ok(()));
        pd.retire();
        assert_eq!(pd.check_now(Mode::Read), Err(PollError::Closing));
        cache.free(index);
    });
}

/// Two sockets open at once while a third closes, with the first page full: both new ones may
/// need the second page, or one of them gets the closed socket's descriptor. Each gets a
/// descriptor of its own that never moves (the page is created once, under the lock), and an
/// event for each, handed over by another thread, finds it in use by that socket.
#[test]
fn loom_cache_sockets_opened_at_once_get_descriptors_of_their_own() {
    loom::model(|| {
        let cache = Arc::new(Cache::new());
        let (first, pd) = cache.alloc();
        pd.reuse();
        cache.alloc().1.reuse(); // page 0 (two descriptors under loom) is now full
                                 // What `epoll_ctl` then `epoll_wait` would carry from each opener to the poller.
        let kernel: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let openers: Vec<_> = (0..2)
            .map(|i| {
                let cache = cache.clone();
                let kernel = kernel.clone();
                thread::spawn(move || {
                    let (index, pd) = cache.alloc();
                    let t = token(index, pd.reuse());
                    kernel[i].store(t, Ordering::Release);
                    (index, pd as *const _ as usize)
                })
            })
            .collect();
        let poller = {
            let cache = cache.clone();
            let kernel = kernel.clone();
            thread::spawn(move || {
                for k in kernel.iter() {
                    let t = k.load(Ordering::Acquire);
                    if t != 0 {
                        deliver(&cache, t, libc::EPOLLIN);
                    }
                }
            })
        };
        pd.retire();
        cache.free(first);
        let got: Vec<_> = openers.into_iter().map(|h| h.join().unwrap()).collect();
        poller.join().unwrap();
        assert_ne!(got[0].0, got[1].0, "two sockets share a descriptor index");
        assert_ne!(got[0].1, got[1].1, "two sockets share a descriptor");
        for &(index, addr) in &got {
            let pd = cache.get(index).expect("a handed-out index has a page");
            assert_eq!(pd as *const _ as usize, addr, "a descriptor moved");
            assert_eq!(pd.check_now(Mode::Read), Ok(()));
        }
        assert_eq!(cache.in_use(), 3);
    });
}

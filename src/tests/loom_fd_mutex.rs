//! Loom models of the fd mutex (`net::fd_mutex`): its lock-free fast paths (one CAS on the
//! state word to lock, unlock or take a reference) against the slow paths under the waiters
//! lock (queueing, hand-off, close).
//!
//! Run: `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --release --lib
//! --target-dir target/loom loom_fd_mutex`.
//!
//! What must hold in every interleaving: at most one holder per side; a queued task is either
//! handed the lock or failed by close, never forgotten; after close no lock succeeds; and the
//! "destroy the fd" verdict (the last reference leaving a closed mutex) is given exactly once.

use std::task::{Context, Poll, Waker};

use crate::loom::{thread, Arc, AtomicUsize, Ordering};
use crate::net::fd_mutex::{Acquire, FdMutex, LockError, Side};

/// How a blocking lock attempt ended.
#[derive(Debug, PartialEq)]
enum Locked {
    Yes,
    /// Failed with the closed error; `destroy` when releasing the queued attempt's reference
    /// was the last one.
    Closed {
        destroy: bool,
    },
}

/// `lock`, then, when queued, `poll_queued` until it resolves (yielding to the other threads
/// between polls, as a task would wait for its wake-up).
fn lock_blocking(m: &FdMutex, side: Side) -> Locked {
    let ticket = match m.lock(side) {
        Ok(Acquire::Locked) => return Locked::Yes,
        Ok(Acquire::Queued(ticket)) => ticket,
        Err(LockError::Closed) => return Locked::Closed { destroy: false },
        Err(e) => panic!("unexpected {e:?}"),
    };
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match m.poll_queued(side, ticket, &mut cx) {
            Poll::Ready(Ok(())) => return Locked::Yes,
            Poll::Ready(Err(LockError::Closed)) => {
                return Locked::Closed {
                    destroy: m.decref(),
                }
            }
            Poll::Ready(Err(e)) => panic!("unexpected {e:?}"),
            Poll::Pending => thread::yield_now(),
        }
    }
}

/// An operation: lock (waiting if queued), then unlock; counts a destroy verdict from either
/// the unlock or the release of a queued attempt that close failed.
fn lock_and_unlock(m: &FdMutex, side: Side, destroyed: &AtomicUsize) {
    let destroy = match lock_blocking(m, side) {
        Locked::Yes => m.unlock(side),
        Locked::Closed { destroy } => destroy,
    };
    if destroy {
        destroyed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two tasks take the same side in turn: never both inside, and the state is clean after.
#[test]
fn loom_fd_mutex_one_holder_per_side_and_queued_tasks_get_the_lock() {
    loom::model(|| {
        let m = Arc::new(FdMutex::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let task = |m: Arc<FdMutex>, inside: Arc<AtomicUsize>| {
            move || {
                assert_eq!(lock_blocking(&m, Side::Read), Locked::Yes);
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(!m.unlock(Side::Read), "destroy without close");
            }
        };
        let t = thread::spawn(task(m.clone(), inside.clone()));
        task(m.clone(), inside)();
        t.join().unwrap();
        assert!(!m.has_refs(), "a reference leaked");
        assert!(matches!(m.lock(Side::Read), Ok(Acquire::Locked)));
    });
}

/// A lock and unlock race close and the closer's own reference: exactly one of them destroys,
/// and a lock that starts after close fails.
#[test]
fn loom_fd_mutex_close_against_lock_destroys_exactly_once() {
    loom::model(|| {
        let m = Arc::new(FdMutex::new());
        let destroyed = Arc::new(AtomicUsize::new(0));
        let t = {
            let (m, destroyed) = (m.clone(), destroyed.clone());
            thread::spawn(move || lock_and_unlock(&m, Side::Write, &destroyed))
        };
        m.close().unwrap();
        assert!(matches!(m.lock(Side::Write), Err(LockError::Closed)));
        if m.decref() {
            destroyed.fetch_add(1, Ordering::SeqCst);
        }
        t.join().unwrap();
        assert_eq!(destroyed.load(Ordering::SeqCst), 1);
    });
}

/// A holder unlocks while a second task is queued (or about to be) and a third closes: the
/// queued task is handed the lock or failed by close, never left waiting, and the fd is
/// destroyed exactly once.
#[test]
fn loom_fd_mutex_hand_off_races_close() {
    loom::model(|| {
        let m = Arc::new(FdMutex::new());
        let destroyed = Arc::new(AtomicUsize::new(0));
        assert!(matches!(m.lock(Side::Read), Ok(Acquire::Locked)));
        let waiter = {
            let (m, destroyed) = (m.clone(), destroyed.clone());
            thread::spawn(move || lock_and_unlock(&m, Side::Read, &destroyed))
        };
        let closer = {
            let (m, destroyed) = (m.clone(), destroyed.clone());
            thread::spawn(move || {
                m.close().unwrap();
                if m.decref() {
                    destroyed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        if m.unlock(Side::Read) {
            destroyed.fetch_add(1, Ordering::SeqCst);
        }
        waiter.join().unwrap();
        closer.join().unwrap();
        assert_eq!(destroyed.load(Ordering::SeqCst), 1);
    });
}

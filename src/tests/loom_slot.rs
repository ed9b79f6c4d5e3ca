//! Loom models of the poll descriptor slot (`pd::slot`): the waiter against readiness, close,
//! cancellation and waker replacement.
//!
//! Run: `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --release --lib
//! --target-dir target/loom loom_slot`.
//!
//! Each model plays one poll descriptor direction: a `Slot` plus a tiny `info` word standing in
//! for Go's `atomicInfo`, with the closing bit published by an RMW before `unblock`. `check_err`
//! reads it with a plain `Acquire` load, the weakest read the slot's protocol allows (one model
//! repeats with an RMW read). Wakers count their wake-ups, so
//! "parked but never woken" (a lost wake-up) and "woken twice" are assertions; `Pending` is
//! followed, after the joins, by the re-poll that the wake-up would have caused.

use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Wake, Waker};

use crate::loom::{thread, Arc, AtomicU32, AtomicUsize, Ordering};
use crate::pd::slot::Slot;

/// Go's `pollClosing` bit of `atomicInfo` (spec §2.1).
const CLOSING: u32 = 1;

/// One direction of a descriptor: the slot and the error word.
struct Fd {
    slot: Slot,
    info: AtomicU32,
}

#[derive(Debug, PartialEq)]
struct Closed;

impl Fd {
    fn new() -> Arc<Fd> {
        Arc::new(Fd {
            slot: Slot::new(),
            info: AtomicU32::new(0),
        })
    }

    /// The waiter's side: `poll_wait` with the error check as a plain `Acquire` load.
    fn wait(&self, waker: &Waker) -> Poll<Result<(), Closed>> {
        self.slot
            .poll_wait(&mut Context::from_waker(waker), None, || {
                (self.info.load(Ordering::Acquire) & CLOSING != 0).then_some(Closed)
            })
    }

    /// As [`Fd::wait`], with the error check as an RMW (`fetch_or(0)`).
    fn wait_rmw_check(&self, waker: &Waker) -> Poll<Result<(), Closed>> {
        self.slot
            .poll_wait(&mut Context::from_waker(waker), None, || {
                (self.info.fetch_or(0, Ordering::AcqRel) & CLOSING != 0).then_some(Closed)
            })
    }

    /// The closer's side: publish the bit with an RMW, then unblock and wake.
    fn close(&self) {
        self.info.fetch_or(CLOSING, Ordering::AcqRel);
        if let Some(w) = self.slot.unblock() {
            w.wake();
        }
    }

    /// A deadline that fires and is extended again before the waiter looks: set the bit,
    /// unblock and wake, clear the bit.
    fn expire_then_extend(&self) {
        self.close();
        self.info.fetch_and(!CLOSING, Ordering::AcqRel);
    }

    /// The poller's side: readiness, then wake.
    fn ready(&self) {
        if let Some(w) = self.slot.notify_ready() {
            w.wake();
        }
    }
}

/// A waker that counts its wake-ups (a std `Arc`, as `std::task::Wake` requires; the count is a
/// loom atomic so loom sees the accesses).
struct Counter {
    wakes: AtomicUsize,
}

impl Wake for Counter {
    fn wake(self: StdArc<Self>) {
        self.wakes.fetch_add(1, Ordering::AcqRel);
    }
}

fn counting() -> (StdArc<Counter>, Waker) {
    let counter = StdArc::new(Counter {
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(counter.clone());
    (counter, waker)
}

fn wakes(counter: &StdArc<Counter>) -> usize {
    counter.wakes.load(Ordering::Acquire)
}

/// After the model: the waker's only copies are the counter and the `Waker` itself; then drop
/// the `Waker` and check that the counter is the last reference (nothing leaked in the slot).
fn assert_not_leaked(counter: StdArc<Counter>, waker: Waker) {
    drop(waker);
    assert_eq!(StdArc::strong_count(&counter), 1, "a waker clone leaked");
}

fn spawn(fd: &Arc<Fd>, f: fn(&Fd)) -> thread::JoinHandle<()> {
    let fd = fd.clone();
    thread::spawn(move || f(&fd))
}

/// (1) No lost wake-up: a waiter racing one readiness either returns `Ready(Ok)` at once or is
/// woken exactly once and then returns `Ready(Ok)`; the notification is consumed exactly once.
#[test]
fn loom_slot_waiter_vs_notify_ready() {
    loom::model(|| {
        let fd = Fd::new();
        let (counter, waker) = counting();
        let poller = spawn(&fd, Fd::ready);

        let r = fd.wait(&waker);
        poller.join().unwrap();
        match r {
            Poll::Ready(Ok(())) => assert_eq!(wakes(&counter), 0),
            Poll::Pending => {
                assert_eq!(wakes(&counter), 1, "parked and never woken: lost wake-up");
                assert_eq!(fd.wait(&waker), Poll::Ready(Ok(())));
            }
            Poll::Ready(Err(e)) => panic!("no error was set, got {e:?}"),
        }
        assert!(
            !fd.slot.is_ready(),
            "the readiness was consumed exactly once"
        );
        assert_not_leaked(counter, waker);
    });
}

/// (2) The Dekker pair: a waiter racing a close (bit set by RMW, then `unblock`) either sees the
/// error at once or is woken and then sees it. Never `Ok`, never parked unwoken.
fn waiter_vs_unblock_after_error_bit(wait: fn(&Fd, &Waker) -> Poll<Result<(), Closed>>) {
    loom::model(move || {
        let fd = Fd::new();
        let (counter, waker) = counting();
        let closer = spawn(&fd, Fd::close);

        let r = wait(&fd, &waker);
        closer.join().unwrap();
        match r {
            Poll::Ready(Err(Closed)) => assert_eq!(wakes(&counter), 0),
            Poll::Pending => {
                assert_eq!(wakes(&counter), 1, "parked and never woken: lost wake-up");
                assert_eq!(wait(&fd, &waker), Poll::Ready(Err(Closed)));
            }
            Poll::Ready(Ok(())) => panic!("no readiness was ever notified"),
        }
        assert!(!fd.slot.is_ready());
        assert_not_leaked(counter, waker);
    });
}

#[test]
fn loom_slot_waiter_vs_unblock_after_error_bit() {
    waiter_vs_unblock_after_error_bit(Fd::wait);
}

#[test]
fn loom_slot_waiter_vs_unblock_after_error_bit_with_rmw_check() {
    waiter_vs_unblock_after_error_bit(Fd::wait_rmw_check);
}

/// (3) A parked waiter re-polled with a new waker while readiness arrives: each waker is woken
/// at most once (the replaced one by the displacement or the notification, never both), and if
/// the waiter is left parked the new waker is woken by the notification.
#[test]
fn loom_slot_waker_replacement_vs_notify_ready() {
    loom::model(|| {
        let fd = Fd::new();
        let (old, old_waker) = counting();
        let (new, new_waker) = counting();
        let poller = spawn(&fd, Fd::ready);

        let first = fd.wait(&old_waker);
        let second = (first == Poll::Pending).then(|| fd.wait(&new_waker));
        poller.join().unwrap();

        assert!(wakes(&old) <= 1, "the old waker was woken twice");
        assert!(wakes(&new) <= 1, "the new waker was woken twice");
        match (first, second) {
            (Poll::Ready(Ok(())), None) => assert_eq!(wakes(&old), 0),
            // The poller took the old waker before the re-poll, or the re-poll displaced it
            // (waking it) and then consumed the readiness.
            (Poll::Pending, Some(Poll::Ready(Ok(())))) => assert_eq!(wakes(&new), 0),
            (Poll::Pending, Some(Poll::Pending)) => {
                assert_eq!(wakes(&old), 1, "a displaced waker must be woken");
                assert_eq!(wakes(&new), 1, "parked and never woken: lost wake-up");
                assert_eq!(fd.wait(&new_waker), Poll::Ready(Ok(())));
            }
            other => panic!("impossible outcome {other:?}"),
        }
        assert!(
            !fd.slot.is_ready(),
            "the readiness was consumed exactly once"
        );
        assert_not_leaked(old, old_waker);
        assert_not_leaked(new, new_waker);
    });
}

/// (4) The waiting future is dropped while readiness arrives: the readiness is kept for the next
/// operation (unless this wait consumed it), and no waker clone is left in the slot.
#[test]
fn loom_slot_cancel_wait_vs_notify_ready() {
    loom::model(|| {
        let fd = Fd::new();
        let (counter, waker) = counting();
        let poller = spawn(&fd, Fd::ready);

        let r = fd.wait(&waker);
        fd.slot.cancel_wait();
        poller.join().unwrap();

        assert!(wakes(&counter) <= 1);
        match r {
            Poll::Ready(Ok(())) => assert!(!fd.slot.is_ready(), "consumed by this wait"),
            Poll::Pending => assert!(fd.slot.is_ready(), "cancel_wait lost the readiness"),
            Poll::Ready(Err(e)) => panic!("no error was set, got {e:?}"),
        }
        assert_not_leaked(counter, waker);
    });
}

/// (5) Waiter, poller and closer at once. The waiter waits; if readiness lets it go it "finds
/// nothing" and waits again. Every wait that ends parked was woken exactly once, at most one
/// wait succeeds, and after everything the error is what the next wait reports.
#[test]
fn loom_slot_waiter_vs_notify_vs_unblock() {
    loom::model(|| {
        let fd = Fd::new();
        let (first_c, first_w) = counting();
        let (second_c, second_w) = counting();
        let poller = spawn(&fd, Fd::ready);
        let closer = spawn(&fd, Fd::close);

        let first = fd.wait(&first_w);
        let second = (first == Poll::Ready(Ok(()))).then(|| fd.wait(&second_w));
        poller.join().unwrap();
        closer.join().unwrap();

        assert!(wakes(&first_c) <= 1 && wakes(&second_c) <= 1, "woken twice");
        if first == Poll::Pending {
            assert_eq!(wakes(&first_c), 1, "parked and never woken: lost wake-up");
        }
        assert_ne!(
            second,
            Some(Poll::Ready(Ok(()))),
            "one readiness, two successes"
        );
        if second == Some(Poll::Pending) {
            assert_eq!(wakes(&second_c), 1, "parked and never woken: lost wake-up");
        }
        // The readiness is lost by nobody: it is still pending unless a wait consumed it.
        let consumed = first == Poll::Ready(Ok(())) || second == Some(Poll::Ready(Ok(())));
        assert_eq!(
            fd.slot.is_ready(),
            !consumed,
            "readiness lost or duplicated"
        );
        // Whatever happened, the error is now visible to the next wait, READY or not.
        let (last_c, last_w) = counting();
        assert_eq!(fd.wait(&last_w), Poll::Ready(Err(Closed)));
        assert_not_leaked(first_c, first_w);
        assert_not_leaked(second_c, second_w);
        assert_not_leaked(last_c, last_w);
    });
}

/// (6) The waiting future is dropped while both readiness and a close arrive: the readiness is
/// kept unless this wait consumed it, nothing is woken twice, and no waker clone stays behind.
#[test]
fn loom_slot_cancel_wait_vs_notify_vs_unblock() {
    loom::model(|| {
        let fd = Fd::new();
        let (counter, waker) = counting();
        let poller = spawn(&fd, Fd::ready);
        let closer = spawn(&fd, Fd::close);

        let r = fd.wait(&waker);
        fd.slot.cancel_wait();
        poller.join().unwrap();
        closer.join().unwrap();

        assert!(wakes(&counter) <= 1, "woken twice");
        assert!(!fd.slot.has_waiter());
        assert_eq!(
            fd.slot.is_ready(),
            r != Poll::Ready(Ok(())),
            "readiness lost or duplicated"
        );
        assert_not_leaked(counter, waker);
    });
}

/// (7) Go's "deadline extended meanwhile": a deadline fires (bit set, `unblock`) and is extended
/// (bit cleared) while the waiter waits. The waiter must never report readiness, and whenever it
/// ends up `Pending` its waker is either registered in the slot or was woken; a woken waiter
/// that re-polls finds no error and waits again with its waker registered.
#[test]
fn loom_slot_waiter_vs_expired_then_extended_deadline() {
    loom::model(|| {
        let fd = Fd::new();
        let (counter, waker) = counting();
        let timer = spawn(&fd, Fd::expire_then_extend);

        let r = fd.wait(&waker);
        timer.join().unwrap();
        match r {
            Poll::Ready(Err(Closed)) => assert_eq!(wakes(&counter), 0),
            Poll::Pending if wakes(&counter) == 1 => {
                assert!(!fd.slot.has_waiter(), "woken but still registered");
                assert_eq!(fd.wait(&waker), Poll::Pending);
                assert!(fd.slot.has_waiter());
            }
            Poll::Pending => assert!(fd.slot.has_waiter(), "parked with no waker registered"),
            Poll::Ready(Ok(())) => panic!("no readiness was ever notified"),
        }
        fd.slot.cancel_wait();
        assert_not_leaked(counter, waker);
    });
}

/// (8) A parked waiter resumed after readiness and a close race each other (Go's
/// `netpollblock` after its wake-up): `take_ready` consumes the readiness exactly when the
/// poller delivered it, whatever the error bit says, and leaves the slot empty; the waker is
/// woken at least once and no clone leaks.
#[test]
fn loom_slot_resumed_waiter_takes_readiness_racing_close() {
    loom::model(|| {
        let fd = Fd::new();
        let (counter, waker) = counting();
        assert_eq!(fd.wait(&waker), Poll::Pending);
        let poller = spawn(&fd, Fd::ready);
        let closer = spawn(&fd, Fd::close);
        poller.join().unwrap();
        closer.join().unwrap();
        assert!(wakes(&counter) >= 1, "parked and never woken: lost wake-up");
        // The poller always leaves READY unless it found the waker gone: either way, after
        // both have run, readiness is pending (notify never consumes, unblock never clears it).
        assert!(fd.slot.take_ready(), "the delivered readiness was lost");
        assert!(!fd.slot.take_ready(), "readiness consumed twice");
        assert_not_leaked(counter, waker);
    });
}

//! Loom models of a deadline word (`pd::deadline`): the lock-free extension (a positive
//! deadline moved later with one compare-and-swap) against the lock holders — the timer
//! firing that expires or re-arms, a set that moves the deadline earlier, and close.
//!
//! Run: `LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" cargo test --release --lib
//! --target-dir target/loom loom_deadline`.
//!
//! The lock holders here follow `Registration::store_deadline`, `PollDesc::deadline_fired` and
//! `Registration::evict`, reduced to the state the protocol is about: `closing`, when the timer
//! is armed, and whether an expiry was published. What must hold in every interleaving: at
//! every unlock and at the end, a positive deadline has its timer armed no later than it and
//! belongs to a socket that is not closing; an extension is never lost to a firing that judged
//! the old time passed; and no extension revives a closed socket's deadline.

use crate::loom::{thread, Arc, Mutex};
use crate::pd::deadline::{Deadline, Fired};

/// The descriptor's locked state, reduced.
#[derive(Default)]
struct Locked {
    closing: bool,
    /// When the timer fires (0: not armed).
    armed_at: u64,
    /// An expiry was published (the waiting operation failed with `TimedOut`).
    expired: bool,
}

struct Desc {
    word: Deadline,
    locked: Mutex<Locked>,
}

impl Desc {
    /// A socket whose deadline `d` (> 0) is set, with its timer armed at `d`.
    fn with_deadline(d: i64) -> Arc<Desc> {
        let desc = Desc {
            word: Deadline::new(),
            locked: Mutex::new(Locked::default()),
        };
        desc.word.set(d);
        desc.locked.lock().armed_at = d as u64;
        Arc::new(desc)
    }

    /// The invariant the lock holders keep (checked under the lock).
    fn check(&self, locked: &Locked) {
        let d = self.word.get();
        if d > 0 {
            assert!(
                !locked.closing,
                "a closing socket has a deadline to extend: {d}"
            );
            assert!(
                locked.armed_at != 0 && locked.armed_at <= d as u64,
                "deadline {d} with its timer armed at {}",
                locked.armed_at
            );
        }
    }

    /// `Registration::store_deadline` for one direction: the lock-free extension, else the
    /// lock. Err: the socket was closed.
    fn set_deadline(&self, d: i64) -> Result<(), ()> {
        if d > 0 && self.word.extend(d) {
            return Ok(());
        }
        let mut locked = self.locked.lock();
        if locked.closing {
            return Err(());
        }
        self.word.set(d);
        // `arm`: fire no later than needed.
        if d > 0 && (locked.armed_at == 0 || locked.armed_at > d as u64) {
            locked.armed_at = d as u64;
        }
        if d < 0 {
            locked.expired = true;
        }
        self.check(&locked);
        Ok(())
    }

    /// `PollDesc::deadline_fired` at `now`, for a current firing.
    fn timer_fires(&self, now: u64) {
        let mut locked = self.locked.lock();
        if locked.closing {
            return; // close bumped the sequence: a stale firing
        }
        locked.armed_at = 0;
        match self.word.on_timer(|| now) {
            Fired::Nothing => {}
            Fired::Rearm(when) => locked.armed_at = when,
            Fired::Expired => locked.expired = true,
        }
        self.check(&locked);
    }

    /// `Registration::evict`.
    fn close(&self) {
        let mut locked = self.locked.lock();
        locked.closing = true;
        self.word.set(0);
        locked.armed_at = 0;
        self.check(&locked);
    }
}

/// A server moves the deadline from 10 to 20 while the timer armed for 10 fires at 15: either
/// the firing came first (the deadline expired, then the set revived it under the lock) or the
/// extension did (the firing re-arms for 20). Either way the deadline ends at 20, armed at 20.
#[test]
fn loom_deadline_an_extension_racing_the_firing_is_never_lost() {
    loom::model(|| {
        let desc = Desc::with_deadline(10);
        let timer = {
            let desc = desc.clone();
            thread::spawn(move || desc.timer_fires(15))
        };
        assert_eq!(desc.set_deadline(20), Ok(()));
        timer.join().unwrap();
        let locked = desc.locked.lock();
        assert_eq!(desc.word.get(), 20, "the extension was lost");
        assert_eq!(locked.armed_at, 20);
        desc.check(&locked);
    });
}

/// Two clones move the deadline at once, one later (the lock-free path) and one earlier (the
/// lock): the result is one of them, armed no later than itself.
#[test]
fn loom_deadline_a_later_and_an_earlier_move_race() {
    loom::model(|| {
        let desc = Desc::with_deadline(10);
        let later = {
            let desc = desc.clone();
            thread::spawn(move || desc.set_deadline(30))
        };
        assert_eq!(desc.set_deadline(12), Ok(()));
        assert_eq!(later.join().unwrap(), Ok(()));
        let locked = desc.locked.lock();
        let d = desc.word.get();
        assert!(d == 12 || d == 30, "deadline {d}");
        assert!(!locked.expired);
        desc.check(&locked);
    });
}

/// An extension races close and a timer firing: it either lands before the close (Ok) or
/// fails with the closed error; the closed socket keeps no deadline either way.
#[test]
fn loom_deadline_an_extension_racing_close_never_revives_the_deadline() {
    loom::model(|| {
        let desc = Desc::with_deadline(10);
        let setter = {
            let desc = desc.clone();
            thread::spawn(move || desc.set_deadline(20))
        };
        let timer = {
            let desc = desc.clone();
            thread::spawn(move || desc.timer_fires(15))
        };
        desc.close();
        let _ = setter.join().unwrap();
        timer.join().unwrap();
        let locked = desc.locked.lock();
        assert!(locked.closing);
        assert_eq!(desc.word.get(), 0, "a closed socket's deadline was revived");
        assert_eq!(locked.armed_at, 0, "a closed socket's timer was re-armed");
        drop(locked);
        assert_eq!(desc.set_deadline(40), Err(()));
    });
}

//! One direction's deadline word, which a deadline moved later changes without the descriptor
//! lock.
//!
//! The value is Go's encoding: 0 = no deadline, −1 = expired, > 0 = the deadline in clock
//! nanoseconds. A server that pushes its read deadline forward on every request only ever
//! moves a positive deadline later, and that is the one change that needs neither the timer
//! nor the summary bits: the armed timer fires at the old time, finds the new one and re-arms
//! itself (lazy extension, `pd/mod.rs`). So that change is one compare-and-swap here
//! ([`Deadline::extend`]); every other change takes the descriptor lock.
//!
//! # Protocol
//!
//! * Lock holders (setting a deadline, the timer firing, close, reuse) read the word with
//!   [`get`](Deadline::get) and write it with [`set`](Deadline::set) or
//!   [`expire`](Deadline::expire).
//! * Anyone may call [`extend`](Deadline::extend) without the lock. It only moves a positive
//!   value to a larger one, so the value's sign — which decides the `EXPIRED_*` summary bit —
//!   only ever changes under the lock, and a lock holder that read a positive value may find
//!   it larger later, never anything else.
//! * The invariant the lock holders keep (at every unlock): a positive value means the
//!   direction's timer is armed no later than it, and the socket is not closing. Close and
//!   reuse write 0, so an extension racing them fails, and its caller takes the lock and sees
//!   the close. A set that stores a positive `d` arms the timer at `d`, no later than any
//!   extension of it.
//! * The timer firing must not lose an extension that lands between its read and its write:
//!   it expires the deadline with a compare-and-swap from the value it judged passed
//!   ([`expire`](Deadline::expire)), and re-reads on failure.
//!
//! No other memory is published with the value, and every write is a read-modify-write of this
//! one word (which always reads the latest value), so all accesses are `Relaxed`; the summary
//! bits that operations read are published under the lock (`publish_info`).
//!
//! Model-checked in `src/tests/loom_deadline.rs`.

use crate::loom::{AtomicI64, Ordering};

pub(crate) struct Deadline(AtomicI64);

impl Deadline {
    pub(crate) fn new() -> Deadline {
        Deadline(AtomicI64::new(0))
    }

    /// The current value. A positive value may grow meanwhile (an extension); its sign only
    /// changes under the descriptor lock.
    #[inline]
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Replaces the value. Caller holds the descriptor lock.
    ///
    /// A swap rather than a store: every write to the word is then a read-modify-write, which
    /// always reads the latest value, so the writes form one chain that an extension's
    /// compare-and-swap either precedes or sees. (The C++ model guarantees the same for a plain
    /// store; loom, whose order for plain stores is partial, checks it only this way.)
    #[inline]
    pub(crate) fn set(&self, d: i64) {
        self.0.swap(d, Ordering::Relaxed);
    }

    /// Moves a positive deadline to `d` if that is no earlier, without the lock. False when
    /// the deadline is none, expired or later than `d` (the caller then takes the lock).
    #[inline]
    pub(crate) fn extend(&self, d: i64) -> bool {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            if current <= 0 || d < current {
                return false;
            }
            if d == current {
                return true;
            }
            match self
                .0
                .compare_exchange_weak(current, d, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Marks the deadline expired if it is still `seen`; otherwise returns the value it was
    /// moved to (later: only an extension changes it without the lock). Caller holds the
    /// descriptor lock.
    #[inline]
    pub(crate) fn expire(&self, seen: i64) -> Result<(), i64> {
        self.0
            .compare_exchange(seen, -1, Ordering::Relaxed, Ordering::Relaxed)
            .map(drop)
    }

    /// The direction's timer fired (caller holds the descriptor lock): expires the deadline if
    /// it has passed by `now()` (read only for a positive deadline), else says when to re-arm.
    pub(crate) fn on_timer(&self, now: impl FnOnce() -> u64) -> Fired {
        let mut deadline = self.get();
        if deadline <= 0 {
            return Fired::Nothing;
        }
        let now = now();
        loop {
            if deadline as u64 > now {
                return Fired::Rearm(deadline as u64);
            }
            match self.expire(deadline) {
                Ok(()) => return Fired::Expired,
                // Extended since it was read: judge the new time.
                Err(moved) => deadline = moved,
            }
        }
    }
}

/// What a timer firing found (see [`Deadline::on_timer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    /// No deadline, or one already expired: nothing to do.
    Nothing,
    /// Moved later since the timer was armed: re-arm for this time (lazy extension).
    Rearm(u64),
    /// It passed and is now marked expired: publish that and fail the waiting operation.
    Expired,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn extend_moves_only_a_positive_deadline_and_only_later() {
        let d = Deadline::new();
        assert!(!d.extend(10), "no deadline: the lock decides");
        d.set(-1);
        assert!(!d.extend(10), "expired: the lock decides");
        d.set(10);
        assert!(!d.extend(9), "earlier: the lock decides");
        assert_eq!(d.get(), 10);
        assert!(d.extend(10));
        assert!(d.extend(25));
        assert_eq!(d.get(), 25);
    }

    #[test]
    fn expire_fails_on_a_deadline_moved_since_it_was_read() {
        let d = Deadline::new();
        d.set(10);
        assert!(d.extend(20));
        assert_eq!(d.expire(10), Err(20));
        assert_eq!(d.expire(20), Ok(()));
        assert_eq!(d.get(), -1);
    }

    #[test]
    fn a_timer_expires_a_passed_deadline_and_re_arms_for_a_later_one() {
        let d = Deadline::new();
        assert_eq!(
            d.on_timer(|| unreachable!("no deadline: no clock read")),
            Fired::Nothing
        );
        d.set(10);
        assert_eq!(d.on_timer(|| 5), Fired::Rearm(10));
        assert!(d.extend(30));
        assert_eq!(d.on_timer(|| 20), Fired::Rearm(30));
        assert_eq!(d.on_timer(|| 30), Fired::Expired);
        assert_eq!(d.get(), -1);
        assert_eq!(d.on_timer(|| 40), Fired::Nothing);
    }
}

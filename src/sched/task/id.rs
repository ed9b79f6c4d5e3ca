//! Task identifiers.

use std::fmt;
use std::num::NonZeroU64;
// Not `crate::loom`: this counter only hands out distinct numbers and takes part in no
// synchronisation protocol, and loom's atomics cannot live in a `static`.
use std::sync::atomic::{AtomicU64, Ordering};

/// An opaque identifier of a spawned task, unique among all tasks of the process.
///
/// Ids come from one global counter starting at 1, so they are never reused while the process
/// lives (a 64-bit counter does not wrap in practice). They show up in [`JoinError`]'s messages
/// and can be compared with [`JoinHandle::id`].
///
/// [`JoinError`]: crate::sched::task::JoinError
/// [`JoinHandle::id`]: crate::sched::task::JoinHandle::id
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(NonZeroU64);

impl Id {
    /// A fresh id, distinct from every id handed out before.
    pub(crate) fn next() -> Id {
        // Relaxed: uniqueness comes from the read-modify-write itself; no other memory is
        // published through this counter.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Id(NonZeroU64::new(n).expect("runtime: task id counter wrapped around"))
    }

    /// The id as a plain number (used to pick an owned-list shard).
    pub(crate) fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

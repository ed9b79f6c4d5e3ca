//! The I/O budget of a task poll: how a task whose sockets never run dry still lets the others
//! run.
//!
//! A task runs until its future returns `Pending`, and a socket operation returns `Pending`
//! only when the socket is not ready. A connection whose peer keeps it fed — a client
//! uploading faster than the task consumes, a backlog of pipelined requests read a few bytes at
//! a time — would keep its task, and the worker, for as long as the peer keeps up, while every
//! other task of that worker waits (until the monitor hands the core to another thread, 10 ms
//! later, at the cost of one more thread competing for the CPUs). Go preempts a goroutine that
//! has run for 10 ms; a future cannot be preempted, so, like tokio, each poll gets a budget of
//! socket operations instead.
//!
//! The worker gives the task [`TASK_BUDGET`] units before it polls it and takes the budget
//! away afterwards. Each socket operation spends one unit when it starts (`net/fd.rs`, before
//! it takes the side's lock). With none left, the operation wakes its own task and returns
//! `Pending` without side effects: the task goes to the back of its core's ring and carries on
//! from the same point, with a fresh budget, when its turn comes again. Outside a task poll on
//! a worker (`block_on`, another executor) there is no budget and nothing is ever refused.
//!
//! 128 operations are about eight pipelined batches of 16 hyper responses (one read and 16
//! writes each), or 64 echo round trips: an ordinary request never meets the limit, a
//! connection that is fed without pause gives way after a few hundred microseconds.
//!
//! The budget is a thread-local of its own (a `const`-initialised `Cell` without destructor:
//! one load and one store per operation); only the thread that owns it touches it, so there is
//! no concurrency protocol here.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Socket operations a task may start in one poll (tokio's budget is the same).
pub(crate) const TASK_BUDGET: u32 = 128;

/// The budget outside a task poll: never spent, never refused.
const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Gives the task about to be polled on this thread its budget. The worker calls it before
/// every poll and [`end_poll`] after.
#[inline]
pub(crate) fn start_poll() {
    BUDGET.with(|b| b.set(TASK_BUDGET));
}

/// Takes the budget away again: code outside a task poll is never refused.
#[inline]
pub(crate) fn end_poll() {
    BUDGET.with(|b| b.set(UNLIMITED));
}

/// Spends one unit of the current task's budget. `Pending` when it is spent: the task has been
/// woken and will be polled again after the tasks queued behind it.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let spent = BUDGET.with(|b| match b.get() {
        UNLIMITED => false,
        0 => true,
        n => {
            b.set(n - 1);
            false
        }
    });
    if spent {
        return yield_now(cx);
    }
    Poll::Ready(())
}

/// The spent half of [`poll_proceed`], out of line so that the waker call's register saves
/// stay off the path of every operation that starts within its budget.
#[cold]
#[inline(never)]
fn yield_now(cx: &mut Context<'_>) -> Poll<()> {
    cx.waker().wake_by_ref();
    Poll::Pending
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_poll_may_start_its_budget_of_operations_then_is_refused_and_woken() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);

        // Outside a task poll: never refused, never woken.
        for _ in 0..10 * TASK_BUDGET {
            assert!(poll_proceed(&mut cx).is_ready());
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        start_poll();
        for _ in 0..TASK_BUDGET {
            assert!(poll_proceed(&mut cx).is_ready());
        }
        // Spent: refused, and the task is woken so that it runs again later.
        assert!(poll_proceed(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(poll_proceed(&mut cx).is_pending());
        end_poll();

        // The next poll starts afresh.
        start_poll();
        assert!(poll_proceed(&mut cx).is_ready());
        end_poll();
        assert!(poll_proceed(&mut cx).is_ready());
    }
}

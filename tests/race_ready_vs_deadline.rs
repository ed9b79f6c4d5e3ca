//! Readiness against a deadline: a read woken by data before its deadline, whose task gets to
//! run only after the deadline has passed (a busy machine), returns the data — as in Go, whose
//! `netpollblock` returns "ready" after the wake-up without looking at the expired bit (spec
//! §1.4 (d)); only an operation *started* after the deadline fails at once.
//!
//! The task's lateness is made deterministic: the read future is polled by hand, with a waker
//! that records when it is woken, and polled again only after the deadline.

mod util_proc;
mod util_tcp;

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use util_tcp::{pair, run};

/// A waker that records when it was first woken.
#[derive(Default)]
struct WokenAt(Mutex<Option<Instant>>);

impl Wake for WokenAt {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.lock().unwrap().get_or_insert_with(Instant::now);
    }
}

/// Readiness delivered before the deadline, the read polled again only after it: Go returns
/// the data. netpoll's `Registration::poll_wait` checked the expired bit before it consumed the
/// pending readiness, so the read failed with `TimedOut` — a spurious timeout for a server whose
/// tasks are held up (the soak's server met it at start-up, under load). A resumed wait now
/// takes its readiness first (`Registration::poll_wait_resumed`).
#[test]
fn readiness_delivered_before_the_deadline_wins_over_the_deadline_passing_before_the_task_runs() {
    const DEADLINE: Duration = Duration::from_millis(100);
    run(2, Duration::from_secs(20), async {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (c, s) = pair().await;
            let deadline = Instant::now() + DEADLINE;
            c.set_read_deadline(Some(deadline)).unwrap();
            let woken = Arc::new(WokenAt::default());
            let waker = Waker::from(woken.clone());
            let mut cx = Context::from_waker(&waker);
            let mut buf = [0u8; 8];
            let mut read = pin!(c.read(&mut buf));
            assert!(
                read.as_mut().poll(&mut cx).is_pending(),
                "nothing was sent yet"
            );
            s.write_all(b"data").await.unwrap();
            // The task is "busy" (this thread is not a worker: the runtime keeps running) until
            // well past the deadline; the readiness is delivered meanwhile.
            std::thread::sleep(DEADLINE * 2);
            let at = woken
                .0
                .lock()
                .unwrap()
                .expect("the data's readiness woke the read");
            if at >= deadline {
                // The machine held up the poller itself past the deadline: Go would time out
                // too. Try again.
                assert!(
                    attempts < 5,
                    "the poller was late past the deadline 5 times"
                );
                continue;
            }
            match read.as_mut().poll(&mut cx) {
                Poll::Ready(r) => assert_eq!(
                    r.unwrap(),
                    4,
                    "woken by data {:?} before its deadline",
                    deadline - at
                ),
                Poll::Pending => panic!("the data is there, the deadline has passed"),
            }
            // The next read, started after the deadline, fails at once.
            let e = c.read(&mut [0u8; 8]).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
            return;
        }
    });
}

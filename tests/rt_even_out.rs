//! Busy workers share the ready tasks. Tasks that never wait (they yield after each slice of
//! work, as hyper's connection task does after 16 pipelined requests) never pass through the
//! poller or a timer again, and a worker that always has work never steals: whichever ring a
//! burst of wake-ups landed on keeps its tasks. The periodic check evens the rings out
//! (`sched/worker.rs`, `Worker::even_out`).
//!
//! Here 24 tasks wake from one timer at the same instant. The core that runs the timer keeps 23
//! of them and hands one to the other core, which then never runs dry (its one task yields
//! back to it). Without evening out, that one task ran 12 times as often as the average and
//! the other 23 about half as often, for the whole of every round. Evened out, the polls
//! counted after the first 30 ms of a round (the check runs every 61 polls at the latest, and
//! needs two runs to estimate the time per poll) are within 0.88–0.96 and 1.02–1.16 of the
//! average: the rings hold 13 and 11 tasks, or 14 and 10, a difference the scheduler leaves
//! alone (`EVEN_OUT_MARGIN` is 4). 14 and 10 gave 0.80 and 1.19 in an unoptimised build on
//! CI. The failure the bounds below catch is 23 and 1 (the lone task at 12 times the
//! average). They leave room for what the scheduler does not decide: a busy process beside the
//! test can halve one worker's share of its CPU, and rings of 13 and 11 then gave 0.59 and
//! 1.49 (the rings are evened out by length; docs/benchmarks-log.md, "Evening out by waiting
//! time").

mod util_proc;
mod util_rt;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 24;
const ROUNDS: usize = 5;
/// Work per poll: long enough that the 22 surplus tasks stand for more than the 1 ms of extra
/// waiting the scheduler tolerates before moving tasks (`EVEN_OUT_MIN_WAIT_NS`).
const WORK: Duration = Duration::from_micros(100);
const ROUND: Duration = Duration::from_millis(100);
/// Polls are counted from this long after the start of each round.
const SETTLE: Duration = Duration::from_millis(30);
/// Between rounds every task sleeps, so both cores go idle and the next round starts afresh.
const PAUSE: Duration = Duration::from_millis(20);

#[test]
fn two_busy_workers_share_tasks_that_keep_yielding() {
    let rounds = util_rt::bounded(|| {
        let rt = util_rt::rt(2);
        let polls: Arc<Vec<AtomicU64>> =
            Arc::new((0..TASKS * ROUNDS).map(|_| AtomicU64::new(0)).collect());
        let t0 = Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let polls = polls.clone();
                rt.spawn(async move {
                    for r in 0..ROUNDS {
                        let start = t0 + (ROUND + PAUSE) * r as u32;
                        netpoll::time::sleep_until(start).await;
                        while Instant::now() < start + ROUND {
                            util_rt::spin(WORK);
                            if Instant::now() >= start + SETTLE {
                                polls[r * TASKS + i].fetch_add(1, Ordering::Relaxed);
                            }
                            netpoll::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        (0..ROUNDS)
            .map(|r| {
                (0..TASKS)
                    .map(|i| polls[r * TASKS + i].load(Ordering::Relaxed))
                    .collect::<Vec<u64>>()
            })
            .collect::<Vec<_>>()
    });
    for (r, per_task) in rounds.iter().enumerate() {
        let mean = per_task.iter().sum::<u64>() as f64 / TASKS as f64;
        let least = *per_task.iter().min().unwrap() as f64 / mean;
        let most = *per_task.iter().max().unwrap() as f64 / mean;
        assert!(
            least >= 0.5 && most <= 2.0,
            "round {r}: the least-polled task got {least:.2} and the most-polled {most:.2} of \
             the average ({mean:.0} polls): a core kept most of the tasks ({per_task:?})"
        );
    }
}

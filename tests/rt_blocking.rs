//! Blocking work: the blocking pool (`spawn_blocking`) and tasks that block their worker
//! thread anyway (a system call, a CPU loop), which the monitor must route around.

mod util_proc;
mod util_rt;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util_rt::{bounded, expect_within, panic_message, rt};

/// Spawns a task that counts ticks of 1 ms sleeps for ever; returns its counter.
fn spawn_ticker(rt: &netpoll::Runtime) -> Arc<AtomicUsize> {
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    drop(rt.spawn(async move {
        loop {
            t.fetch_add(1, SeqCst);
            netpoll::time::sleep(Duration::from_millis(1)).await;
        }
    }));
    ticks
}

/// Waits until `ticks` has advanced by `n` from now.
async fn ticks_advance(ticks: &AtomicUsize, n: usize) {
    let from = ticks.load(SeqCst);
    expect_within(Duration::from_secs(10), "the ticker", async {
        while ticks.load(SeqCst) < from + n {
            netpoll::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Everything still works: a batch of tasks, a sleep, a blocking job.
async fn runtime_still_works() {
    let handles: Vec<_> = (0..1_000usize)
        .map(|i| netpoll::spawn(async move { i }))
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), i);
    }
    let start = Instant::now();
    netpoll::time::sleep(Duration::from_millis(5)).await;
    assert!(start.elapsed() >= Duration::from_millis(5));
    assert_eq!(netpoll::spawn_blocking(|| 9).await.unwrap(), 9);
}

#[test]
fn eight_sleeping_blocking_jobs_do_not_stop_tasks_from_running() {
    const JOBS: usize = 8;
    bounded(|| {
        let rt = rt(1);
        let ticks = spawn_ticker(&rt);
        rt.block_on(async {
            ticks_advance(&ticks, 3).await;
            let running = Arc::new(AtomicUsize::new(0));
            let jobs: Vec<_> = (0..JOBS)
                .map(|i| {
                    let running = running.clone();
                    netpoll::spawn_blocking(move || {
                        running.fetch_add(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        running.fetch_sub(1, SeqCst);
                        i
                    })
                })
                .collect();
            // While all eight jobs hold their threads, the ticker keeps ticking.
            expect_within(Duration::from_secs(10), "all jobs running", async {
                while running.load(SeqCst) < JOBS {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            let before = ticks.load(SeqCst);
            ticks_advance(&ticks, 5).await;
            assert_eq!(
                running.load(SeqCst),
                JOBS,
                "the ticker only advanced after the jobs ended ({before} ticks before)"
            );
            for (i, job) in jobs.into_iter().enumerate() {
                assert_eq!(job.await.unwrap(), i);
            }
            runtime_still_works().await;
        });
    });
}

#[test]
fn spawn_blocking_returns_the_closures_result_or_its_panic() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            let v = netpoll::spawn_blocking(|| vec![1, 2, 3]).await.unwrap();
            assert_eq!(v, [1, 2, 3]);

            let err = netpoll::spawn_blocking(|| -> u8 { panic!("blocking boom") })
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert_eq!(panic_message(&*err.into_panic()), "blocking boom");

            // The pool survived.
            assert_eq!(netpoll::spawn_blocking(|| 4).await.unwrap(), 4);
        });
    });
}

#[test]
fn a_blocking_job_can_spawn_tasks_on_its_runtime() {
    bounded(|| {
        let rt = rt(1);
        let out = rt.block_on(async {
            let inner = netpoll::spawn_blocking(|| netpoll::spawn(async { 11 }))
                .await
                .unwrap();
            inner.await.unwrap()
        });
        assert_eq!(out, 11);
        // Runtime::spawn_blocking from outside the runtime, too.
        let h = rt.spawn_blocking(|| std::thread::current().name().map(str::to_owned));
        let name = rt.block_on(h).unwrap().unwrap_or_default();
        assert!(name.contains("blocking"), "ran on thread {name:?}");
    });
}

/// Runs `block` (which holds its worker thread for about a second) in a task on a runtime with
/// one worker, while another task ticks; checks that the ticker advanced meanwhile and that the
/// runtime works afterwards.
fn worker_held_for_a_second_does_not_stop_other_tasks(block: fn()) {
    bounded(move || {
        let rt = rt(1);
        let ticks = spawn_ticker(&rt);
        rt.block_on(async {
            ticks_advance(&ticks, 3).await;
            let t = ticks.clone();
            let (during, held_for) = netpoll::spawn(async move {
                let from = t.load(SeqCst);
                let start = Instant::now();
                block();
                (t.load(SeqCst) - from, start.elapsed())
            })
            .await
            .unwrap();
            assert!(held_for >= Duration::from_secs(1));
            // The monitor hands the core on after ~10 ms: hundreds of ticks fit in the second.
            // Ten is far from both that and zero (which is what a stalled core gives).
            assert!(
                during >= 10,
                "only {during} ticks while the only worker was held for {held_for:?}"
            );
            runtime_still_works().await;
        });
    });
}

#[test]
fn a_task_blocked_in_a_system_call_does_not_stop_other_tasks_on_one_worker() {
    worker_held_for_a_second_does_not_stop_other_tasks(|| {
        std::thread::sleep(Duration::from_secs(1));
    });
}

#[test]
fn a_task_spinning_on_the_cpu_does_not_stop_other_tasks_on_one_worker() {
    worker_held_for_a_second_does_not_stop_other_tasks(|| {
        let end = Instant::now() + Duration::from_secs(1);
        let mut spins = 0u64;
        while Instant::now() < end {
            spins = std::hint::black_box(spins + 1);
        }
    });
}

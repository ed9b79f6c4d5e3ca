//! Spawning and joining tasks: many tasks, nested spawns, outputs, `is_finished`, panics,
//! `abort`, `yield_now`, wake-ups from foreign threads, and the runtime context rules.

mod util_proc;
mod util_rt;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use util_rt::{bounded, expect_within, panic_message, panic_of, rt, Drops};

const MANY: usize = 100_000;

/// Every task has left the runtime's owned list. A task is released just after its
/// `JoinHandle` is woken, so the count may lag the last join by a moment.
fn assert_no_task_left(rt: &netpoll::Runtime) {
    assert!(
        util_rt::eventually(Duration::from_secs(5), || rt.alive_tasks() == 0),
        "{} tasks still alive",
        rt.alive_tasks()
    );
}

/// Awaits every handle and checks that task `i` returned `i`; returns how many there were.
async fn join_all_in_order(handles: Vec<netpoll::JoinHandle<usize>>) -> usize {
    let n = handles.len();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.expect("task completes"), i);
    }
    n
}

fn spawn_many_from_block_on(workers: usize) {
    bounded(move || {
        let rt = rt(workers);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let joined = rt.block_on(async move {
            let handles: Vec<_> = (0..MANY)
                .map(|i| {
                    let r = r.clone();
                    netpoll::spawn(async move {
                        r.fetch_add(1, SeqCst);
                        i
                    })
                })
                .collect();
            join_all_in_order(handles).await
        });
        assert_eq!(joined, MANY);
        assert_eq!(ran.load(SeqCst), MANY);
    });
}

fn spawn_many_from_a_task(workers: usize) {
    bounded(move || {
        let rt = rt(workers);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let joined = rt.block_on(async move {
            netpoll::spawn(async move {
                let handles: Vec<_> = (0..MANY)
                    .map(|i| {
                        let r = r.clone();
                        netpoll::spawn(async move {
                            r.fetch_add(1, SeqCst);
                            i
                        })
                    })
                    .collect();
                join_all_in_order(handles).await
            })
            .await
            .unwrap()
        });
        assert_eq!(joined, MANY);
        assert_eq!(ran.load(SeqCst), MANY);
        assert_no_task_left(&rt);
    });
}

#[test]
fn hundred_thousand_tasks_spawned_from_block_on_complete_on_one_worker() {
    spawn_many_from_block_on(1);
}

#[test]
fn hundred_thousand_tasks_spawned_from_block_on_complete_on_four_workers() {
    spawn_many_from_block_on(4);
}

#[test]
fn hundred_thousand_tasks_spawned_from_a_task_complete_on_one_worker() {
    spawn_many_from_a_task(1);
}

#[test]
fn hundred_thousand_tasks_spawned_from_a_task_complete_on_four_workers() {
    spawn_many_from_a_task(4);
}

/// A binary tree of tasks, each spawning its two children and returning the size of its
/// subtree.
fn tree(depth: u32) -> Pin<Box<dyn Future<Output = usize> + Send>> {
    Box::pin(async move {
        if depth == 0 {
            return 1;
        }
        let left = netpoll::spawn(tree(depth - 1));
        let right = netpoll::spawn(tree(depth - 1));
        1 + left.await.unwrap() + right.await.unwrap()
    })
}

#[test]
fn nested_spawns_form_a_tree_whose_outputs_add_up() {
    bounded(|| {
        let rt = rt(2);
        let size = rt.block_on(rt.spawn(tree(11))).unwrap();
        assert_eq!(size, (1 << 12) - 1);
    });
}

#[test]
fn join_handle_carries_a_non_copy_output() {
    bounded(|| {
        let rt = rt(2);
        let out = rt.block_on(async {
            netpoll::spawn(async { (String::from("hello"), vec![1u8, 2, 3]) })
                .await
                .unwrap()
        });
        assert_eq!(out, ("hello".to_string(), vec![1, 2, 3]));
    });
}

/// A gate that tasks wait on until it is opened (a tiny one-shot broadcast).
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<(bool, Vec<Waker>)>>);

impl Gate {
    fn open(&self) {
        let wakers = {
            let mut g = self.0.lock().unwrap();
            g.0 = true;
            std::mem::take(&mut g.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let gate = self.clone();
        std::future::poll_fn(move |cx| {
            let mut g = gate.0.lock().unwrap();
            if g.0 {
                Poll::Ready(())
            } else {
                g.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

#[test]
fn is_finished_turns_true_only_after_completion_and_join_after_completion_gets_the_output() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            let gate = Gate::default();
            let wait = gate.wait();
            let h = netpoll::spawn(async move {
                wait.await;
                7usize
            });
            netpoll::time::sleep(Duration::from_millis(10)).await;
            assert!(!h.is_finished(), "the task waits on a closed gate");
            gate.open();
            expect_within(Duration::from_secs(10), "the task finishing", async {
                while !h.is_finished() {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            // Joining after completion returns the stored output at once.
            assert_eq!(h.await.unwrap(), 7);
        });
    });
}

#[test]
fn dropping_a_join_handle_detaches_the_task_which_still_runs() {
    bounded(|| {
        let rt = rt(2);
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        rt.block_on(async move {
            drop(netpoll::spawn(async move {
                netpoll::time::sleep(Duration::from_millis(5)).await;
                r.store(true, SeqCst);
            }));
            expect_within(Duration::from_secs(10), "the detached task", async {
                while !ran.load(SeqCst) {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
        });
    });
}

#[test]
fn a_panicking_task_reports_its_payload_and_the_worker_keeps_running_other_tasks() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            // A task that is in the middle of its work when the other one panics.
            let ticks = Arc::new(AtomicUsize::new(0));
            let t = ticks.clone();
            let survivor = netpoll::spawn(async move {
                for _ in 0..20 {
                    t.fetch_add(1, SeqCst);
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
                "survived"
            });
            let h = netpoll::spawn(async {
                netpoll::yield_now().await;
                panic!("boom {}", 7);
            });
            let err = h.await.unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert!(!err.is_cancelled());
            assert!(err.to_string().contains("boom 7"), "{err}");
            assert_eq!(panic_message(&*err.into_panic()), "boom 7");

            // The only worker survived: the earlier task finishes and new ones run.
            assert_eq!(survivor.await.unwrap(), "survived");
            assert_eq!(ticks.load(SeqCst), 20);
            let handles: Vec<_> = (0..100usize)
                .map(|i| netpoll::spawn(async move { i }))
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), i);
            }
        });
        assert_no_task_left(&rt);
    });
}

#[test]
fn a_panic_payload_that_is_not_a_string_is_returned_as_is() {
    bounded(|| {
        let rt = rt(1);
        let err = rt
            .block_on(rt.spawn(async {
                std::panic::panic_any(42u64);
            }))
            .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(*err.into_panic().downcast::<u64>().unwrap(), 42);
    });
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("drop boom");
    }
}

#[test]
fn a_panic_while_dropping_an_aborted_future_is_reported_and_isolated() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            let started = Arc::new(AtomicBool::new(false));
            let s = started.clone();
            let h = netpoll::spawn(async move {
                let _bomb = PanicOnDrop;
                s.store(true, SeqCst);
                std::future::pending::<()>().await;
            });
            expect_within(Duration::from_secs(10), "the task starting", async {
                while !started.load(SeqCst) {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            h.abort();
            let err = expect_within(Duration::from_secs(10), "the aborted task", h)
                .await
                .unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert_eq!(panic_message(&*err.into_panic()), "drop boom");

            // The worker survived.
            assert_eq!(netpoll::spawn(async { 5 }).await.unwrap(), 5);
        });
    });
}

#[test]
fn dropping_the_runtime_survives_futures_that_panic_when_dropped() {
    bounded(|| {
        let rt = rt(1);
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        // One waiting on a timer, one never polled.
        let waiting = rt.spawn(async move {
            let _bomb = PanicOnDrop;
            s.store(true, SeqCst);
            netpoll::time::sleep(Duration::from_secs(600)).await;
        });
        assert!(util_rt::eventually(Duration::from_secs(10), || started.load(SeqCst)));
        // Captured, not created by the body: dropping it panics even if it never runs.
        let bomb = PanicOnDrop;
        let queued = rt.spawn(async move {
            let _bomb = bomb;
        });
        drop(rt);
        for h in [waiting, queued] {
            assert!(h.is_finished());
            // Run or cancelled, each future's drop panicked, and that is what its handle says.
            let err = util_rt::ready(h).unwrap_err();
            assert!(err.is_panic(), "{err:?}");
            assert_eq!(panic_message(&*err.into_panic()), "drop boom");
        }
    });
}

#[test]
fn abort_drops_the_future_before_the_join_handle_reports_cancelled() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            let drops = Drops::new();
            let started = Arc::new(AtomicBool::new(false));
            let (guard, s) = (drops.guard(), started.clone());
            let h = netpoll::spawn(async move {
                let _guard = guard;
                s.store(true, SeqCst);
                netpoll::time::sleep(Duration::from_secs(60)).await;
            });
            expect_within(Duration::from_secs(10), "the task starting", async {
                while !started.load(SeqCst) {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            assert_eq!(drops.count(), 0);
            h.abort();
            h.abort(); // idempotent
            let err = expect_within(Duration::from_secs(10), "the aborted task", h)
                .await
                .unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
            assert!(!err.is_panic());
            assert_eq!(
                drops.count(),
                1,
                "the future is dropped by the time the join ends"
            );
        });
        assert_no_task_left(&rt);
    });
}

#[test]
fn abort_before_the_first_poll_drops_the_future_without_running_it() {
    bounded(|| {
        let rt = rt(1);
        rt.block_on(async {
            // Spawned from inside a task on the only worker: queued behind us, not yet run.
            netpoll::spawn(async {
                let drops = Drops::new();
                let polled = Arc::new(AtomicBool::new(false));
                let (guard, p) = (drops.guard(), polled.clone());
                let h = netpoll::spawn(async move {
                    let _guard = guard;
                    p.store(true, SeqCst);
                });
                h.abort();
                let err = expect_within(Duration::from_secs(10), "the aborted task", h)
                    .await
                    .unwrap_err();
                assert!(err.is_cancelled(), "{err:?}");
                assert_eq!(drops.count(), 1);
                assert!(!polled.load(SeqCst), "an aborted task is never polled");
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn abort_of_a_finished_task_keeps_its_output() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            let h = netpoll::spawn(async { String::from("done") });
            expect_within(Duration::from_secs(10), "the task finishing", async {
                while !h.is_finished() {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            h.abort();
            assert_eq!(h.await.unwrap(), "done");
        });
    });
}

#[test]
fn abort_from_another_thread_cancels_a_busy_task() {
    bounded(|| {
        let rt = rt(2);
        rt.block_on(async {
            let drops = Drops::new();
            let polls = Arc::new(AtomicUsize::new(0));
            let (guard, p) = (drops.guard(), polls.clone());
            // Never waits on anything: it is always queued or running when the abort comes.
            let h = netpoll::spawn(async move {
                let _guard = guard;
                loop {
                    p.fetch_add(1, SeqCst);
                    netpoll::yield_now().await;
                }
            });
            expect_within(Duration::from_secs(10), "the task starting", async {
                while polls.load(SeqCst) < 10 {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            std::thread::scope(|s| {
                s.spawn(|| h.abort());
            });
            let err = expect_within(Duration::from_secs(10), "the aborted task", h)
                .await
                .unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
            assert_eq!(drops.count(), 1);
        });
    });
}

#[test]
fn yield_now_lets_the_other_task_run_on_a_single_worker() {
    bounded(|| {
        let rt = rt(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        rt.block_on(async move {
            // Both spawned from one task on the only worker, so both wait in its queue and
            // start only when the parent waits.
            netpoll::spawn(async move {
                let tasks: Vec<_> = ['a', 'b']
                    .into_iter()
                    .map(|name| {
                        let l = l.clone();
                        netpoll::spawn(async move {
                            for _ in 0..20 {
                                l.lock().unwrap().push(name);
                                netpoll::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await
            .unwrap();
        });
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 40);
        for pair in log.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "a task ran twice in a row despite yielding: {log:?}"
            );
        }
    });
}

#[test]
fn runtime_spawn_works_from_a_thread_outside_the_runtime() {
    bounded(|| {
        let rt = rt(2);
        let handles: Vec<_> = std::thread::scope(|s| {
            (0..4usize)
                .map(|i| {
                    let rt = &rt;
                    s.spawn(move || {
                        rt.spawn(async move {
                            // The task has the runtime as its context.
                            netpoll::time::sleep(Duration::from_millis(1)).await;
                            netpoll::spawn(async move { i * 10 }).await.unwrap()
                        })
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect()
        });
        let outs: Vec<usize> = rt.block_on(async {
            let mut v = Vec::new();
            for h in handles {
                v.push(h.await.unwrap());
            }
            v
        });
        assert_eq!(outs, vec![0, 10, 20, 30]);
    });
}

#[test]
fn runtime_enter_makes_spawn_and_timers_work_outside_block_on() {
    bounded(|| {
        let rt = rt(2);
        let (h, sleep) = {
            let _guard = rt.enter();
            (
                netpoll::spawn(async { 3 }),
                netpoll::time::sleep(Duration::from_millis(1)),
            )
        };
        // Once the guard is gone, the thread is outside the runtime again.
        let msg = panic_of(|| netpoll::spawn(async {}));
        assert!(msg.contains("no netpoll runtime"), "{msg}");
        rt.block_on(async {
            sleep.await;
            assert_eq!(h.await.unwrap(), 3);
        });
    });
}

#[test]
fn spawn_outside_a_runtime_panics_with_a_clear_message() {
    bounded(|| {
        let msg = panic_of(|| netpoll::spawn(async {}));
        assert!(msg.contains("no netpoll runtime"), "{msg}");
        assert!(msg.contains("Runtime::block_on"), "{msg}");
        let msg = panic_of(|| netpoll::spawn_blocking(|| {}));
        assert!(msg.contains("no netpoll runtime"), "{msg}");
        // Timers find their runtime when first polled: creating one is fine, polling it is not.
        let mut sleep = netpoll::time::sleep(Duration::from_millis(50));
        let msg = panic_of(move || {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = std::future::Future::poll(std::pin::Pin::new(&mut sleep), &mut cx);
        });
        assert!(msg.contains("no netpoll runtime"), "{msg}");
    });
}

#[test]
fn block_on_inside_a_task_panics_with_a_clear_message() {
    bounded(|| {
        let rt = Arc::new(rt(1));
        let inner = rt.clone();
        let err = rt
            .block_on(rt.spawn(async move {
                inner.block_on(async {});
            }))
            .unwrap_err();
        assert!(err.is_panic());
        let msg = panic_message(&*err.into_panic());
        assert!(msg.contains("block_on"), "{msg}");
        assert!(msg.contains("worker thread"), "{msg}");
        // The worker survived the panic.
        assert_eq!(rt.block_on(rt.spawn(async { 1 })).unwrap(), 1);
    });
}

/// The shared state of [`Watched`]: the task's latest waker, and what its polls saw.
#[derive(Default)]
struct Watch {
    waker: Mutex<Option<Waker>>,
    polling: AtomicBool,
    overlapped: AtomicBool,
    polls: AtomicUsize,
    finished_wakers: AtomicUsize,
}

/// A future that records its waker for foreign threads, notices if two polls ever overlap,
/// and completes on a poll after its first once every waking thread is done.
struct Watched {
    watch: Arc<Watch>,
    wakers: usize,
}

impl Future for Watched {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let w = &self.watch;
        if w.polling.swap(true, SeqCst) {
            w.overlapped.store(true, SeqCst);
        }
        *w.waker.lock().unwrap() = Some(cx.waker().clone());
        let first = w.polls.fetch_add(1, SeqCst) == 0;
        // Widen the window in which a concurrent poll would be caught.
        std::thread::yield_now();
        w.polling.store(false, SeqCst);
        // The first poll always waits, so completing takes at least one wake-up.
        if !first && w.finished_wakers.load(SeqCst) == self.wakers {
            Poll::Ready(w.polls.load(SeqCst))
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn a_task_woken_by_eight_threads_at_once_runs_and_is_never_polled_twice_concurrently() {
    const THREADS: usize = 8;
    const WAKES: usize = 2_000;
    bounded(|| {
        let rt = rt(4);
        let watch = Arc::new(Watch::default());
        let h = rt.spawn(Watched {
            watch: watch.clone(),
            wakers: THREADS,
        });
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let watch = &watch;
                s.spawn(move || {
                    let waker = || watch.waker.lock().unwrap().clone();
                    while waker().is_none() {
                        std::thread::yield_now();
                    }
                    for _ in 0..WAKES {
                        waker().unwrap().wake();
                    }
                    watch.finished_wakers.fetch_add(1, SeqCst);
                    // The poll that sees every thread finished comes after this wake.
                    waker().unwrap().wake();
                });
            }
        });
        let polls = rt
            .block_on(util_rt::expect_within(
                Duration::from_secs(10),
                "the woken task",
                h,
            ))
            .unwrap();
        assert!(polls >= 2, "the task ran again after its first poll");
        assert!(
            !watch.overlapped.load(SeqCst),
            "two polls of one task overlapped"
        );
    });
}

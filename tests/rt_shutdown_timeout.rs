//! `Runtime::shutdown_timeout` with a blocking job that outlives the timeout.
//!
//! A binary of its own: it counts the process's threads and descriptors.

mod util_proc;
mod util_rt;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use util_rt::{bounded, eventually, open_fds, ready, rt, thread_names, threads, Drops};

#[test]
fn shutdown_timeout_returns_after_the_timeout_while_a_blocking_job_still_runs() {
    bounded(|| {
        let (fds_before, threads_before) = (open_fds(), threads());
        let rt = rt(1);
        // The counts see the runtime: its poller descriptors and its threads.
        assert!(open_fds() > fds_before && threads() > threads_before);
        let (started_tx, started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let drops = Drops::new();
        let d = drops.clone();
        let job = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            // Runs until the test releases it: shutdown cannot wait for it and return.
            released.recv().unwrap();
            // By then the runtime is shut down: what this spawns is cancelled at once.
            let g = d.guard();
            let task = netpoll::spawn(async move {
                let _g = g;
                "task ran"
            });
            let blocking = netpoll::spawn_blocking(|| "blocking job ran");
            ("finished", task, blocking)
        });
        started.recv_timeout(Duration::from_secs(10)).unwrap();

        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        rt.shutdown_timeout(timeout);
        assert!(
            start.elapsed() >= timeout,
            "it did not wait for the running job"
        );
        assert!(!job.is_finished(), "the job is still running");

        // Released, the job finishes on its detached thread, which then exits.
        release.send(()).unwrap();
        assert!(
            eventually(Duration::from_secs(10), || job.is_finished()),
            "the released job did not finish"
        );
        let (out, task, blocking) = ready(job).unwrap();
        assert_eq!(out, "finished");
        let err = ready(task).unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert_eq!(drops.count(), 1, "the refused task's future was dropped");
        let err = ready(blocking).unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert!(
            eventually(Duration::from_secs(10), || threads() == threads_before),
            "threads leaked: {:?}",
            thread_names()
        );
        assert_eq!(open_fds(), fds_before, "descriptors leaked");
    });
}

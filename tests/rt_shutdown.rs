//! Dropping a runtime with tasks pending in every way a task can wait: every future is dropped
//! by the time `drop` returns, and no descriptor or thread outlives the runtime.
//!
//! One test in a binary of its own: the descriptor and thread counts are process-wide, and a
//! test running in parallel would disturb them.

mod util_proc;
mod util_rt;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};
use util_rt::{
    bounded, expect_within, open_fds, ready, rt, thread_names, threads, threads_settled, Drops,
};

const QUEUED: usize = 1_000;

#[test]
fn dropping_a_runtime_with_pending_tasks_drops_every_future_and_leaks_no_fd_or_thread() {
    bounded(|| {
        let (fds_before, threads_before) = (open_fds(), threads());
        let rt = rt(2);
        // The counts see the runtime: its poller descriptors and its threads.
        assert!(open_fds() > fds_before && threads() > threads_before);
        let drops = Drops::new();
        let waiting = Arc::new(AtomicUsize::new(0));

        // A task asleep on a timer.
        let (g, w1) = (drops.guard(), waiting.clone());
        let sleeper = rt.spawn(async move {
            let _g = g;
            w1.fetch_add(1, SeqCst);
            netpoll::time::sleep(Duration::from_secs(600)).await;
        });
        let (d, w) = (drops.clone(), waiting.clone());
        rt.block_on(async move {
            // Both ends of a TCP connection blocked on a read, and a listener blocked on accept.
            let ln = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = ln.local_addr().unwrap();
            let (g, w2) = (d.guard(), w.clone());
            netpoll::spawn(async move {
                let _g = g;
                let (conn, _) = ln.accept().await.unwrap();
                w2.fetch_add(1, SeqCst);
                let _ = conn.read(&mut [0u8; 16]).await;
                unreachable!("nobody writes to this connection");
            });
            let (g, w3) = (d.guard(), w.clone());
            netpoll::spawn(async move {
                let _g = g;
                let conn = TcpStream::connect(addr).await.unwrap();
                w3.fetch_add(1, SeqCst);
                let _ = conn.read(&mut [0u8; 16]).await;
                unreachable!("nobody writes to this connection");
            });
            let idle_ln = TcpListener::bind("127.0.0.1:0").unwrap();
            let (g, w4) = (d.guard(), w.clone());
            netpoll::spawn(async move {
                let _g = g;
                w4.fetch_add(1, SeqCst);
                let _ = idle_ln.accept().await;
                unreachable!("nobody connects to this listener");
            });
            // A blocking-pool thread that finished its job and waits for the next.
            netpoll::spawn_blocking(|| ()).await.unwrap();
            expect_within(
                Duration::from_secs(10),
                "the tasks reaching their waits",
                async {
                    while w.load(SeqCst) < 4 {
                        netpoll::time::sleep(Duration::from_millis(1)).await;
                    }
                },
            )
            .await;
        });
        // Tasks queued from outside and dropped with the runtime, most before they run.
        for _ in 0..QUEUED {
            let g = drops.guard();
            drop(rt.spawn(async move {
                let _g = g;
                netpoll::time::sleep(Duration::from_secs(600)).await;
            }));
        }
        assert_eq!(drops.count(), 0);

        drop(rt);

        assert_eq!(
            drops.count(),
            4 + QUEUED,
            "futures left undropped after drop(rt)"
        );
        // The handle of a cancelled task reports it, without needing the runtime.
        assert!(sleeper.is_finished());
        let err = ready(sleeper).unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert_eq!(open_fds(), fds_before, "descriptors leaked");
        assert_eq!(
            threads_settled(threads_before),
            threads_before,
            "threads leaked: {:?}",
            thread_names()
        );
    });
}

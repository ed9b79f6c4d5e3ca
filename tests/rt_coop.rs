//! A task whose socket never runs dry still lets the other tasks of its worker run: each poll
//! of a task has a budget of socket operations (`src/sched/coop.rs`), where Go would preempt
//! the goroutine after 10 ms. Without it, the reader below keeps its worker for all its
//! 20,000 reads (or until the monitor hands the core away after ~10 ms).

mod util_proc;
mod util_tcp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use util_tcp::*;

/// Bytes written before the reader starts, all read one at a time: every read finds data.
const BUFFERED: usize = 20_000;

/// Reads the reader may do before a task queued behind it runs: the budget (128) and slack.
const FAIR_SHARE: usize = 1_000;

#[test]
fn a_reader_whose_socket_never_runs_dry_lets_a_queued_task_run() {
    run(1, Duration::from_secs(30), async {
        let (client, server) = pair().await;
        let payload: Vec<u8> = (0..BUFFERED).map(|i| (i % 251) as u8).collect();
        client.write_all(&payload).await.unwrap();

        let reads = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let reader = {
            let (reads, seen) = (reads.clone(), seen.clone());
            netpoll::spawn(async move {
                // Queued on this worker behind the reader, which is running.
                let other = {
                    let reads = reads.clone();
                    netpoll::spawn(async move {
                        seen.store(reads.load(Ordering::SeqCst), Ordering::SeqCst);
                    })
                };
                let mut got = Vec::with_capacity(BUFFERED);
                let mut buf = [0u8; 1];
                for i in 0..BUFFERED {
                    assert_eq!(server.read(&mut buf).await.unwrap(), 1);
                    got.push(buf[0]);
                    reads.store(i + 1, Ordering::SeqCst);
                }
                other.await.unwrap();
                got
            })
        };
        // Every byte arrives, in order, across the reader's yields.
        assert_eq!(reader.await.unwrap(), payload);
        let seen = seen.load(Ordering::SeqCst);
        assert!(
            seen < FAIR_SHARE,
            "the queued task ran only after {seen} of the reader's {BUFFERED} ready reads"
        );
    });
}

#[test]
fn a_writer_whose_socket_never_fills_lets_a_queued_task_run() {
    run(1, Duration::from_secs(30), async {
        let (client, server) = pair().await;
        let writes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        // 4,000 one-byte writes fit in the socket buffers: none of them waits.
        const WRITES: usize = 4_000;
        let writer = {
            let (writes, seen) = (writes.clone(), seen.clone());
            netpoll::spawn(async move {
                let other = {
                    let writes = writes.clone();
                    netpoll::spawn(async move {
                        seen.store(writes.load(Ordering::SeqCst), Ordering::SeqCst);
                    })
                };
                for i in 0..WRITES {
                    assert_eq!(client.write(&[(i % 251) as u8]).await.unwrap(), 1);
                    writes.store(i + 1, Ordering::SeqCst);
                }
                other.await.unwrap();
            })
        };
        writer.await.unwrap();
        let mut got = vec![0u8; WRITES];
        server.read_exact(&mut got).await.unwrap();
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let seen = seen.load(Ordering::SeqCst);
        assert!(
            seen < FAIR_SHARE,
            "the queued task ran only after {seen} of the writer's {WRITES} ready writes"
        );
    });
}

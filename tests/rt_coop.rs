//! A task whose socket never runs dry still lets the other tasks of its worker run: each poll
//! of a task has a budget of socket operations (`src/sched/coop.rs`), where Go would preempt
//! the goroutine after 10 ms. Without it, the reader below keeps its worker for 10,779 of its
//! 20,000 reads (until the monitor hands the core to another thread), the writer for all of
//! its writes.

mod util_proc;
mod util_tcp;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netpoll::net::TcpStream;
use util_tcp::*;

/// Operations the busy task may start before a task queued behind it runs: the budget (128)
/// and slack.
const FAIR_SHARE: usize = 1_000;

/// On one worker, a task runs `op` `n` times, none of which waits; a task it spawned first (so
/// queued behind it) records how many had completed when it ran. Returns that count and the
/// outputs of `op`, in order.
async fn ops_before_a_queued_task_runs<T, F>(
    n: usize,
    mut op: impl FnMut() -> F + Send + 'static,
) -> (usize, Vec<T>)
where
    T: Send + 'static,
    F: Future<Output = T> + Send,
{
    let done = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(usize::MAX));
    let busy = {
        let (done, seen) = (done.clone(), seen.clone());
        netpoll::spawn(async move {
            let queued = {
                let done = done.clone();
                netpoll::spawn(async move {
                    seen.store(done.load(Ordering::SeqCst), Ordering::SeqCst);
                })
            };
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                out.push(op().await);
                done.store(i + 1, Ordering::SeqCst);
            }
            queued.await.unwrap();
            out
        })
    };
    let out = busy.await.unwrap();
    (seen.load(Ordering::SeqCst), out)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// 20,000 bytes are buffered before the reader starts, then read one at a time with
/// `read_byte`: every read is ready. Every byte must arrive, in order, across the reader's
/// yields, and a task queued behind the reader must run within [`FAIR_SHARE`] reads.
fn a_reader_of_a_full_socket_lets_a_queued_task_run<F>(read_byte: fn(TcpStream) -> F)
where
    F: Future<Output = u8> + Send + 'static,
{
    run(1, Duration::from_secs(30), async move {
        let (client, server) = pair().await;
        const BUFFERED: usize = 20_000;
        client.write_all(&pattern(BUFFERED)).await.unwrap();
        let (seen, got) =
            ops_before_a_queued_task_runs(BUFFERED, move || read_byte(server.clone())).await;
        assert_eq!(got, pattern(BUFFERED));
        assert!(
            seen < FAIR_SHARE,
            "the queued task ran only after {seen} of {BUFFERED} ready reads"
        );
    });
}

#[test]
fn a_reader_whose_socket_never_runs_dry_lets_a_queued_task_run() {
    a_reader_of_a_full_socket_lets_a_queued_task_run(|server| async move {
        let mut buf = [0u8; 1];
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        buf[0]
    });
}

#[test]
fn a_writer_whose_socket_never_fills_lets_a_queued_task_run() {
    run(1, Duration::from_secs(30), async {
        let (client, server) = pair().await;
        // 4,000 one-byte writes fit in the socket buffers: none of them waits.
        const WRITES: usize = 4_000;
        let mut next = 0;
        let (seen, _) = ops_before_a_queued_task_runs(WRITES, move || {
            let (client, byte) = (client.clone(), (next % 251) as u8);
            next += 1;
            async move { assert_eq!(client.write(&[byte]).await.unwrap(), 1) }
        })
        .await;
        let mut got = vec![0u8; WRITES];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, pattern(WRITES));
        assert!(
            seen < FAIR_SHARE,
            "the queued task ran only after {seen} of {WRITES} ready writes"
        );
    });
}

/// The budget applies to poll-based callers (`futures_io::AsyncRead`) too.
#[cfg(feature = "futures-io")]
#[test]
fn a_trait_reader_whose_socket_never_runs_dry_lets_a_queued_task_run() {
    a_reader_of_a_full_socket_lets_a_queued_task_run(|server| async move {
        let mut buf = [0u8; 1];
        let n = futures_util::io::AsyncReadExt::read(&mut &server, &mut buf).await;
        assert_eq!(n.unwrap(), 1);
        buf[0]
    });
}

//! Runtimes created, used and dropped in a loop leak no thread and no descriptor.
//!
//! A binary of its own: it counts the process's threads and descriptors.

mod util_proc;
mod util_rt;

use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};
use util_rt::{bounded, expect_within, open_fds, rt, thread_names, threads, threads_settled};

const RUNTIMES: usize = 50;

#[test]
fn fifty_runtimes_created_used_and_dropped_leak_no_thread_or_fd() {
    bounded(|| {
        let (fds_before, threads_before) = (open_fds(), threads());
        for i in 0..RUNTIMES {
            let rt = rt(1 + i % 3);
            rt.block_on(async {
                let ln = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = ln.local_addr().unwrap();
                let server = netpoll::spawn(async move {
                    let (c, _) = ln.accept().await.unwrap();
                    let mut b = [0u8; 4];
                    c.read_exact(&mut b).await.unwrap();
                    c.write_all(&b).await.unwrap();
                });
                let c = TcpStream::connect(addr).await.unwrap();
                c.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 4];
                expect_within(Duration::from_secs(10), "the echo", c.read_exact(&mut b))
                    .await
                    .unwrap();
                assert_eq!(&b, b"ping");
                server.await.unwrap();
                assert_eq!(netpoll::spawn_blocking(move || i).await.unwrap(), i);
                netpoll::time::sleep(Duration::from_millis(1)).await;
                // Left pending: cancelled by the drop.
                drop(netpoll::spawn(async {
                    netpoll::time::sleep(Duration::from_secs(600)).await;
                }));
            });
            drop(rt);
            assert_eq!(
                threads_settled(threads_before),
                threads_before,
                "after runtime {i}: {:?}",
                thread_names()
            );
        }
        assert_eq!(open_fds(), fds_before, "descriptors leaked");
        assert_eq!(
            threads_settled(threads_before),
            threads_before,
            "threads leaked: {:?}",
            thread_names()
        );
    });
}

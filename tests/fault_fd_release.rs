//! Sockets that never got going release their descriptors too: connects refused, timed out or
//! abandoned, connections whose owning task panicked, and connections reset by the peer in the
//! middle of a transfer. `/proc/self/fd` counts the same before and after, while the runtime
//! keeps running.
//!
//! A binary of its own with one test: the count is process-wide. Sockets closed in the ordinary
//! ways are counted in `tcp_fd_leak.rs`.

mod util_fault;
mod util_proc;
mod util_tcp;

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_fault::*;
use util_tcp::{listener, open_fds, pair, raise_nofile_limit, run, within};

const PROMPT: Duration = Duration::from_secs(5);

/// Waits (at most `PROMPT`) for the descriptor count to come back to `expected`: a socket's
/// descriptor is closed when its last handle goes, which for a task that ended on another
/// worker may be a moment after its `JoinHandle` resolved.
async fn settle_to(expected: usize, what: &str) {
    let end = Instant::now() + PROMPT;
    while open_fds() != expected && Instant::now() < end {
        netpoll::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(open_fds(), expected, "{what}: {:?}", fd_list());
}

#[test]
fn failed_connects_panicking_owners_and_resets_release_their_descriptors() {
    raise_nofile_limit();
    quiet_deliberate_panics();
    run(2, Duration::from_secs(30), async {
        let base = open_fds();

        // Refused: a port nobody listens on.
        let (ln, closed_addr) = listener();
        drop(ln);
        let refused: Vec<_> = (0..200)
            .map(|_| netpoll::spawn(TcpStream::connect(closed_addr)))
            .collect();
        for r in refused {
            let e = within(PROMPT, "a refused connect", r)
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
        }
        settle_to(base, "after refused connects").await;

        // Timed out, and abandoned midway, against a full backlog.
        {
            let (hole, _ln, _fill) = black_hole();
            let with_hole = open_fds();
            let dials: Vec<_> = (0..100)
                .map(|i| {
                    netpoll::spawn(async move {
                        if i % 2 == 0 {
                            let r = TcpStream::connect_timeout(hole, Duration::from_millis(20));
                            assert_eq!(r.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
                        } else {
                            let r = netpoll::time::timeout(
                                Duration::from_millis(5),
                                TcpStream::connect(hole),
                            );
                            assert!(r.await.is_err(), "a connect to a full backlog completed");
                        }
                    })
                })
                .collect();
            for d in dials {
                within(PROMPT, "a dial to a full backlog", d).await.unwrap();
            }
            settle_to(with_hole, "after timed-out and abandoned connects").await;
        }
        settle_to(base, "after the full backlog went").await;

        // Tasks that panic holding a connection, with a read pending; the peers see EOF.
        let mut peers = Vec::new();
        let mut owners = Vec::new();
        for _ in 0..100 {
            let (c, s) = pair().await;
            owners.push(netpoll::spawn(async move {
                let mut buf = [0u8; 8];
                let mut read = std::pin::pin!(c.read(&mut buf));
                std::future::poll_fn(|cx| {
                    assert!(read.as_mut().poll(cx).is_pending());
                    std::task::Poll::Ready(())
                })
                .await;
                panic!("{DELIBERATE} with a read pending");
            }));
            peers.push(s);
        }
        for o in owners {
            assert!(within(PROMPT, "a panicking owner", o)
                .await
                .unwrap_err()
                .is_panic());
        }
        for s in &peers {
            let n = within(PROMPT, "EOF after the owner's panic", s.read(&mut [0u8; 1]))
                .await
                .unwrap();
            assert_eq!(n, 0);
        }
        drop(peers);
        settle_to(base, "after panicking owners").await;

        // Resets in the middle of a transfer, both ends dropped afterwards.
        let mut transfers = Vec::new();
        for i in 0..100 {
            let (c, s) = pair().await;
            transfers.push(netpoll::spawn(async move {
                let writer = {
                    let c = c.clone();
                    netpoll::spawn(async move {
                        let chunk = [3u8; 32 * 1024];
                        loop {
                            if let Err(e) = c.write(&chunk).await {
                                return e;
                            }
                        }
                    })
                };
                let mut buf = [0u8; 4096];
                for _ in 0..=(i % 4) {
                    s.read(&mut buf).await.unwrap();
                }
                s.set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
                let e = writer.await.unwrap();
                assert!(
                    matches!(outcome(&e), Ok(Outcome::Reset | Outcome::BrokenPipe)),
                    "{e:?}"
                );
            }));
        }
        for t in transfers {
            within(PROMPT, "a reset transfer", t).await.unwrap();
        }
        settle_to(base, "after resets mid-transfer").await;
    });
}

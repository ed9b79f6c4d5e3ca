//! No descriptor leaks: after 10,000 connections open and close, in every way a socket can be
//! closed, `/proc/self/fd` counts what it counted before.
//!
//! This file is its own test binary with one test, so that no test running in parallel opens or
//! closes descriptors while the count is taken.

mod util_proc;
mod util_tcp;

use std::time::Duration;

use netpoll::net::TcpStream;
use util_tcp::*;

const CONNS: usize = 10_000;
/// Connections in flight at once (fewer if the descriptor limit is low: each takes two).
const WAVE: usize = 500;

#[test]
fn no_fd_leak_after_ten_thousand_connections() {
    let limit = raise_nofile_limit() as usize;
    let before_runtime = open_fds();
    let wave = WAVE
        .min(limit.saturating_sub(before_runtime + 64) / 2)
        .max(1);
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let _dog = Watchdog::new(Duration::from_secs(90));
    let with_runtime = open_fds();
    rt.block_on(async {
        netpoll::time::timeout(Duration::from_secs(60), async {
            let (ln, addr) = listener();
            let server = netpoll::spawn(async move {
                let mut n = 0usize;
                loop {
                    let (c, _) = ln.accept().await.unwrap();
                    // The server side ends its connections four different ways.
                    let how = n % 4;
                    n += 1;
                    netpoll::spawn(async move {
                        let mut b = [0u8; 16];
                        match how {
                            0 => drop(c),
                            1 => {
                                let _ = c.read(&mut b).await;
                                c.close().unwrap();
                            }
                            2 => {
                                // A read still in flight when close comes from a clone.
                                let c2 = c.clone();
                                let r = netpoll::spawn(async move { c2.read(&mut b).await });
                                netpoll::yield_now().await;
                                c.close().unwrap();
                                let _ = r.await;
                            }
                            _ => {
                                let _ = c.write_all(b"bye").await;
                                c.set_linger(Some(Duration::ZERO)).unwrap();
                            }
                        }
                    });
                }
            });
            let mut i = 0;
            while i < CONNS {
                let n = wave.min(CONNS - i);
                let dials: Vec<_> = (i..i + n)
                    .map(|k| {
                        netpoll::spawn(async move {
                            let c = match k % 5 {
                                // Also abandoned dials and timed-out dials.
                                4 => {
                                    match netpoll::time::timeout(
                                        Duration::from_micros(1),
                                        TcpStream::connect(addr),
                                    )
                                    .await
                                    {
                                        Ok(c) => c,
                                        Err(_) => return,
                                    }
                                }
                                _ => TcpStream::connect(addr).await,
                            };
                            // The server may reset a connection before the dialer has seen
                            // it complete: connect then reports the reset (SO_ERROR), as Go's
                            // does.
                            let c = match c {
                                Ok(c) => c,
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                                Err(e) => panic!("connect: {e:?}"),
                            };
                            match k % 3 {
                                0 => drop(c),
                                1 => {
                                    let _ = c.write_all(b"hello").await;
                                    c.close().unwrap();
                                }
                                _ => {
                                    c.set_read_deadline(Some(
                                        std::time::Instant::now() + Duration::from_millis(1),
                                    ))
                                    .unwrap();
                                    let _ = c.read(&mut [0u8; 4]).await;
                                }
                            }
                        })
                    })
                    .collect();
                for d in dials {
                    d.await.unwrap();
                }
                i += n;
            }
            // Let the server's handlers finish (they all end once their peers are gone).
            let mut settled = 0;
            while open_fds() != with_runtime + 1 {
                netpoll::time::sleep(Duration::from_millis(10)).await;
                settled += 1;
                if settled > 500 {
                    break;
                }
            }
            server.abort();
            let _ = server.await;
        })
        .await
        .expect("the connections did not finish within 60 s");
    });
    // Only the runtime's own descriptors are left (the listener went with its task).
    assert_eq!(
        open_fds(),
        with_runtime,
        "descriptors leaked while the runtime runs"
    );
    drop(rt);
    assert_eq!(
        open_fds(),
        before_runtime,
        "descriptors leaked by the runtime"
    );
}

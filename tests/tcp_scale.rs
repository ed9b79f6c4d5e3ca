//! 10,000 concurrent TCP connections, each echoing bytes that are checked.
//!
//! Both ends of 10,000 loopback connections need 20,000 descriptors, more than many machines
//! allow one process, so the clients run in a child process (this test binary, re-run): this
//! process is the server, the child the clients, each with its own netpoll runtime.

mod util_proc;
mod util_tcp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_tcp::*;

const CONNS: usize = 10_000;
/// Connections dialled at once: well under the accept backlog (somaxconn, 4096 by default
/// since Linux 5.4), so no SYN is dropped and retried a second later.
const WAVE: usize = 500;
const MSG: usize = 64;
const LIMIT: Duration = Duration::from_secs(60);

fn message(i: usize) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(k * 7) % 251) as u8;
    }
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m
}

/// Whether this process may hold `CONNS` sockets plus some slack; raises the soft limit.
fn enough_descriptors() -> bool {
    let hard = raise_nofile_limit();
    hard >= (CONNS + 256) as u64
}

#[test]
fn ten_thousand_concurrent_connections_echo_verified_bytes() {
    const NAME: &str = "ten_thousand_concurrent_connections_echo_verified_bytes";
    if let Some(addr) = child_role(NAME) {
        return clients(addr.parse().unwrap());
    }
    if !enough_descriptors() {
        println!(
            "skipped: RLIMIT_NOFILE hard limit {} is below {}",
            nofile_limit().1,
            CONNS + 256
        );
        return;
    }
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let _dog = Watchdog::new(LIMIT + Duration::from_secs(10));
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicUsize::new(0));
    let (ln, addr) = {
        let _g = rt.enter();
        listener()
    };
    let server = {
        let (open, peak, echoed) = (open.clone(), peak.clone(), echoed.clone());
        rt.spawn(async move {
            loop {
                let (c, _) = ln.accept().await.unwrap();
                let now = open.fetch_add(1, Ordering::Relaxed) + 1;
                peak.fetch_max(now, Ordering::Relaxed);
                let (open, echoed) = (open.clone(), echoed.clone());
                netpoll::spawn(async move {
                    let mut buf = [0u8; MSG];
                    loop {
                        match c.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => {
                                c.write_all(&buf[..n]).await.unwrap();
                                echoed.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(e) => panic!("server read: {e:?}"),
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };
    let start = Instant::now();
    let (status, out) = run_in_child(NAME, &addr.to_string(), LIMIT);
    assert!(status.success(), "client process failed ({status}):\n{out}");
    // Every connection was open at once on this side too, and every byte came back.
    assert_eq!(peak.load(Ordering::Relaxed), CONNS);
    assert_eq!(echoed.load(Ordering::Relaxed), CONNS * MSG);
    rt.block_on(async {
        within(
            Duration::from_secs(20),
            "server connections to close",
            async {
                while open.load(Ordering::Relaxed) != 0 {
                    netpoll::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await
    });
    assert!(!server.is_finished(), "the accept loop stopped");
    println!("{CONNS} connections echoed in {:?}", start.elapsed());
}

/// The child: dial every connection (in waves), then echo on all of them at once, holding
/// every connection open until all have been verified.
fn clients(addr: std::net::SocketAddr) {
    assert!(enough_descriptors());
    run(2, LIMIT, async move {
        let mut conns: Vec<TcpStream> = Vec::with_capacity(CONNS);
        while conns.len() < CONNS {
            let n = WAVE.min(CONNS - conns.len());
            let dials: Vec<_> = (0..n)
                .map(|_| netpoll::spawn(async move { TcpStream::connect(addr).await }))
                .collect();
            for d in dials {
                conns.push(d.await.unwrap().expect("connect"));
            }
        }
        let echoes: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                netpoll::spawn(async move {
                    let m = message(i);
                    c.write_all(&m).await.unwrap();
                    let mut back = [0u8; MSG];
                    c.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, m, "connection {i} echoed the wrong bytes");
                    c
                })
            })
            .collect();
        let mut held = Vec::with_capacity(CONNS);
        for e in echoes {
            held.push(e.await.unwrap());
        }
        assert_eq!(held.len(), CONNS);
        drop(held);
    });
}

//! The I/O paths allocate nothing once a connection is set up (DESIGN §4: "no allocation ... per
//! I/O operation and per wake").
//!
//! The counting global allocator (`tests/util_alloc`) counts every allocation in the process,
//! the runtime's worker threads included, so the tests of this binary run one at a time and
//! measure while nothing but the measured traffic runs. Set `NETPOLL_ALLOC_TRACE=1` to print a
//! backtrace of each allocation made while measuring.

mod util_alloc;
mod util_proc;
mod util_tcp;

use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_alloc::{count_allocs, serial};
use util_tcp::*;

/// An echo server on one end of a fresh pair; returns the other end.
async fn echo_pair() -> (TcpStream, netpoll::JoinHandle<()>) {
    let (c, s) = pair().await;
    let echo = netpoll::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
            }
        }
    });
    (c, echo)
}

/// `n` echo round trips of 32 bytes, optionally pushing a deadline forward before each one
/// (Go's idle timeout pattern).
async fn round_trips(c: &TcpStream, n: usize, with_deadline: bool) {
    let mut back = [0u8; 32];
    for i in 0..n {
        if with_deadline {
            c.set_deadline(Some(Instant::now() + Duration::from_secs(30)))
                .unwrap();
        }
        let msg = [i as u8; 32];
        c.write_all(&msg).await.unwrap();
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
}

const ROUND_TRIPS: usize = 2000;
const ACCEPTS: usize = 200;
const BULK: usize = 8 << 20;

#[test]
fn read_write_and_accept_paths_do_not_allocate() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        // The echo task is spawned (one allocation) before measuring.
        let (c, echo) = echo_pair().await;
        // Warm up: lazily allocated state (timers, queues, thread-locals) is created here.
        round_trips(&c, 200, true).await;
        round_trips(&c, 200, false).await;

        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, false)).await;
        assert_eq!(
            n.others, 0,
            "{ROUND_TRIPS} echo round trips allocated {} times",
            n.others
        );
        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, true)).await;
        assert_eq!(
            n.others, 0,
            "{ROUND_TRIPS} echo round trips with deadlines allocated {} times",
            n.others
        );
        drop(c);
        echo.await.unwrap();

        // Bulk transfer: writes wait for buffer space and are woken as the peer drains it.
        let (c, s) = pair().await;
        let sink = netpoll::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let mut total = 0;
                while total < BULK {
                    match s.read(&mut buf).await.unwrap() {
                        0 => return,
                        n => total += n,
                    }
                }
                s.write_all(b"k").await.unwrap();
            }
        });
        let chunk = vec![0x5au8; 64 * 1024];
        let bulk = || async {
            for _ in 0..BULK / chunk.len() {
                c.write_all(&chunk).await.unwrap();
            }
            c.read_exact(&mut [0u8; 1]).await.unwrap();
        };
        bulk().await; // warm up
        let (n, ()) = count_allocs(bulk()).await;
        assert_eq!(
            n.others, 0,
            "a {BULK}-byte transfer allocated {} times",
            n.others
        );
        drop(c);
        sink.await.unwrap();

        // Accept: the connections wait in the kernel's queue (dialled by std, which allocates
        // nothing here), so the count is the accept path's alone. Each accepted stream is one
        // allocation: its shared state (an `Arc`), which Go allocates too (`newFD`).
        let (ln, addr) = listener();
        for _ in 0..20 {
            let _c = std::net::TcpStream::connect(addr).unwrap();
            drop(ln.accept().await.unwrap()); // warm up
        }
        let mut clients = Vec::with_capacity(ACCEPTS);
        for _ in 0..ACCEPTS {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let (n, ()) = count_allocs(async {
            for _ in 0..ACCEPTS {
                let (conn, _) = ln.accept().await.unwrap();
                drop(conn);
            }
        })
        .await;
        assert_eq!(
            n.others, ACCEPTS,
            "{ACCEPTS} accepts allocated {} times (expected one per connection)",
            n.others
        );
        // Accepts that wait, woken by connections made while they wait.
        let mut held = Vec::with_capacity(20);
        let dialer = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(2));
                held.push(std::net::TcpStream::connect(addr).unwrap());
            }
            held
        });
        let (n, ()) = count_allocs(async {
            for _ in 0..20 {
                drop(ln.accept().await.unwrap());
            }
        })
        .await;
        drop(dialer.join().unwrap());
        // (The dialer thread allocates nothing: `held` has its capacity.)
        assert_eq!(
            n.others, 20,
            "20 waiting accepts allocated {} times (expected 20)",
            n.others
        );
    });
}

/// A read that times out allocates nothing either: idle timeouts are a normal event for a
/// server, not an exceptional one.
#[test]
fn timed_out_reads_do_not_allocate() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        let (c, _s) = pair().await;
        let timed_out_read = || async {
            c.set_read_deadline(Some(Instant::now() + Duration::from_micros(200)))
                .unwrap();
            assert_timeout(c.read(&mut [0u8; 8]).await);
        };
        for _ in 0..10 {
            timed_out_read().await; // warm up
        }
        let (n, ()) = count_allocs(async {
            for _ in 0..50 {
                timed_out_read().await;
            }
        })
        .await;
        assert_eq!(
            n.others, 0,
            "50 timed-out reads allocated {} times",
            n.others
        );
    });
}

/// The monitor thread must not allocate on its rounds either: they run every 20 µs to 10 ms
/// while the workers are busy, so an allocation there is a steady trickle under load.
#[test]
fn sysmon_does_not_allocate_while_workers_are_busy() {
    let _serial = serial();
    run(2, Duration::from_secs(60), async {
        let (c, echo) = echo_pair().await;
        round_trips(&c, 200, false).await;
        let (n, ()) = count_allocs(round_trips(&c, ROUND_TRIPS, false)).await;
        assert_eq!(
            n.sysmon, 0,
            "sysmon allocated {} times during {ROUND_TRIPS} round trips",
            n.sysmon
        );
        drop(c);
        echo.await.unwrap();
    });
}

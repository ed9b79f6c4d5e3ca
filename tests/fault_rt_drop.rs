//! Dropping a runtime while a thousand connections (two thousand sockets) are in the middle of
//! I/O in every way a socket can wait: no descriptor is left open, every thread is joined, and
//! every task's future is dropped, by the time `drop` returns.
//!
//! A binary of its own with one test: it counts the process's descriptors and threads. The
//! same check with a handful of sockets is `rt_shutdown.rs`.

mod util_fault;
mod util_proc;
mod util_tcp;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_fault::{fd_list, thread_names, threads, threads_settled};
use util_tcp::{listener, open_fds, raise_nofile_limit, within, Watchdog};

const PAIRS: usize = 1000;
/// Connections dialled at once while setting up.
const WAVE: usize = 100;

/// Counts drops of the futures it is moved into.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Caps the socket's send and receive buffers, so that the connections that flood their peers
/// hold kilobytes of kernel memory each, not megabytes.
fn small_buffers(s: &TcpStream) {
    let size: libc::c_int = 16 * 1024;
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: `size` is a valid c_int for the duration of the call and the length passed
        // is its size; the fd is an open socket borrowed from `s`.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
    }
}

#[test]
fn dropping_the_runtime_with_thousands_of_sockets_mid_io_leaks_no_fd_or_thread() {
    let limit = raise_nofile_limit() as usize;
    let _dog = Watchdog::new(Duration::from_secs(60));
    let (fds_before, threads_before) = (open_fds(), threads());
    // Two sockets a pair, plus some slack for the runtime.
    let pairs = PAIRS.min(limit.saturating_sub(fds_before + 100) / 2);
    assert!(pairs >= 100, "the descriptor limit ({limit}) is too low");

    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let (d, w) = (drops.clone(), waiting.clone());
    let spawned = rt.block_on(async move {
        within(Duration::from_secs(30), "setting up", async move {
            let (ln, addr) = listener();
            let acceptor = netpoll::spawn(async move {
                let mut by_peer = HashMap::new();
                for _ in 0..pairs {
                    let (s, peer) = ln.accept().await.unwrap();
                    by_peer.insert(peer, s);
                }
                (by_peer, ln)
            });
            let mut clients = Vec::with_capacity(pairs);
            for start in (0..pairs).step_by(WAVE) {
                let wave: Vec<_> = (start..(start + WAVE).min(pairs))
                    .map(|_| netpoll::spawn(TcpStream::connect(addr)))
                    .collect();
                for c in wave {
                    clients.push(c.await.unwrap().unwrap());
                }
            }
            let (mut by_peer, ln) = acceptor.await.unwrap();
            let mut spawned = 0;
            // The listener stays alive, with an accept pending, until the runtime goes.
            {
                let g = Guard(d.clone());
                let w = w.clone();
                netpoll::spawn(async move {
                    let _g = g;
                    w.fetch_add(1, SeqCst);
                    let _ = ln.accept().await;
                    unreachable!("nobody connects any more");
                });
                spawned += 1;
            }
            for (i, c) in clients.into_iter().enumerate() {
                let s = by_peer.remove(&c.local_addr().unwrap()).unwrap();
                let (gc, gs) = (Guard(d.clone()), Guard(d.clone()));
                let (wc, ws) = (w.clone(), w.clone());
                spawned += 2;
                match i % 5 {
                    // Ping-pong: a read or a write is always in flight on both sides.
                    0 => {
                        netpoll::spawn(async move {
                            let _g = gc;
                            wc.fetch_add(1, SeqCst);
                            let mut buf = [7u8; 512];
                            loop {
                                c.write_all(&buf).await.unwrap();
                                c.read_exact(&mut buf).await.unwrap();
                            }
                        });
                        netpoll::spawn(async move {
                            let _g = gs;
                            ws.fetch_add(1, SeqCst);
                            let mut buf = [0u8; 512];
                            loop {
                                s.read_exact(&mut buf).await.unwrap();
                                s.write_all(&buf).await.unwrap();
                            }
                        });
                    }
                    // A writer blocked on a full buffer; its peer never reads.
                    1 => {
                        small_buffers(&c);
                        small_buffers(&s);
                        netpoll::spawn(async move {
                            let _g = gc;
                            wc.fetch_add(1, SeqCst);
                            let chunk = [1u8; 64 * 1024];
                            loop {
                                c.write(&chunk).await.unwrap();
                            }
                        });
                        netpoll::spawn(async move {
                            let _g = gs;
                            ws.fetch_add(1, SeqCst);
                            netpoll::time::sleep(Duration::from_secs(600)).await;
                            drop(s);
                        });
                    }
                    // Both ends blocked in a read, one with a far deadline armed.
                    2 => {
                        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(600)))
                            .unwrap();
                        netpoll::spawn(async move {
                            let _g = gc;
                            wc.fetch_add(1, SeqCst);
                            let _ = c.read(&mut [0u8; 16]).await;
                            unreachable!("nobody writes, the deadline is far");
                        });
                        netpoll::spawn(async move {
                            let _g = gs;
                            ws.fetch_add(1, SeqCst);
                            let _ = s.read(&mut [0u8; 16]).await;
                            unreachable!("nobody writes");
                        });
                    }
                    // Deadlines expiring all the time; the peer is asleep.
                    3 => {
                        netpoll::spawn(async move {
                            let _g = gc;
                            wc.fetch_add(1, SeqCst);
                            loop {
                                c.set_read_deadline(Some(
                                    Instant::now() + Duration::from_millis(1),
                                ))
                                .unwrap();
                                let e = c.read(&mut [0u8; 16]).await.unwrap_err();
                                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                            }
                        });
                        netpoll::spawn(async move {
                            let _g = gs;
                            ws.fetch_add(1, SeqCst);
                            netpoll::time::sleep(Duration::from_secs(600)).await;
                            drop(s);
                        });
                    }
                    // A stream read slowly: data in flight, the writer mostly blocked.
                    _ => {
                        small_buffers(&c);
                        small_buffers(&s);
                        netpoll::spawn(async move {
                            let _g = gc;
                            wc.fetch_add(1, SeqCst);
                            let mut buf = [0u8; 4096];
                            loop {
                                c.read(&mut buf).await.unwrap();
                                netpoll::time::sleep(Duration::from_millis(1)).await;
                            }
                        });
                        netpoll::spawn(async move {
                            let _g = gs;
                            ws.fetch_add(1, SeqCst);
                            let chunk = [2u8; 16 * 1024];
                            loop {
                                s.write_all(&chunk).await.unwrap();
                            }
                        });
                    }
                }
            }
            // A finished blocking job leaves an idle blocking thread behind.
            netpoll::spawn_blocking(|| ()).await.unwrap();
            while w.load(SeqCst) < spawned {
                netpoll::time::sleep(Duration::from_millis(1)).await;
            }
            // Let the I/O run for a moment, then leave everything in flight.
            netpoll::time::sleep(Duration::from_millis(100)).await;
            spawned
        })
        .await
    });
    assert_eq!(waiting.load(SeqCst), spawned);
    assert!(
        open_fds() >= fds_before + 2 * pairs,
        "the sockets are open before the drop"
    );
    assert_eq!(drops.load(SeqCst), 0, "a task ended before the drop");

    drop(rt);

    assert_eq!(
        drops.load(SeqCst),
        spawned,
        "futures left undropped after drop(rt)"
    );
    assert_eq!(
        open_fds(),
        fds_before,
        "descriptors leaked: {:?}",
        fd_list()
    );
    assert_eq!(
        threads_settled(threads_before),
        threads_before,
        "threads leaked: {:?}",
        thread_names()
    );
}

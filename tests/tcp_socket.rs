//! TCP socket setup and the I/O loops: Go's defaults (`TCP_NODELAY`, keep-alive), connect
//! (`TestTCPSpuriousConnSetupCompletion`), peek and vectored I/O.

mod util_proc;
mod util_tcp;

use std::io::{self, IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};
use util_tcp::*;

const LIMIT: Duration = Duration::from_secs(20);
const PROMPT: Duration = Duration::from_secs(3);

/// (TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)
fn tcp_options(c: &TcpStream) -> (i32, i32, i32, i32, i32) {
    (
        sockopt_int(c, libc::IPPROTO_TCP, libc::TCP_NODELAY),
        sockopt_int(c, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        sockopt_int(c, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        sockopt_int(c, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        sockopt_int(c, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    )
}

// Go: TestDialerKeepAlive, and newTCPConn's TCP_NODELAY, for dialed and accepted connections.
#[test]
fn dialed_and_accepted_connections_get_go_defaults() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        for conn in [&c, &s] {
            assert_eq!(tcp_options(conn), (1, 1, 15, 15, 9));
            assert!(conn.nodelay().unwrap());
        }
    });
}

// Go: TestDialerKeepAlive's table (-1 → off, 5 s, 30 s) and roundDurationUp for fractions.
#[test]
fn keepalive_settings_read_back() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        c.set_keepalive(None).unwrap();
        assert_eq!(sockopt_int(&c, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        c.set_keepalive(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(tcp_options(&c), (1, 1, 5, 5, 9));
        c.set_keepalive(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(tcp_options(&c), (1, 1, 30, 30, 9));
        c.set_nodelay(false).unwrap();
        assert_eq!(sockopt_int(&c, libc::IPPROTO_TCP, libc::TCP_NODELAY), 0);
        assert!(!c.nodelay().unwrap());
    });
}

/// Go rounds keep-alive periods up to whole seconds (`roundDurationUp`): 1.5 s is 2 s, 1 ms is
/// 1 s, rather than truncating to 0, which the kernel rejects.
#[test]
fn keepalive_fractions_of_a_second_round_up() {
    run(2, LIMIT, async {
        let (c, _s) = pair().await;
        c.set_keepalive(Some(Duration::from_millis(1500))).unwrap();
        assert_eq!(tcp_options(&c), (1, 1, 2, 2, 9));
        c.set_keepalive(Some(Duration::from_millis(1))).unwrap();
        assert_eq!(tcp_options(&c), (1, 1, 1, 1, 9));
    });
}

/// Listeners: SO_REUSEADDR, non-blocking, close-on-exec, and the backlog from somaxconn.
#[test]
fn listener_defaults() {
    run(1, LIMIT, async {
        let (ln, _) = listener();
        assert_eq!(sockopt_int(&ln, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
        assert_eq!(sockopt_int(&ln, libc::SOL_SOCKET, libc::SO_ACCEPTCONN), 1);
        let (c, s) = pair().await;
        for fd in [ln.as_raw_fd_(), c.as_raw_fd_(), s.as_raw_fd_()] {
            // SAFETY: fcntl on descriptors owned by the sockets above, which are alive.
            let (fl, fdfl) = unsafe {
                (
                    libc::fcntl(fd, libc::F_GETFL),
                    libc::fcntl(fd, libc::F_GETFD),
                )
            };
            assert!(fl & libc::O_NONBLOCK != 0, "fd {fd} is blocking");
            assert!(fdfl & libc::FD_CLOEXEC != 0, "fd {fd} is not close-on-exec");
        }
    });
}

trait RawFdExt {
    fn as_raw_fd_(&self) -> i32;
}

impl<T: std::os::fd::AsRawFd> RawFdExt for T {
    fn as_raw_fd_(&self) -> i32 {
        self.as_raw_fd()
    }
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        ln.close().unwrap();
        let e = within(PROMPT, "connect", TcpStream::connect(addr))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
        let e = TcpStream::connect_timeout(addr, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
    });
}

/// Connect tries each resolved address in turn (Go's `dialSerial`).
#[test]
fn connect_falls_back_to_the_next_address() {
    run(2, LIMIT, async {
        let (dead, dead_addr) = listener();
        dead.close().unwrap();
        let (ln, addr) = listener();
        let accept = netpoll::spawn(async move { ln.accept().await.map(|(_, a)| a) });
        let c = TcpStream::connect(&[dead_addr, addr][..]).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr);
        assert_eq!(accept.await.unwrap().unwrap(), c.local_addr().unwrap());
    });
}

/// A loopback address whose connects hang (see `tcp_timeout.rs`): a backlog-0 listener with a
/// full accept queue. Returns what must stay alive while it is used.
fn black_hole() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    let ln = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    ln.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    ln.listen(0).unwrap();
    let addr = ln.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (addr, ln, fill),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
        assert!(fill.len() < 16, "the accept queue never filled up");
    }
}

// Go's dialSerial with partialDeadline: with several addresses, each gets an equal share of the
// time left (at least 2 s, or all of it if less is left), so one address that hangs does not
// use up the whole timeout; and the error reported is the first address's.
#[test]
fn connect_timeout_shares_the_time_between_addresses() {
    run(2, LIMIT, async {
        let (hole, _ln, _fill) = black_hole();
        let (ln, addr) = listener();
        let accept = netpoll::spawn(async move { ln.accept().await.map(drop) });
        let start = std::time::Instant::now();
        let c = TcpStream::connect_timeout(&[hole, addr][..], Duration::from_secs(4))
            .await
            .expect("the second address, after the first one's share of the timeout");
        assert_eq!(c.peer_addr().unwrap(), addr);
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        accept.await.unwrap().unwrap();

        // When every address fails, the first address's error is reported.
        let (dead, dead_addr) = listener();
        dead.close().unwrap();
        let e = TcpStream::connect_timeout(&[dead_addr, hole][..], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
    });
}

// Go: TestTCPSpuriousConnSetupCompletion(WithCancel): many dials, some cut short by a timeout or
// by dropping the connect; every dial that returns a connection returned a connected one.
#[test]
fn tcp_spurious_conn_setup_completion() {
    run(2, LIMIT, async {
        const ATTEMPTS: usize = 1000;
        const IN_FLIGHT: usize = 8;
        let (ln, addr) = listener();
        let served = Arc::new(AtomicUsize::new(0));
        let server = {
            let served = served.clone();
            netpoll::spawn(async move {
                loop {
                    let (c, _) = match ln.accept().await {
                        Ok(x) => x,
                        Err(e) => return e,
                    };
                    let served = served.clone();
                    netpoll::spawn(async move {
                        let _ = c.read(&mut [0u8; 1]).await;
                        served.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        };
        let connected = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|w| {
                let connected = connected.clone();
                netpoll::spawn(async move {
                    for i in (w..ATTEMPTS).step_by(IN_FLIGHT) {
                        let c = match i % 3 {
                            0 => TcpStream::connect_timeout(addr, Duration::from_millis(50)).await,
                            1 => TcpStream::connect(addr).await,
                            // Dropped mid-connect when the 1 µs timer wins.
                            _ => match netpoll::time::timeout(
                                Duration::from_micros(1),
                                TcpStream::connect(addr),
                            )
                            .await
                            {
                                Ok(c) => c,
                                Err(_) => continue,
                            },
                        };
                        let c = match c {
                            Ok(c) => c,
                            Err(e) => {
                                assert_eq!(e.kind(), io::ErrorKind::TimedOut, "#{i}: {e:?}");
                                continue;
                            }
                        };
                        assert_eq!(c.peer_addr().unwrap(), addr, "#{i}");
                        if let Err(e) = c.write(&[0u8]).await {
                            assert_ne!(e.raw_os_error(), Some(libc::ENOTCONN), "#{i}");
                            panic!("#{i}: write on a new connection: {e:?}");
                        }
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let connected = connected.load(Ordering::Relaxed);
        assert!(
            connected >= ATTEMPTS / 3,
            "only {connected} dials succeeded"
        );
        // Every connection that carried a byte was served.
        while served.load(Ordering::Relaxed) < connected {
            netpoll::time::sleep(Duration::from_millis(1)).await;
        }
        server.abort();
    });
}

#[test]
fn peek_does_not_consume() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let c2 = c.clone();
        // A blocked peek is woken by data.
        let peek = netpoll::spawn(async move {
            let mut b = [0u8; 3];
            let n = c2.peek(&mut b).await.unwrap();
            b[..n].to_vec()
        });
        netpoll::time::sleep(Duration::from_millis(20)).await;
        assert!(!peek.is_finished());
        s.write_all(b"hello").await.unwrap();
        let seen = within(PROMPT, "peek", peek).await.unwrap();
        assert!(!seen.is_empty() && b"hel".starts_with(&seen), "{seen:?}");
        // Peeking again sees the same bytes; reading consumes them.
        let mut b = [0u8; 5];
        let mut n = 0;
        while n < 5 {
            n = c.peek(&mut b).await.unwrap();
        }
        assert_eq!(&b, b"hello");
        let mut r = [0u8; 5];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!(&r, b"hello");
        // Peek at EOF returns 0.
        s.close().unwrap();
        assert_eq!(c.peek(&mut b).await.unwrap(), 0);
    });
}

#[test]
fn vectored_io() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let parts: [&[u8]; 3] = [b"hello ", b"vectored ", b"world"];
        let slices = parts.map(IoSlice::new);
        let mut n = c.write_vectored(&slices).await.unwrap();
        assert!(n > 0);
        let all = parts.concat();
        if n < all.len() {
            c.write_all(&all[n..]).await.unwrap();
            n = all.len();
        }
        let mut got = vec![0u8; n];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, all);

        // A blocked vectored read is woken and scatters the data in order.
        s.write_all(b"0123456789").await.unwrap();
        let (mut a, mut b) = ([0u8; 4], [0u8; 100]);
        let mut total = 0;
        while total < 10 {
            let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
            // (A second call would overwrite from the start; a single segment arrives here.)
            total = c.read_vectored(&mut bufs).await.unwrap();
        }
        assert_eq!(&a, b"0123");
        assert_eq!(&b[..6], b"456789");
        assert_eq!(c.read_vectored(&mut []).await.unwrap(), 0);
    });
}

/// More slices than `UIO_MAXIOV` (1024): the call transfers a prefix instead of failing with
/// `EINVAL`.
#[test]
fn vectored_io_with_more_slices_than_the_kernel_takes() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let slices: Vec<IoSlice<'_>> = data.chunks(1).map(IoSlice::new).collect();
        let n = c.write_vectored(&slices).await.unwrap();
        assert!(n > 0 && n <= 1024, "{n}");
        let mut got = vec![0u8; n];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, data[..n]);

        s.write_all(&data).await.unwrap();
        let mut back = vec![0u8; 3000];
        let mut done = 0;
        while done < 3000 {
            let mut slices: Vec<IoSliceMut<'_>> =
                back[done..].chunks_mut(1).map(IoSliceMut::new).collect();
            let n = c.read_vectored(&mut slices).await.unwrap();
            assert!(n > 0 && n <= 1024, "{n}");
            done += n;
        }
        assert_eq!(back, data);
    });
}

#[test]
fn zero_length_write_and_read_exact_at_eof() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        assert_eq!(c.write(b"").await.unwrap(), 0);
        c.write_all(b"").await.unwrap();
        c.write_all(b"ab").await.unwrap();
        c.close().unwrap();
        let mut b = [0u8; 3];
        let e = s.read_exact(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    });
}

/// Many sequential `read_exact` calls each wait for a slow writer's pieces.
#[test]
fn read_exact_assembles_a_slowly_written_message() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        let writer = netpoll::spawn(async move {
            for chunk in b"0123456789".chunks(3) {
                s.write_all(chunk).await.unwrap();
                netpoll::time::sleep(Duration::from_millis(5)).await;
            }
            s
        });
        let mut b = [0u8; 10];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"0123456789");
        drop(writer.await.unwrap());
    });
}

/// Sockets from `std` work once wrapped.
#[test]
fn from_std_wraps_listeners_and_streams() {
    run(2, LIMIT, async {
        let std_ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_ln.local_addr().unwrap();
        let ln = TcpListener::from_std(std_ln).unwrap();
        let std_c = std::net::TcpStream::connect(addr).unwrap();
        let c = TcpStream::from_std(std_c).unwrap();
        let (s, peer) = ln.accept().await.unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        c.write_all(b"std").await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"std");
    });
}

#[test]
fn ipv6_loopback() {
    run(2, LIMIT, async {
        let ln = match TcpListener::bind("[::1]:0") {
            Ok(ln) => ln,
            Err(e) => {
                println!("skipped: no IPv6 loopback here ({e})");
                return;
            }
        };
        let addr = ln.local_addr().unwrap();
        assert!(addr.is_ipv6());
        let accept = netpoll::spawn(async move { ln.accept().await.unwrap() });
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, peer) = accept.await.unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(tcp_options(&s), (1, 1, 15, 15, 9));
        c.write_all(b"six").await.unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"six");
    });
}

//! `UnixStream::connect` against a listener whose backlog is full: Linux fails a non-blocking
//! connect with `EAGAIN` and gives no readiness event when the backlog drains, so connect
//! retries on a timer. These tests check that it waits (without burning a CPU), succeeds once
//! the server accepts, and honours a deadline.
//!
//! The tests in this binary take a lock so they run one at a time: one of them measures the
//! process's CPU time.

mod util_net;
mod util_proc;

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netpoll::net::{UnixListener, UnixStream};
use socket2::{Domain, SockAddr, Socket, Type};
use util_net::{cpu_time, is_timeout, run, within, TempDir};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener with a backlog of 1 (ours use the system maximum, far too many to fill).
fn small_backlog_listener(path: &Path) -> UnixListener {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    s.bind(&SockAddr::unix(path).unwrap()).unwrap();
    s.listen(1).unwrap();
    let std_ln = std::os::unix::net::UnixListener::from(OwnedFd::from(s));
    let ln = UnixListener::from_std(std_ln).unwrap();
    ln.set_unlink_on_close(true);
    ln
}

/// Connects non-blocking clients until the kernel says `EAGAIN`; returns them (they must stay
/// open to keep the backlog full).
fn fill_backlog(path: &Path) -> Vec<Socket> {
    let addr = SockAddr::unix(path).unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        let s = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).unwrap();
        match s.connect(&addr) {
            Ok(()) => held.push(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return held,
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!("the backlog never filled");
}

#[test]
fn connect_waits_for_a_full_backlog_without_spinning() {
    let _serial = serial();
    let dir = TempDir::new("backlog");
    run(async {
        let path = dir.path("b.sock");
        let ln = small_backlog_listener(&path);
        let held = fill_backlog(&path);

        let p = path.clone();
        let pending = netpoll::spawn(async move { UnixStream::connect(&p).await });
        let wall = Duration::from_millis(300);
        let cpu0 = cpu_time();
        netpoll::time::sleep(wall).await;
        let used = cpu_time() - cpu0;
        assert!(
            !pending.is_finished(),
            "connect returned while the backlog was full"
        );
        // A spinning retry loop would use about one CPU for the whole wait.
        assert!(
            used < wall / 2,
            "connect burned {used:?} of CPU in {wall:?}"
        );

        // Accepting one queued connection makes room: the waiting connect completes.
        let (first, _) = within(5, ln.accept()).await.unwrap();
        let conn = within(5, pending).await.unwrap().unwrap();
        let mut accepted = vec![first];
        for _ in 0..held.len() {
            accepted.push(within(5, ln.accept()).await.unwrap().0);
        }
        conn.write_all(b"made it").await.unwrap();
        let mut b = [0u8; 7];
        within(5, accepted.last().unwrap().read_exact(&mut b))
            .await
            .unwrap();
        assert_eq!(&b, b"made it");
    });
}

#[test]
fn connect_timeout_fails_while_the_backlog_stays_full() {
    let _serial = serial();
    let dir = TempDir::new("backlog-to");
    run(async {
        let path = dir.path("b.sock");
        let _ln = small_backlog_listener(&path);
        let _held = fill_backlog(&path);

        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        let e = within(5, UnixStream::connect_timeout(&path, timeout))
            .await
            .unwrap_err();
        assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        assert!(start.elapsed() >= timeout, "gave up before the timeout");

        // A past deadline fails at once, without trying.
        let past = Instant::now() - Duration::from_secs(1);
        let e = within(5, UnixStream::connect_deadline(&path, past))
            .await
            .unwrap_err();
        assert!(is_timeout(&e), "want TimedOut, got {e:?}");
    });
}

/// A burst of clients larger than the backlog all get through a slow acceptor.
#[test]
fn burst_of_clients_all_connect_through_a_small_backlog() {
    let _serial = serial();
    let dir = TempDir::new("burst");
    run(async {
        let path = dir.path("b.sock");
        let ln = small_backlog_listener(&path);
        const N: usize = 20;
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let p = path.clone();
                netpoll::spawn(async move {
                    let c = UnixStream::connect(&p).await?;
                    c.write_all(&[i as u8]).await?;
                    Ok::<_, io::Error>(c)
                })
            })
            .collect();
        let mut seen = Vec::new();
        for _ in 0..N {
            netpoll::time::sleep(Duration::from_millis(2)).await;
            let (s, _) = within(10, ln.accept()).await.unwrap();
            let mut b = [0u8; 1];
            within(5, s.read_exact(&mut b)).await.unwrap();
            seen.push(b[0]);
        }
        for c in clients {
            within(5, c).await.unwrap().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..N as u8).collect::<Vec<_>>());
    });
}

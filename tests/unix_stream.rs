//! Unix stream sockets: echo, Go's `TestZeroByteRead` and `TestCloseUnblocksRead` for unix,
//! deadlines, close, the listener's socket file, `pair`, credentials and abstract names.

mod util_net;
mod util_proc;

use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;
use std::time::{Duration, Instant};

use netpoll::net::{is_closed, UnixListener, UnixStream};
use util_net::{
    assert_nonblocking_cloexec, assert_send, assert_send_sync, is_timeout, run, stays_pending,
    within, TempDir,
};

/// A listener and a connected client/server pair.
async fn connected(dir: &TempDir) -> (UnixListener, UnixStream, UnixStream) {
    let path = dir.path("s.sock");
    let ln = UnixListener::bind(&path).unwrap();
    let client = within(5, UnixStream::connect(&path)).await.unwrap();
    let (server, _) = within(5, ln.accept()).await.unwrap();
    (ln, client, server)
}

#[test]
fn unix_types_are_send_sync_and_futures_are_send() {
    assert_send_sync::<UnixListener>();
    assert_send_sync::<UnixStream>();
    let dir = TempDir::new("sendsync");
    run(async {
        let (ln, c, _s) = connected(&dir).await;
        let mut buf = [0u8; 4];
        assert_send(&ln.accept());
        assert_send(&UnixStream::connect(dir.path("s.sock")));
        assert_send(&c.read(&mut buf));
        assert_send(&c.write(b"x"));
        assert_send(&c.write_all(b"x"));
        assert_send(&c.peek(&mut buf));
        let dbg = format!("{ln:?} {c:?}");
        assert!(
            dbg.contains("UnixListener") && dbg.contains("s.sock"),
            "{dbg}"
        );
    });
}

#[test]
fn echo_over_unix_stream() {
    let dir = TempDir::new("echo");
    run(async {
        let path = dir.path("echo.sock");
        let ln = UnixListener::bind(&path).unwrap();
        assert_eq!(ln.local_addr().unwrap().as_pathname(), Some(path.as_path()));
        let server = netpoll::spawn(async move {
            let (c, peer) = ln.accept().await.unwrap();
            assert!(peer.is_unnamed(), "{peer:?}");
            let mut buf = [0u8; 4096];
            let mut total = 0;
            loop {
                let n = c.read(&mut buf).await.unwrap();
                if n == 0 {
                    break total;
                }
                c.write_all(&buf[..n]).await.unwrap();
                total += n;
            }
        });
        let c = within(5, UnixStream::connect(&path)).await.unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
        assert!(c.local_addr().unwrap().is_unnamed());
        // Larger than the socket buffers, so both sides wait for space and data.
        let msg: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
        let writer = {
            let c = c.clone();
            let msg = msg.clone();
            netpoll::spawn(async move {
                c.write_all(&msg).await.unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = vec![0u8; msg.len()];
        within(10, c.read_exact(&mut back)).await.unwrap();
        assert!(back == msg, "echoed bytes differ");
        within(5, writer).await.unwrap();
        assert_eq!(within(5, server).await.unwrap(), msg.len());
        // The server closed: EOF.
        assert_eq!(within(5, c.read(&mut [0u8; 8])).await.unwrap(), 0);
    });
}

#[test]
fn vectored_io_and_peek() {
    let dir = TempDir::new("vec");
    run(async {
        let (_ln, c, s) = connected(&dir).await;
        let n = c
            .write_vectored(&[IoSlice::new(b"hel"), IoSlice::new(b"lo")])
            .await
            .unwrap();
        assert_eq!(n, 5);
        let mut p = [0u8; 5];
        let n = within(5, s.peek(&mut p)).await.unwrap();
        assert_eq!(&p[..n], &b"hello"[..n]);
        let (mut a, mut b) = ([0u8; 2], [0u8; 3]);
        let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        // One small write on a unix stream is one message: it is read whole.
        assert_eq!(within(5, s.read_vectored(&mut bufs)).await.unwrap(), 5);
        assert_eq!((&a, &b), (b"he", b"llo"));
    });
}

/// Go's `TestZeroByteRead` for unix: an empty read returns `Ok(0)` at once, without data and
/// without consuming any.
#[test]
fn zero_byte_read_returns_at_once() {
    let dir = TempDir::new("zero");
    run(async {
        let (_ln, c, s) = connected(&dir).await;
        assert_eq!(within(5, s.read(&mut [])).await.unwrap(), 0);
        c.write_all(b"x").await.unwrap();
        assert_eq!(within(5, s.read(&mut [])).await.unwrap(), 0);
        let mut b = [0u8; 1];
        assert_eq!(within(5, s.read(&mut b)).await.unwrap(), 1);
        assert_eq!(&b, b"x");
    });
}

/// Go's `TestCloseUnblocksRead`: the peer closing wakes a blocked read with `Ok(0)` (EOF).
#[test]
fn peer_close_unblocks_read_with_eof() {
    let dir = TempDir::new("eof");
    run(async {
        let (_ln, c, s) = connected(&dir).await;
        let reader = netpoll::spawn(async move { c.read(&mut [0u8; 8]).await });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished());
        s.close().unwrap();
        assert_eq!(within(5, reader).await.unwrap().unwrap(), 0);
    });
}

#[test]
fn read_deadline_times_out_and_unblocks() {
    let dir = TempDir::new("rdl");
    run(async {
        let (_ln, c, s) = connected(&dir).await;
        // Past deadline: fails at once, even with data queued.
        s.write_all(b"data").await.unwrap();
        c.set_read_deadline(Some(Instant::now() - Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 8];
        assert!(is_timeout(&within(5, c.read(&mut b)).await.unwrap_err()));
        // Near deadline: the queued data, then a timeout no earlier than the deadline.
        let deadline = Instant::now() + Duration::from_millis(50);
        c.set_read_deadline(Some(deadline)).unwrap();
        assert_eq!(within(5, c.read(&mut b)).await.unwrap(), 4);
        assert!(is_timeout(&within(5, c.read(&mut b)).await.unwrap_err()));
        assert!(Instant::now() >= deadline);
        // Moved into the past from another task while blocked.
        c.set_read_deadline(None).unwrap();
        let setter = c.clone();
        let t = netpoll::spawn(async move {
            netpoll::time::sleep(Duration::from_millis(50)).await;
            setter.set_read_deadline(Some(Instant::now())).unwrap();
        });
        assert!(is_timeout(&within(5, c.read(&mut b)).await.unwrap_err()));
        t.await.unwrap();
        // The `_after` setters: zero has passed, a duration fires no earlier than it says.
        c.set_deadline_after(Duration::ZERO).unwrap();
        assert!(is_timeout(&within(5, c.write(b"x")).await.unwrap_err()));
        c.set_write_deadline_after(Duration::from_secs(3600))
            .unwrap();
        c.write_all(b"x").await.unwrap();
        let d = Duration::from_millis(30);
        let start = Instant::now();
        c.set_read_deadline_after(d).unwrap();
        assert!(is_timeout(&within(5, c.read(&mut b)).await.unwrap_err()));
        assert!(start.elapsed() >= d);
    });
}

/// Go's `TestWriteTimeout` shape for unix: a peer that never reads makes `write_all` fill the
/// buffers and then fail with `TimedOut`, no earlier than the deadline.
#[test]
fn write_deadline_times_out_when_peer_never_reads() {
    let dir = TempDir::new("wdl");
    run(async {
        let (_ln, c, _s) = connected(&dir).await;
        let deadline = Instant::now() + Duration::from_millis(100);
        c.set_write_deadline(Some(deadline)).unwrap();
        let big = vec![7u8; 16 << 20];
        let e = within(10, c.write_all(&big)).await.unwrap_err();
        assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        assert!(Instant::now() >= deadline);
        // Sticky, and the read side is unaffected.
        assert!(is_timeout(&c.write(b"x").await.unwrap_err()));
        assert!(stays_pending(30, c.read(&mut [0u8; 1])).await);
    });
}

#[test]
fn close_wakes_blocked_read_and_write() {
    let dir = TempDir::new("close");
    run(async {
        let (_ln, c, _s) = connected(&dir).await;
        let r = c.clone();
        let reader = netpoll::spawn(async move { r.read(&mut [0u8; 8]).await });
        let w = c.clone();
        let writer = netpoll::spawn(async move { w.write_all(&vec![0u8; 16 << 20]).await });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished() && !writer.is_finished());
        c.close().unwrap();
        assert!(is_closed(&within(5, reader).await.unwrap().unwrap_err()));
        assert!(is_closed(&within(5, writer).await.unwrap().unwrap_err()));
        assert!(is_closed(&c.close().unwrap_err()));
    });
}

#[test]
fn close_wakes_accept() {
    let dir = TempDir::new("acc");
    run(async {
        let ln = UnixListener::bind(dir.path("a.sock")).unwrap();
        let l2 = ln.clone();
        let acceptor = netpoll::spawn(async move { l2.accept().await.map(|_| ()) });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        assert!(!acceptor.is_finished());
        ln.close().unwrap();
        let e = within(5, acceptor).await.unwrap().unwrap_err();
        assert!(is_closed(&e), "{e:?}");
    });
}

#[test]
fn accept_deadline_times_out() {
    let dir = TempDir::new("accdl");
    run(async {
        let ln = UnixListener::bind(dir.path("a.sock")).unwrap();
        let deadline = Instant::now() + Duration::from_millis(30);
        ln.set_deadline(Some(deadline)).unwrap();
        assert!(is_timeout(&within(5, ln.accept()).await.unwrap_err()));
        assert!(Instant::now() >= deadline);
        ln.set_deadline_after(Duration::ZERO).unwrap();
        assert!(is_timeout(&within(5, ln.accept()).await.unwrap_err()));
    });
}

/// Go's `UnixListener.Close`: the socket file goes away with the listener, so the path can
/// be bound again at once.
#[test]
fn listener_close_unlinks_path_and_rebinding_works() {
    let dir = TempDir::new("unlink");
    run(async {
        let path = dir.path("l.sock");
        let ln = UnixListener::bind(&path).unwrap();
        assert!(path.exists());
        // While it exists, binding again fails.
        let e = UnixListener::bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e:?}");
        ln.close().unwrap();
        assert!(!path.exists(), "close left the socket file");

        let ln = UnixListener::bind(&path).unwrap();
        let c = within(5, UnixStream::connect(&path)).await.unwrap();
        let (s, _) = within(5, ln.accept()).await.unwrap();
        c.write_all(b"again").await.unwrap();
        let mut b = [0u8; 5];
        within(5, s.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"again");

        // Dropping the last clone unlinks too; dropping one of two does not.
        let other = ln.clone();
        drop(ln);
        assert!(path.exists());
        drop(other);
        assert!(!path.exists(), "last drop left the socket file");
        // Streams never unlink anything.
        drop((c, s));
    });
}

#[test]
fn listener_does_not_unlink_a_file_it_did_not_create() {
    let dir = TempDir::new("foreign");
    run(async {
        let path = dir.path("l.sock");
        let ln = UnixListener::bind(&path).unwrap();
        // Someone replaces the socket file while we listen.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"not ours").unwrap();
        ln.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
    });
}

#[test]
fn set_unlink_on_close_false_keeps_the_file() {
    let dir = TempDir::new("keep");
    run(async {
        let path = dir.path("l.sock");
        let ln = UnixListener::bind(&path).unwrap();
        ln.clone().set_unlink_on_close(false);
        ln.close().unwrap();
        assert!(path.exists());
        // A listener from std does not unlink unless asked to.
        std::fs::remove_file(&path).unwrap();
        let ln =
            UnixListener::from_std(std::os::unix::net::UnixListener::bind(&path).unwrap()).unwrap();
        drop(ln);
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
        let ln =
            UnixListener::from_std(std::os::unix::net::UnixListener::bind(&path).unwrap()).unwrap();
        ln.set_unlink_on_close(true);
        drop(ln);
        assert!(!path.exists());
    });
}

#[test]
fn connect_to_missing_path_is_not_found() {
    let dir = TempDir::new("missing");
    run(async {
        let e = within(5, UnixStream::connect(dir.path("nobody.sock")))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e:?}");
    });
}

#[test]
fn connect_to_stale_socket_file_is_refused() {
    let dir = TempDir::new("stale");
    run(async {
        let path = dir.path("stale.sock");
        let ln = UnixListener::bind(&path).unwrap();
        ln.set_unlink_on_close(false);
        drop(ln);
        assert!(path.exists());
        let e = within(5, UnixStream::connect(&path)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
    });
}

#[test]
fn connect_rejects_paths_with_nul() {
    run(async {
        let e = UnixStream::connect("bad\0path").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = UnixListener::bind("\0abstract-by-accident").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn pair_is_connected_both_ways() {
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        within(5, b.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        within(5, a.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert!(a.local_addr().unwrap().is_unnamed());
        assert!(a.peer_addr().unwrap().is_unnamed());
        b.shutdown(Shutdown::Write).unwrap();
        assert_eq!(within(5, a.read(&mut buf)).await.unwrap(), 0);
        a.close().unwrap();
        let e = within(5, b.write_all(b"gone")).await.unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::BrokenPipe,
            "no SIGPIPE, an error: {e:?}"
        );
    });
}

#[test]
fn read_exact_reports_early_eof() {
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"ab").await.unwrap();
        a.close().unwrap();
        let e = within(5, b.read_exact(&mut [0u8; 4])).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    });
}

#[test]
fn peer_cred_names_this_process() {
    let dir = TempDir::new("cred");
    run(async {
        let (_ln, c, s) = connected(&dir).await;
        let me = std::process::id() as i32;
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        for cred in [c.peer_cred().unwrap(), s.peer_cred().unwrap()] {
            assert_eq!((cred.uid(), cred.gid(), cred.pid()), (uid, gid, Some(me)));
        }
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(a.peer_cred().unwrap().pid(), Some(me));
    });
}

#[test]
fn abstract_namespace_listener_and_stream() {
    run(async {
        let name = format!("netpoll-test-{}-abstract", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let ln = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(
            ln.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        let c = within(5, UnixStream::connect_addr(&addr)).await.unwrap();
        let (s, _) = within(5, ln.accept()).await.unwrap();
        assert_eq!(
            c.peer_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        s.write_all(b"abstract").await.unwrap();
        let mut b = [0u8; 8];
        within(5, c.read_exact(&mut b)).await.unwrap();
        assert_eq!(&b, b"abstract");
        ln.close().unwrap();
        // The name is released with the socket: it can be bound again.
        drop(UnixListener::bind_addr(&addr).unwrap());
    });
}

#[test]
fn concurrent_write_all_from_clones_never_interleave() {
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        const CHUNK: usize = 256 << 10;
        let writers: Vec<_> = (0..4u8)
            .map(|i| {
                let a = a.clone();
                netpoll::spawn(async move { a.write_all(&vec![i; CHUNK]).await })
            })
            .collect();
        let mut buf = vec![0u8; CHUNK];
        let mut seen = Vec::new();
        for _ in 0..4 {
            within(10, b.read_exact(&mut buf)).await.unwrap();
            let first = buf[0];
            assert!(buf.iter().all(|&x| x == first), "writes interleaved");
            seen.push(first);
        }
        for w in writers {
            within(5, w).await.unwrap().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    });
}

#[test]
fn from_std_stream_works() {
    run(async {
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        let (a, b) = (
            UnixStream::from_std(x).unwrap(),
            UnixStream::from_std(y).unwrap(),
        );
        a.write_all(b"std").await.unwrap();
        let mut buf = [0u8; 3];
        within(5, b.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"std");
    });
}

#[test]
fn every_socket_is_nonblocking_and_cloexec_from_creation() {
    let dir = TempDir::new("flags");
    run(async {
        let (ln, c, s) = connected(&dir).await;
        let (p, q) = UnixStream::pair().unwrap();
        let (d1, d2) = netpoll::net::UnixDatagram::pair().unwrap();
        let d3 = netpoll::net::UnixDatagram::unbound().unwrap();
        let d4 = netpoll::net::UnixDatagram::bind(dir.path("d.sock")).unwrap();
        for fd in [
            ln.as_raw_fd(),
            c.as_raw_fd(),
            s.as_raw_fd(),
            p.as_raw_fd(),
            q.as_raw_fd(),
            d1.as_raw_fd(),
            d2.as_raw_fd(),
            d3.as_raw_fd(),
            d4.as_raw_fd(),
        ] {
            assert_nonblocking_cloexec(fd);
        }
    });
}

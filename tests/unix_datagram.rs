//! Unix datagram sockets: send/recv between bound, unbound and paired sockets, addresses,
//! empty datagrams, deadlines in both directions, a full peer queue, and close.

mod util_net;
mod util_proc;

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;
use std::time::{Duration, Instant};

use netpoll::net::{is_closed, UnixDatagram};
use util_net::{assert_send, assert_send_sync, is_timeout, run, stays_pending, within, TempDir};

#[test]
fn unix_datagram_is_send_sync_and_futures_are_send() {
    assert_send_sync::<UnixDatagram>();
    let dir = TempDir::new("dg-send");
    run(async {
        let s = UnixDatagram::bind(dir.path("d.sock")).unwrap();
        let mut buf = [0u8; 4];
        assert_send(&s.send_to(b"x", dir.path("d.sock")));
        assert_send(&s.recv_from(&mut buf));
        assert_send(&s.send(b"x"));
        assert_send(&s.recv(&mut buf));
        assert!(format!("{s:?}").contains("d.sock"));
    });
}

#[test]
fn send_to_and_recv_from_between_bound_sockets() {
    let dir = TempDir::new("dg-bound");
    run(async {
        let (pa, pb) = (dir.path("a.sock"), dir.path("b.sock"));
        let a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        assert_eq!(a.local_addr().unwrap().as_pathname(), Some(pa.as_path()));
        let mut buf = [0u8; 64];
        for i in 0..100u32 {
            let msg = format!("datagram {i}");
            assert_eq!(a.send_to(msg.as_bytes(), &pb).await.unwrap(), msg.len());
            let (n, from) = within(5, b.recv_from(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], msg.as_bytes());
            assert_eq!(from.as_pathname(), Some(pa.as_path()));
            // Reply to whoever sent it.
            b.send_to_addr(&buf[..n], &from).await.unwrap();
            let (n, _) = within(5, a.recv_from(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], msg.as_bytes());
        }
        // Sockets do not unlink their files (only listeners do).
        drop((a, b));
        assert!(pa.exists() && pb.exists());
    });
}

#[test]
fn unbound_sender_is_unnamed() {
    let dir = TempDir::new("dg-unbound");
    run(async {
        let path = dir.path("srv.sock");
        let srv = UnixDatagram::bind(&path).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        assert!(client.local_addr().unwrap().is_unnamed());
        client.send_to(b"hi", &path).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = within(5, srv.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert!(from.is_unnamed(), "{from:?}");
    });
}

#[test]
fn connected_datagram_send_recv_and_peek() {
    let dir = TempDir::new("dg-conn");
    run(async {
        let (pa, pb) = (dir.path("a.sock"), dir.path("b.sock"));
        let a = UnixDatagram::bind(&pa).unwrap();
        let b = UnixDatagram::bind(&pb).unwrap();
        a.connect(&pb).unwrap();
        b.connect(&pa).unwrap();
        assert_eq!(a.peer_addr().unwrap().as_pathname(), Some(pb.as_path()));
        a.send(b"one").await.unwrap();
        a.send(b"two").await.unwrap();
        let mut buf = [0u8; 8];
        let n = within(5, b.peek(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, from) = within(5, b.peek_from(&mut buf)).await.unwrap();
        assert_eq!(
            (&buf[..n], from.as_pathname()),
            (&b"one"[..], Some(pa.as_path()))
        );
        assert_eq!(within(5, b.recv(&mut buf)).await.unwrap(), 3);
        let n = within(5, b.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"two");
    });
}

#[test]
fn pair_sends_both_ways_and_keeps_boundaries() {
    run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        for i in 0..10u8 {
            a.send(&vec![i; i as usize + 1]).await.unwrap();
        }
        let mut buf = [0u8; 32];
        for i in 0..10u8 {
            let n = within(5, b.recv(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], &vec![i; i as usize + 1][..]);
        }
        b.send(b"back").await.unwrap();
        let (n, from) = within(5, a.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(from.is_unnamed());
    });
}

/// A zero-length datagram is a message (`Ok(0)`), and a receive into an empty buffer waits for
/// a datagram and consumes it.
#[test]
fn zero_length_datagrams() {
    run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        assert!(stays_pending(50, b.recv(&mut [])).await);
        assert_eq!(a.send(&[]).await.unwrap(), 0);
        a.send(b"dropped by the empty read").await.unwrap();
        a.send(b"kept").await.unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(within(5, b.recv(&mut buf)).await.unwrap(), 0);
        assert_eq!(within(5, b.recv(&mut [])).await.unwrap(), 0);
        let n = within(5, b.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"kept");
    });
}

#[test]
fn read_deadlines() {
    run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.send(b"queued").await.unwrap();
        b.set_read_deadline(Some(Instant::now() - Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        assert!(is_timeout(&within(5, b.recv(&mut buf)).await.unwrap_err()));
        let deadline = Instant::now() + Duration::from_millis(50);
        b.set_read_deadline(Some(deadline)).unwrap();
        assert_eq!(within(5, b.recv(&mut buf)).await.unwrap(), 6);
        assert!(is_timeout(
            &within(5, b.recv_from(&mut buf)).await.unwrap_err()
        ));
        assert!(Instant::now() >= deadline);

        // Moved into the past by another task while blocked.
        b.set_read_deadline(None).unwrap();
        let setter = b.clone();
        let t = netpoll::spawn(async move {
            netpoll::time::sleep(Duration::from_millis(50)).await;
            setter.set_deadline(Some(Instant::now())).unwrap();
        });
        assert!(is_timeout(&within(5, b.recv(&mut buf)).await.unwrap_err()));
        t.await.unwrap();

        // The `_after` setters: zero has passed, a duration fires no earlier than it says.
        b.set_deadline_after(Duration::from_secs(3600)).unwrap();
        a.send(b"x").await.unwrap();
        assert_eq!(within(5, b.recv(&mut buf)).await.unwrap(), 1);
        b.set_write_deadline_after(Duration::ZERO).unwrap();
        assert!(is_timeout(&within(5, b.send(b"y")).await.unwrap_err()));
        let d = Duration::from_millis(30);
        let start = Instant::now();
        b.set_read_deadline_after(d).unwrap();
        assert!(is_timeout(&within(5, b.recv(&mut buf)).await.unwrap_err()));
        assert!(start.elapsed() >= d);
    });
}

/// Fills the peer's receive queue (it never reads) until a send would block.
async fn fill_peer_queue(a: &UnixDatagram) -> usize {
    let mut sent = 0;
    loop {
        // A fresh deadline each time: only a send that really waits can time out.
        a.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        match within(5, a.send(&[0u8; 1024])).await {
            Ok(_) => sent += 1,
            Err(e) if is_timeout(&e) => break,
            Err(e) => panic!("filling the queue: {e:?}"),
        }
    }
    a.set_write_deadline(None).unwrap();
    sent
}

/// A send to a peer whose queue is full waits; with a write deadline it fails with
/// `TimedOut` no earlier than the deadline.
#[test]
fn write_deadline_when_peer_queue_is_full() {
    run(async {
        let (a, _b) = UnixDatagram::pair().unwrap();
        assert!(fill_peer_queue(&a).await > 0);
        assert!(stays_pending(50, a.send(b"x")).await);
        let deadline = Instant::now() + Duration::from_millis(50);
        a.set_write_deadline(Some(deadline)).unwrap();
        let e = within(5, a.send(b"x")).await.unwrap_err();
        assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        assert!(Instant::now() >= deadline);
    });
}

/// A connected sender blocked on the peer's full queue is woken when the peer reads.
#[test]
fn blocked_send_is_woken_when_the_peer_drains() {
    run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let queued = fill_peer_queue(&a).await;
        let sender = {
            let a = a.clone();
            netpoll::spawn(async move { a.send(b"last").await })
        };
        netpoll::time::sleep(Duration::from_millis(30)).await;
        assert!(!sender.is_finished());
        let mut buf = [0u8; 1024];
        for _ in 0..queued {
            within(5, b.recv(&mut buf)).await.unwrap();
        }
        assert_eq!(within(5, sender).await.unwrap().unwrap(), 4);
        let n = within(5, b.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"last");
    });
}

#[test]
fn close_wakes_blocked_recv() {
    run(async {
        let (a, _b) = UnixDatagram::pair().unwrap();
        let r = a.clone();
        let blocked = netpoll::spawn(async move { r.recv_from(&mut [0u8; 8]).await.map(drop) });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished());
        a.close().unwrap();
        let e = within(5, blocked).await.unwrap().unwrap_err();
        assert!(is_closed(&e), "{e:?}");
        assert!(is_closed(&a.send(b"x").await.unwrap_err()));
    });
}

#[test]
fn send_to_missing_path_is_not_found() {
    let dir = TempDir::new("dg-missing");
    run(async {
        let s = UnixDatagram::unbound().unwrap();
        let e = s.send_to(b"x", dir.path("nobody")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e:?}");
        let e = s.connect(dir.path("nobody")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e:?}");
    });
}

#[test]
fn abstract_namespace_datagrams() {
    run(async {
        let name = format!("netpoll-test-{}-dgram", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let srv = UnixDatagram::bind_addr(&addr).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.connect_addr(&addr).unwrap();
        client.send(b"abs").await.unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = within(5, srv.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"abs");
        client.send_to_addr(b"abs2", &addr).await.unwrap();
        let n = within(5, srv.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"abs2");
        assert_eq!(
            srv.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
    });
}

#[test]
fn from_std_datagram_works() {
    run(async {
        let (x, y) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let a = UnixDatagram::from_std(x).unwrap();
        let b = UnixDatagram::from_std(y).unwrap();
        a.send(b"std").await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(within(5, b.recv(&mut buf)).await.unwrap(), 3);
    });
}

/// A datagram socket never sees end of file: after the peer closes, receives keep waiting and
/// sends are refused.
#[test]
fn peer_close_refuses_sends_but_gives_no_eof() {
    run(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.close().unwrap();
        let e = a.send(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
        assert!(stays_pending(50, a.recv(&mut [0u8; 4])).await);
    });
}

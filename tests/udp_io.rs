//! UDP I/O: datagrams between sockets, connected sockets, empty datagrams, close (Go's
//! `TestPacketConnClose`), options and the `Send`/`Sync` contract.

mod util_net;
mod util_proc;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netpoll::net::{is_closed, UdpSocket};
use util_net::{
    assert_nonblocking_cloexec, assert_send, assert_send_sync, run, stays_pending, within,
};

#[test]
fn udp_socket_is_send_sync_and_futures_are_send() {
    assert_send_sync::<UdpSocket>();
    run(async {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let mut buf = [0u8; 4];
        assert_send(&s.send_to(b"x", addr));
        assert_send(&s.recv_from(&mut buf));
        assert_send(&s.peek_from(&mut buf));
        assert_send(&s.send(b"x"));
        assert_send(&s.recv(&mut buf));
        assert_send(&s.peek(&mut buf));
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("UdpSocket") && dbg.contains(&addr.to_string()),
            "{dbg}"
        );
    });
}

/// Many datagrams each way between two sockets, every payload checked, with a reader and a
/// writer task per socket running at once on clones.
#[test]
fn many_datagrams_between_two_sockets_arrive_intact() {
    const N: u32 = 500;
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());

        // Request/response keeps at most one datagram in flight per direction, so nothing is
        // dropped for lack of buffer space; the payload encodes the sequence number.
        let echo = {
            let b = b.clone();
            netpoll::spawn(async move {
                let mut buf = [0u8; 2048];
                for _ in 0..N {
                    let (n, from) = b.recv_from(&mut buf).await.unwrap();
                    assert_eq!(from, aa);
                    let mut reply = buf[..n].to_vec();
                    reply.reverse();
                    assert_eq!(b.send_to(&reply, from).await.unwrap(), n);
                }
            })
        };
        let mut buf = [0u8; 2048];
        for i in 0..N {
            let len = 1 + (i as usize * 7) % 1400;
            let msg: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            assert_eq!(a.send_to(&msg, ba).await.unwrap(), len);
            let (n, from) = within(5, a.recv_from(&mut buf)).await.unwrap();
            assert_eq!(from, ba);
            let mut want = msg.clone();
            want.reverse();
            assert_eq!(&buf[..n], &want[..], "datagram {i}");
        }
        within(5, echo).await.unwrap();
    });
}

/// Datagram boundaries are kept: a burst of datagrams is received one by one, in order.
#[test]
fn datagram_boundaries_are_kept() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        for i in 0..20u8 {
            a.send_to(&vec![i; i as usize + 1], ba).await.unwrap();
        }
        let mut buf = [0u8; 64];
        for i in 0..20u8 {
            let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
            assert_eq!(&buf[..n], &vec![i; i as usize + 1][..]);
        }
    });
}

/// A datagram larger than the buffer is truncated and the rest of it is dropped.
#[test]
fn long_datagram_is_truncated() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        a.send_to(b"0123456789", ba).await.unwrap();
        a.send_to(b"next", ba).await.unwrap();
        let mut small = [0u8; 4];
        let (n, _) = within(5, b.recv_from(&mut small)).await.unwrap();
        assert_eq!(&small[..n], b"0123");
        let (n, _) = within(5, b.recv_from(&mut small)).await.unwrap();
        assert_eq!(&small[..n], b"next");
    });
}

#[test]
fn connected_sockets_send_and_recv() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());

        // A connected socket only receives from its peer.
        stranger
            .send_to(b"not for you", b.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(a.send(b"hello").await.unwrap(), 5);
        let mut buf = [0u8; 32];
        let n = within(5, b.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"hello");

        assert_eq!(b.send(b"world").await.unwrap(), 5);
        let n = within(5, a.peek(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"world");
        let n = within(5, a.recv(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"world");
    });
}

#[test]
fn unconnected_socket_has_no_peer_and_cannot_send() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = a.peer_addr().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{e:?}");
        let e = a.send(b"x").await.unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::EDESTADDRREQ) | Some(libc::ENOTCONN)
            ),
            "{e:?}"
        );
    });
}

/// A connected socket reports the peer's ICMP port-unreachable as `ConnectionRefused`.
#[test]
fn connected_socket_reports_refused_peer() {
    run(async {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = gone.local_addr().unwrap();
        drop(gone);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(dead).unwrap();
        a.send(b"anyone?").await.unwrap();
        let mut buf = [0u8; 8];
        let e = within(5, a.recv(&mut buf)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}");
    });
}

/// An empty datagram is a real message: it is sent, and received as `Ok(0)` with its sender.
#[test]
fn zero_length_datagram_is_a_message() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        assert_eq!(a.send_to(&[], ba).await.unwrap(), 0);
        a.send_to(b"after", ba).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!((n, from), (0, a.local_addr().unwrap()));
        let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"after");
    });
}

/// A receive into an empty buffer is a real `recvfrom`: it waits for a datagram (it does not
/// return at once as a stream read would) and consumes it.
#[test]
fn empty_buffer_recv_waits_and_consumes_a_datagram() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        assert!(stays_pending(50, b.recv_from(&mut [])).await);
        a.send_to(b"first", ba).await.unwrap();
        a.send_to(b"second", ba).await.unwrap();
        let (n, from) = within(5, b.recv_from(&mut [])).await.unwrap();
        assert_eq!((n, from), (0, a.local_addr().unwrap()));
        let mut buf = [0u8; 16];
        let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"second");
    });
}

#[test]
fn peek_from_leaves_the_datagram_queued() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"peek", b.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 16];
        for _ in 0..2 {
            let (n, from) = within(5, b.peek_from(&mut buf)).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"peek"[..], a.local_addr().unwrap()));
        }
        let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"peek");
        assert!(stays_pending(50, b.recv_from(&mut buf)).await);
    });
}

/// Go's `TestPacketConnClose`: after `close`, `recv_from` fails with the closed error; a
/// `recv_from` blocked in another task is woken with it; closing twice is an error.
#[test]
fn close_wakes_blocked_recv_from() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let reader = c.clone();
        let blocked = netpoll::spawn(async move {
            let mut buf = [0u8; 16];
            reader.recv_from(&mut buf).await
        });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished());
        c.close().unwrap();
        let e = within(5, blocked).await.unwrap().unwrap_err();
        assert!(is_closed(&e), "want closed error, got {e:?}");

        let mut buf = [0u8; 16];
        assert!(is_closed(&c.recv_from(&mut buf).await.unwrap_err()));
        assert!(is_closed(
            &c.send_to(b"x", "127.0.0.1:9").await.unwrap_err()
        ));
        assert!(is_closed(&c.close().unwrap_err()));
        assert!(is_closed(&c.set_deadline(None).unwrap_err()));
        assert!(is_closed(&c.local_addr().unwrap_err()));
    });
}

/// Operations queued behind a blocked reader (FIFO) are woken by close too.
#[test]
fn close_wakes_queued_readers_on_every_clone() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let r = c.clone();
                netpoll::spawn(async move {
                    let mut buf = [0u8; 16];
                    r.recv(&mut buf).await
                })
            })
            .collect();
        netpoll::time::sleep(Duration::from_millis(50)).await;
        c.clone().close().unwrap();
        for r in readers {
            let e = within(5, r).await.unwrap().unwrap_err();
            assert!(is_closed(&e), "{e:?}");
        }
    });
}

/// One reader at a time: two tasks receiving on clones each get whole, distinct datagrams.
#[test]
fn concurrent_receivers_each_get_whole_datagrams() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ba = b.local_addr().unwrap();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                netpoll::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 64];
                    for _ in 0..50 {
                        let n = b.recv(&mut buf).await.unwrap();
                        got.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
                    }
                    got
                })
            })
            .collect();
        for i in 0..100u32 {
            a.send_to(&i.to_le_bytes(), ba).await.unwrap();
            if i % 16 == 0 {
                netpoll::yield_now().await;
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(within(10, t).await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn dropping_a_pending_recv_keeps_the_socket_usable() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 8];
        assert!(stays_pending(30, b.recv_from(&mut buf)).await);
        a.send_to(b"later", b.local_addr().unwrap()).await.unwrap();
        let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"later");
    });
}

#[test]
fn go_defaults_and_options() {
    run(async {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(s.broadcast().unwrap(), "SO_BROADCAST is on by default (Go)");
        s.set_broadcast(false).unwrap();
        assert!(!s.broadcast().unwrap());
        s.set_ttl(17).unwrap();
        assert_eq!(s.ttl().unwrap(), 17);
        s.set_multicast_ttl_v4(3).unwrap();
        assert_eq!(s.multicast_ttl_v4().unwrap(), 3);
        s.set_multicast_loop_v4(false).unwrap();
        assert!(!s.multicast_loop_v4().unwrap());
        assert!(s.take_error().unwrap().is_none());

        // Non-blocking and close-on-exec from creation.
        assert_nonblocking_cloexec(std::os::fd::AsRawFd::as_raw_fd(&s));
    });
}

#[test]
fn multicast_v4_join_and_leave() {
    run(async {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let group = Ipv4Addr::new(239, 255, 42, 99);
        s.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
        // Joining twice is refused by the kernel, which proves the first join took effect.
        assert!(s.join_multicast_v4(group, Ipv4Addr::LOCALHOST).is_err());
        s.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
        assert!(s.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).is_err());
    });
}

#[test]
fn multicast_v6_join_and_leave() {
    run(async {
        let s = match UdpSocket::bind("[::1]:0") {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping: no IPv6 loopback here ({e})");
                return;
            }
        };
        let group: Ipv6Addr = "ff02::4242:99".parse().unwrap();
        // Interface 1 is the loopback on Linux.
        s.join_multicast_v6(&group, 1).unwrap();
        assert!(s.join_multicast_v6(&group, 1).is_err());
        s.leave_multicast_v6(&group, 1).unwrap();
        s.set_multicast_loop_v6(false).unwrap();
        assert!(!s.multicast_loop_v6().unwrap());
    });
}

#[test]
fn ipv6_datagrams() {
    run(async {
        let (a, b) = match (UdpSocket::bind("[::1]:0"), UdpSocket::bind("[::1]:0")) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                eprintln!("skipping: no IPv6 loopback here");
                return;
            }
        };
        a.send_to(b"six", b.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"six");
        assert!(matches!(from, SocketAddr::V6(_)));
        assert_eq!(from, a.local_addr().unwrap());
    });
}

#[test]
fn bind_and_send_to_resolve_names() {
    run(async {
        let a = UdpSocket::bind(("localhost", 0)).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = b.local_addr().unwrap().port();
        a.send_to(b"named", ("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = within(5, b.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"named");
        let e = a.send_to(b"x", Vec::<SocketAddr>::new().as_slice()).await;
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn from_std_socket_works() {
    run(async {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UdpSocket::from_std(std_sock).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"std", s.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = within(5, s.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"std");
    });
}

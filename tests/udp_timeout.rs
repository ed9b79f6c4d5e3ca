//! UDP deadlines: Go's `TestReadFromTimeout`, `TestWriteToTimeout`,
//! `TestReadFromTimeoutFluctuation` and `TestReadTimeoutUnblocksRead` for packet sockets.

mod util_net;
mod util_proc;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netpoll::net::UdpSocket;
use util_net::{is_timeout, run, stays_pending, wait_readable, within};

const MSG: &[u8] = b"READFROM TIMEOUT TEST";

/// Go's `TestReadFromTimeout`: a past deadline fails every read at once even with a datagram
/// queued; a near deadline lets the queued datagram through, then reads time out with no data.
#[test]
fn read_from_timeout() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(MSG, c.local_addr().unwrap()).await.unwrap();
        wait_readable(c.as_raw_fd());

        // -5 s: both attempts fail with TimedOut although a datagram is queued.
        let past = Instant::now().checked_sub(Duration::from_secs(5)).unwrap();
        c.set_read_deadline(Some(past)).unwrap();
        let mut b = [0u8; 64];
        for _ in 0..2 {
            let e = within(5, c.recv_from(&mut b)).await.unwrap_err();
            assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        }

        // +50 ms: the first read returns the queued datagram; later ones time out with n = 0.
        let timeout = Duration::from_millis(50);
        c.set_read_deadline(Some(Instant::now() + timeout)).unwrap();
        let (n, from) = within(5, c.recv_from(&mut b)).await.unwrap();
        assert_eq!(&b[..n], MSG);
        assert_eq!(from, peer.local_addr().unwrap());
        for _ in 0..2 {
            match within(5, c.recv_from(&mut b)).await {
                Err(e) => assert!(is_timeout(&e), "want TimedOut, got {e:?}"),
                Ok(r) => panic!("read {r:?} after the only datagram"),
            }
        }
        // Sticky: still expired later.
        netpoll::time::sleep(timeout / 3).await;
        assert!(is_timeout(&c.recv_from(&mut b).await.unwrap_err()));
    });
}

/// Go's `TestWriteToTimeout`: a past write deadline fails `send_to` at once (nothing is
/// sent); a near deadline lets writes succeed until it passes, then they fail.
#[test]
fn write_to_timeout() {
    run(async {
        let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = c1.local_addr().unwrap();

        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let past = Instant::now().checked_sub(Duration::from_secs(5)).unwrap();
        c2.set_write_deadline(Some(past)).unwrap();
        for _ in 0..2 {
            let e = within(5, c2.send_to(b"WRITETO TIMEOUT TEST", dst))
                .await
                .unwrap_err();
            assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        }
        // Nothing reached c1.
        let mut b = [0u8; 64];
        assert!(stays_pending(50, c1.recv_from(&mut b)).await);

        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(10);
        let deadline = Instant::now() + timeout;
        c2.set_write_deadline(Some(deadline)).unwrap();
        let mut sent = 0;
        loop {
            match within(5, c2.send_to(b"WRITETO TIMEOUT TEST", dst)).await {
                Ok(n) => {
                    assert_eq!(n, 20);
                    sent += 1;
                    netpoll::time::sleep(timeout / 3).await;
                }
                Err(e) => {
                    assert!(is_timeout(&e), "want TimedOut, got {e:?}");
                    assert!(Instant::now() >= deadline, "timed out before the deadline");
                    break;
                }
            }
        }
        assert!(sent >= 1, "no write succeeded before a 10 ms deadline");
        // The read side is not affected by a write deadline.
        let (n, _) = within(5, c1.recv_from(&mut b)).await.unwrap();
        assert_eq!(&b[..n], b"WRITETO TIMEOUT TEST");
    });
}

/// Go's `TestReadFromTimeoutFluctuation`: a blocked read returns `TimedOut` no earlier than
/// its deadline (and not absurdly late).
#[test]
fn read_from_timeout_fluctuation() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = [0u8; 16];
        for ms in [1u64, 20, 100] {
            let d = Duration::from_millis(ms);
            let start = Instant::now();
            let deadline = start + d;
            c.set_read_deadline(Some(deadline)).unwrap();
            let e = within(10, c.recv_from(&mut b)).await.unwrap_err();
            let took = start.elapsed();
            assert!(is_timeout(&e), "want TimedOut, got {e:?}");
            assert!(
                Instant::now() >= deadline,
                "returned {took:?} before a {d:?} deadline"
            );
            assert!(
                took <= d * 5 + Duration::from_secs(1),
                "took {took:?} for {d:?}"
            );
        }
    });
}

/// Go's `TestReadTimeoutUnblocksRead` for UDP: moving the deadline into the past from another
/// task wakes a blocked `recv_from` with `TimedOut`.
#[test]
fn past_read_deadline_unblocks_recv_from() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let setter = c.clone();
        let t = netpoll::spawn(async move {
            netpoll::time::sleep(Duration::from_millis(100)).await;
            setter
                .set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
                .unwrap();
        });
        let mut b = [0u8; 16];
        let e = within(5, c.recv_from(&mut b)).await.unwrap_err();
        assert!(is_timeout(&e), "want TimedOut, got {e:?}");
        t.await.unwrap();
    });
}

/// Clearing an expired deadline makes reads block again (and succeed when data comes).
#[test]
fn cleared_read_deadline_blocks_again() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_deadline(Some(Instant::now())).unwrap();
        let mut b = [0u8; 16];
        assert!(is_timeout(&c.recv(&mut b).await.unwrap_err()));
        c.set_read_deadline(None).unwrap();
        assert!(stays_pending(100, c.recv(&mut b)).await);
        peer.send_to(b"x", c.local_addr().unwrap()).await.unwrap();
        assert_eq!(within(5, c.recv(&mut b)).await.unwrap(), 1);
    });
}

/// `set_deadline` covers both directions; a deadline set on one clone applies to all.
#[test]
fn set_deadline_applies_to_both_directions_and_all_clones() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = c.clone();
        other.set_deadline(Some(Instant::now())).unwrap();
        let mut b = [0u8; 4];
        assert!(is_timeout(&c.recv_from(&mut b).await.unwrap_err()));
        let dst = c.local_addr().unwrap();
        assert!(is_timeout(&c.send_to(b"x", dst).await.unwrap_err()));
        c.set_write_deadline(None).unwrap();
        assert_eq!(c.send_to(b"x", dst).await.unwrap(), 1);
        assert!(is_timeout(&c.recv_from(&mut b).await.unwrap_err()));
    });
}

/// The `_after` setters: a zero duration has passed (both directions), a long one blocks, and
/// a short one fires no earlier than it says.
#[test]
fn deadlines_after_a_duration() {
    run(async {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = c.local_addr().unwrap();
        let mut b = [0u8; 4];
        c.set_deadline_after(Duration::ZERO).unwrap();
        assert!(is_timeout(&c.recv(&mut b).await.unwrap_err()));
        assert!(is_timeout(&c.send_to(b"x", dst).await.unwrap_err()));
        c.set_write_deadline_after(Duration::from_secs(3600))
            .unwrap();
        assert_eq!(c.send_to(b"x", dst).await.unwrap(), 1);
        c.set_read_deadline_after(Duration::from_secs(3600))
            .unwrap();
        assert_eq!(within(5, c.recv(&mut b)).await.unwrap(), 1);
        assert!(stays_pending(100, c.recv(&mut b)).await);
        let d = Duration::from_millis(30);
        let start = Instant::now();
        c.set_read_deadline_after(d).unwrap();
        assert!(is_timeout(&within(5, c.recv(&mut b)).await.unwrap_err()));
        assert!(start.elapsed() >= d);
    });
}

//! No descriptor outlives its UDP socket: dropped, closed, closed while an operation was
//! blocked, or dropped with a receive pending. The only test in this binary, so that the
//! count of `/proc/self/fd` is not disturbed by other tests.

mod util_net;
mod util_proc;

use std::time::Duration;

use netpoll::net::UdpSocket;
use util_net::{open_fds, run, within};

#[test]
fn udp_sockets_release_their_fds() {
    run(async {
        // Warm up lazily created runtime state (timers, blocking threads) first.
        {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_deadline(Some(std::time::Instant::now()))
                .unwrap();
            let _ = s.recv(&mut [0u8; 1]).await;
        }
        let before = open_fds();

        for round in 0..20 {
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            a.send_to(b"x", b.local_addr().unwrap()).await.unwrap();
            let mut buf = [0u8; 4];
            within(5, b.recv_from(&mut buf)).await.unwrap();

            // Closed while a clone is blocked in recv: the fd goes when the reader leaves.
            let reader = b.clone();
            let blocked = netpoll::spawn(async move { reader.recv(&mut [0u8; 4]).await });
            netpoll::time::sleep(Duration::from_millis(2)).await;
            b.close().unwrap();
            within(5, blocked).await.unwrap().unwrap_err();

            // Dropped (never closed) with a pending receive that was cancelled.
            let c = a.clone();
            let pending = netpoll::spawn(async move { c.recv(&mut [0u8; 4]).await });
            netpoll::time::sleep(Duration::from_millis(2)).await;
            pending.abort();
            let _ = within(5, pending).await;
            if round % 2 == 0 {
                a.close().unwrap();
            }
            drop(a);
            drop(b);
        }
        assert_eq!(open_fds(), before, "descriptors leaked");
    });
}

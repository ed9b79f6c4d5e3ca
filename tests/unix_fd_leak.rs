//! No descriptor outlives its Unix socket: listeners, accepted and connected streams, pairs
//! and datagram sockets — dropped, closed, or closed while an operation was blocked — and no
//! connect attempt that failed or waited on a full backlog. The only test in this binary, so
//! that the count of `/proc/self/fd` is not disturbed by other tests.

mod util_net;
mod util_proc;

use std::time::Duration;

use netpoll::net::{UnixDatagram, UnixListener, UnixStream};
use util_net::{open_fds, run, within, TempDir};

#[test]
fn unix_sockets_release_their_fds() {
    let dir = TempDir::new("leak");
    run(async {
        // Warm up lazily created runtime state (timers, blocking threads) first.
        {
            let (a, _b) = UnixStream::pair().unwrap();
            a.set_read_deadline(Some(std::time::Instant::now()))
                .unwrap();
            let _ = a.read(&mut [0u8; 1]).await;
        }
        let before = open_fds();

        for round in 0..10 {
            let path = dir.path(&format!("l{round}.sock"));
            let ln = UnixListener::bind(&path).unwrap();
            let c = within(5, UnixStream::connect(&path)).await.unwrap();
            let (s, _) = within(5, ln.accept()).await.unwrap();
            c.write_all(b"x").await.unwrap();
            within(5, s.read_exact(&mut [0u8; 1])).await.unwrap();

            // A blocked accept and a blocked read, both ended by close.
            let l2 = ln.clone();
            let acceptor = netpoll::spawn(async move { l2.accept().await.map(drop) });
            let c2 = c.clone();
            let reader = netpoll::spawn(async move { c2.read(&mut [0u8; 4]).await });
            netpoll::time::sleep(Duration::from_millis(2)).await;
            ln.close().unwrap();
            c.close().unwrap();
            within(5, acceptor).await.unwrap().unwrap_err();
            within(5, reader).await.unwrap().unwrap_err();

            // Failed connects leave nothing behind.
            within(5, UnixStream::connect(&path)).await.unwrap_err();

            let (p, q) = UnixStream::pair().unwrap();
            let (d1, d2) = UnixDatagram::pair().unwrap();
            let d3 = UnixDatagram::bind(dir.path(&format!("d{round}.sock"))).unwrap();
            d1.send(b"y").await.unwrap();
            within(5, d2.recv(&mut [0u8; 1])).await.unwrap();
            let r = d3.clone();
            let pending = netpoll::spawn(async move { r.recv(&mut [0u8; 1]).await });
            netpoll::time::sleep(Duration::from_millis(2)).await;
            pending.abort();
            let _ = within(5, pending).await;
            if round % 2 == 0 {
                p.close().unwrap();
                d1.close().unwrap();
            }
            drop((s, p, q, d1, d2, d3));
        }
        assert_eq!(open_fds(), before, "descriptors leaked");
    });
}

//! The skipped read (`src/net/fd.rs`, "Skipping the read that would fail"): after a read that
//! drained the receive queue, the next read waits for readiness first. These tests check that
//! no byte is ever left unread because of it.

use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};
use netpoll::time::timeout;

fn runtime() -> netpoll::Runtime {
    netpoll::Runtime::builder().workers(2).build().unwrap()
}

async fn pair() -> (TcpStream, TcpStream) {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    let accept = netpoll::spawn(async move { ln.accept().await.map(|(c, _)| c) });
    let client = TcpStream::connect(addr).await.unwrap();
    (client, accept.await.unwrap().unwrap())
}

/// A deterministic byte pattern, so any lost or reordered byte is caught.
fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

#[test]
fn bursts_with_pauses_are_read_completely_by_short_and_full_reads() {
    runtime().block_on(async {
        let (client, server) = pair().await;
        const TOTAL: usize = 300_000;
        let writer = netpoll::spawn(async move {
            let mut sent = 0;
            let mut k = 0usize;
            while sent < TOTAL {
                let n = [1, 7, 100, 4096, 65536, 3][k % 6].min(TOTAL - sent);
                let chunk: Vec<u8> = (sent..sent + n).map(byte).collect();
                client.write_all(&chunk).await.unwrap();
                sent += n;
                k += 1;
                if k % 5 == 0 {
                    netpoll::time::sleep(Duration::from_millis(1)).await;
                }
            }
            client
        });
        let mut got = 0;
        let mut buf = vec![0u8; 8192];
        let mut k = 0usize;
        while got < TOTAL {
            // Mix the drained-aware read with read_exact and reads into tiny buffers.
            let n = match k % 4 {
                0 | 1 => timeout(Duration::from_secs(10), server.read(&mut buf)).await,
                2 => timeout(Duration::from_secs(10), server.read(&mut buf[..3])).await,
                _ => {
                    let want = 5.min(TOTAL - got);
                    timeout(Duration::from_secs(10), server.read_exact(&mut buf[..want]))
                        .await
                        .map(|r| r.map(|()| want))
                }
            }
            .expect("a read stalled with bytes left to read")
            .unwrap();
            assert!(n > 0, "early EOF at {got}");
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, byte(got + i), "byte {} differs", got + i);
            }
            got += n;
            k += 1;
        }
        drop(writer.await.unwrap());
        assert_eq!(
            server.read(&mut buf).await.unwrap(),
            0,
            "EOF after the last byte"
        );
    });
}

#[test]
fn urgent_data_does_not_leave_normal_data_unread() {
    // recv stops at the urgent mark with data still queued: the read is short, but the queue
    // is not empty, so the next read must not wait for an edge that will never come.
    runtime().block_on(async {
        let (client, server) = pair().await;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
        let send = |data: &[u8], flags| {
            // SAFETY: `fd` is the client's open socket; `data` is valid for reads.
            let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) };
            assert_eq!(n as usize, data.len());
        };
        send(b"abc", 0);
        send(b"!", libc::MSG_OOB);
        send(b"def", 0);
        netpoll::time::sleep(Duration::from_millis(20)).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 6 {
            let n = timeout(Duration::from_secs(5), server.read(&mut buf))
                .await
                .expect("normal data after the urgent mark was left unread")
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got, b"abcdef");
        drop(client);
    });
}

#[test]
fn peer_close_after_a_drained_read_reads_as_eof() {
    runtime().block_on(async {
        let (client, server) = pair().await;
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 5);
        let closer = netpoll::spawn(async move {
            netpoll::time::sleep(Duration::from_millis(20)).await;
            drop(client);
        });
        let n = timeout(Duration::from_secs(5), server.read(&mut buf))
            .await
            .expect("EOF after a drained read was not noticed")
            .unwrap();
        assert_eq!(n, 0);
        closer.await.unwrap();
    });
}

#[test]
fn a_past_deadline_still_fails_a_read_after_a_drained_read() {
    runtime().block_on(async {
        let (client, server) = pair().await;
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        client.write_all(b"y").await.unwrap();
        netpoll::time::sleep(Duration::from_millis(20)).await;
        server
            .set_read_deadline(Some(std::time::Instant::now() - Duration::from_secs(1)))
            .unwrap();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        server.set_read_deadline(None).unwrap();
        assert_eq!(
            server.read(&mut buf).await.unwrap(),
            1,
            "the byte is still there"
        );
        drop(client);
    });
}

#[test]
fn a_reset_that_arrives_with_the_last_data_is_reported_by_the_next_read() {
    // One edge announces the data and the reset; after the read returns the data, the
    // receive queue is empty but the reset's error is pending with no edge to come.
    runtime().block_on(async {
        for waiting in [false, true] {
            let (client, server) = pair().await;
            let reader = netpoll::spawn(async move {
                let mut buf = [0u8; 64];
                if !waiting {
                    netpoll::time::sleep(Duration::from_millis(30)).await;
                }
                let n = server.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"last words");
                timeout(Duration::from_secs(5), server.read(&mut buf))
                    .await
                    .expect("the reset after the last data was never reported")
            });
            if waiting {
                netpoll::time::sleep(Duration::from_millis(30)).await;
            }
            client.set_linger(Some(Duration::ZERO)).unwrap();
            client.write_all(b"last words").await.unwrap();
            drop(client); // linger 0: a reset right behind the data
            match reader.await.unwrap() {
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
                Ok(n) => assert_eq!(n, 0, "EOF is acceptable, data is not"),
            }
        }
    });
}

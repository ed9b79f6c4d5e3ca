//! hyper 1.x on netpoll (feature `hyper`): the example server (`examples/hyper_server.rs`,
//! included here as a module) against a hyper client on netpoll and against `curl`; hyper's
//! timer (header read timeout, in-place reset), executor and the I/O adapter over TCP and Unix
//! sockets.
//!
//! Run with `cargo test --features hyper --test compat_hyper`.

#![cfg(feature = "hyper")]

mod util_proc;
mod util_tcp;

#[path = "../examples/hyper_server.rs"]
mod hyper_server;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1 as client;
use hyper::rt::{Executor as _, Timer as _};
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use netpoll::compat::hyper::{Executor, Io, Timer};
use netpoll::net::{TcpListener, TcpStream, UnixStream};
use util_tcp::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The example server on a fresh loopback port; the listener is returned for closing.
fn start_example_server() -> (TcpListener, SocketAddr) {
    let (ln, addr) = listener();
    let server = ln.clone();
    netpoll::spawn(async move { hyper_server::serve(server).await.unwrap() });
    (ln, addr)
}

/// A hyper client connection on netpoll; its connection future runs on the [`Executor`].
async fn connect(addr: SocketAddr) -> client::SendRequest<Empty<Bytes>> {
    let conn = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = client::handshake(Io::new(conn)).await.unwrap();
    Executor.execute(async move {
        let _ = connection.await;
    });
    sender
}

async fn get(sender: &mut client::SendRequest<Empty<Bytes>>, path: &str) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[test]
fn hyper_client_gets_1000_responses_from_the_example_server_over_keep_alive() {
    run(2, LIMIT, async {
        let (ln, addr) = start_example_server();
        const CONNS: usize = 4;
        const PER_CONN: usize = 250;
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                netpoll::spawn(async move {
                    // One connection for all its requests: keep-alive must hold.
                    let mut sender = connect(addr).await;
                    for j in 0..PER_CONN {
                        let (status, body) = get(&mut sender, &format!("/{i}/{j}")).await;
                        assert_eq!(status, 200);
                        assert_eq!(&body[..], hyper_server::HELLO);
                    }
                    PER_CONN
                })
            })
            .collect();
        let mut total = 0;
        for c in clients {
            total += c.await.unwrap();
        }
        assert_eq!(total, CONNS * PER_CONN);
        ln.close().unwrap();
    });
}

/// `curl` (when installed) fetches twice over one connection from the example server.
#[test]
fn curl_gets_hello_world_from_the_example_server() {
    if Command::new("curl").arg("--version").output().is_err() {
        println!("note: curl not found; skipping the curl check of the example server");
        return;
    }
    run(2, LIMIT, async {
        let (ln, addr) = start_example_server();
        let url = format!("http://{addr}/");
        let out = netpoll::spawn_blocking(move || {
            Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-w",
                    " %{http_code} %{num_connects}\n",
                ])
                .args([&url, &url])
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each transfer prints the body, the status and how many connections it opened: the
        // second one reuses the first's connection.
        assert_eq!(
            stdout, "Hello, World! 200 1\nHello, World! 200 0\n",
            "unexpected curl output"
        );
        ln.close().unwrap();
    });
}

/// hyper closes a connection whose request headers do not arrive within
/// `header_read_timeout`: its timer (netpoll's) must fire.
#[test]
fn header_read_timeout_closes_a_slow_connection_through_the_timer() {
    run(2, LIMIT, async {
        let (ln, addr) = listener();
        let timeout = Duration::from_millis(100);
        netpoll::spawn(async move {
            let (conn, _) = ln.accept().await.unwrap();
            let hello = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
            });
            server::Builder::new()
                .timer(Timer)
                .header_read_timeout(timeout)
                .serve_connection(Io::new(conn), hello)
                .await
        });
        // Before the connection exists, so before hyper can start its timer.
        let start = Instant::now();
        let c = TcpStream::connect(addr).await.unwrap();
        // Half a request line, then nothing.
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = within(Duration::from_secs(10), "the server's close", async {
            let mut total = 0;
            loop {
                match c.read(&mut buf[total..]).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        assert!(
            start.elapsed() >= timeout,
            "closed before the header read timeout"
        );
        // hyper may answer 408 before closing, or just close; it never serves the request.
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            !text.contains("200 OK"),
            "the slow request was served: {text}"
        );
    });
}

#[test]
fn timer_reset_moves_a_sleep_in_place_both_ways() {
    run(2, LIMIT, async {
        // Earlier: an hour-long sleep moved to 10 ms from now completes.
        let mut sleep = Timer.sleep(Duration::from_secs(3600));
        assert!(
            sleep
                .as_mut()
                .downcast_mut_pin::<netpoll::time::Sleep>()
                .is_some(),
            "the timer's sleeps are netpoll's"
        );
        // Registered with the wheel before the reset.
        assert!(stays_pending(Duration::from_millis(5), sleep.as_mut()).await);
        Timer.reset(&mut sleep, Instant::now() + Duration::from_millis(10));
        within(Duration::from_secs(5), "the reset sleep", sleep.as_mut()).await;
        // Later: a 10 ms sleep moved to 300 ms is not done at 100 ms (timers never fire early).
        let start = Instant::now();
        let mut sleep = Timer.sleep_until(start + Duration::from_millis(10));
        Timer.reset(&mut sleep, start + Duration::from_millis(300));
        let early = stays_pending(Duration::from_millis(100), sleep.as_mut()).await;
        assert!(early || start.elapsed() >= Duration::from_millis(300));
        within(
            Duration::from_secs(5),
            "the postponed sleep",
            sleep.as_mut(),
        )
        .await;
        assert!(start.elapsed() >= Duration::from_millis(300), "fired early");
    });
}

/// The adapter works over a Unix stream and over a borrowed stream (`Io<&UnixStream>`); hyper's
/// `poll_shutdown` at the end of a connection half-closes the socket without closing it.
#[test]
fn hyper_over_a_unix_stream_pair_and_a_borrowed_stream() {
    run(2, LIMIT, async {
        let (c, s) = UnixStream::pair().unwrap();
        let srv = netpoll::spawn(async move {
            let hello = service_fn(|req: Request<Incoming>| async move {
                let path = req.uri().path().to_owned();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(path))))
            });
            server::Builder::new()
                .timer(Timer)
                .serve_connection(Io::new(&s), hello)
                .await
                .map_err(io::Error::other)?;
            // hyper's `poll_shutdown` half-closed the borrowed stream; it is still open.
            let write_after = s.write_all(b"bye").await;
            s.peer_cred()?;
            Ok::<_, io::Error>(write_after)
        });
        let (mut sender, connection) = client::handshake(Io::new(c.clone())).await.unwrap();
        let conn_task = netpoll::spawn(connection);
        for path in ["/a", "/bb", "/ccc"] {
            let (status, body) = get(&mut sender, path).await;
            assert_eq!(status, 200);
            assert_eq!(&body[..], path.as_bytes());
        }
        // Ask the server to close after the next response, so its connection future ends.
        sender.ready().await.unwrap();
        let req = Request::get("/last")
            .header("connection", "close")
            .body(Empty::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(
            &res.into_body().collect().await.unwrap().to_bytes()[..],
            b"/last"
        );
        let write_after = within(Duration::from_secs(5), "the server side", srv)
            .await
            .unwrap()
            .unwrap();
        match write_after {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => panic!("a write after the half-close: expected BrokenPipe, got {other:?}"),
        }
        let _ = conn_task.await;
        // The client reads the server's half-close as EOF.
        assert_eq!(c.read(&mut [0u8; 8]).await.unwrap(), 0);
    });
}

/// A read deadline set on the socket fails hyper's read with `TimedOut`: the server's
/// connection future ends with an error whose source is the socket's.
#[test]
fn a_socket_read_deadline_ends_an_idle_hyper_connection() {
    run(2, LIMIT, async {
        let (c, s) = pair().await;
        s.set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        let srv = netpoll::spawn(async move {
            let hello = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
            });
            server::Builder::new()
                .timer(Timer)
                .serve_connection(Io::new(s), hello)
                .await
        });
        // Start a request but never finish it, so hyper is mid-read when the deadline passes.
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = within(Duration::from_secs(10), "the server connection", srv)
            .await
            .unwrap()
            .expect_err("the connection should fail on the deadline");
        let io_err = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<io::Error>())
            .unwrap_or_else(|| panic!("not an I/O error: {err:?}"));
        assert!(is_timeout(io_err), "expected a timeout, got {io_err:?}");
    });
}

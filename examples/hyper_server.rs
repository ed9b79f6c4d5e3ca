//! "Hello, World!" over HTTP/1.1 (keep-alive) with hyper on netpoll.
//!
//! ```text
//! cargo run --release --example hyper_server --features hyper
//! ADDR=0.0.0.0:8080 WORKERS=4 cargo run --release --example hyper_server --features hyper
//! curl http://127.0.0.1:7000/
//! ```
//!
//! `ADDR` (default `127.0.0.1:7000`) is the address to listen on; `WORKERS` (default: one per
//! CPU) the number of worker threads. It runs until killed.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use netpoll::compat::hyper::{Io, Timer};
use netpoll::net::{TcpListener, TcpStream};

/// The response body.
pub const HELLO: &[u8] = b"Hello, World!";

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
}

/// Serves one connection until the client closes it (or hyper ends it on an error or timeout).
pub async fn serve_connection(conn: TcpStream) -> Result<(), hyper::Error> {
    http1::Builder::new()
        .timer(Timer)
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(Io::new(conn), service_fn(hello))
        .await
}

/// Accepts connections until the listener is closed, one task per connection. Errors that
/// concern one connection (a reset, running out of descriptors for a moment) do not stop it.
pub async fn serve(ln: TcpListener) -> io::Result<()> {
    loop {
        match ln.accept().await {
            Ok((conn, _peer)) => {
                netpoll::spawn(async move {
                    let _ = serve_connection(conn).await;
                });
            }
            Err(e) if netpoll::net::is_closed(&e) => return Ok(()),
            Err(e) => {
                eprintln!("accept: {e}");
                // EMFILE and the like: give connections a moment to finish.
                netpoll::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[allow(dead_code)] // unused when the tests include this file as a module
fn main() -> io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:7000".to_string());
    let mut builder = netpoll::Runtime::builder();
    if let Ok(w) = std::env::var("WORKERS") {
        let n = w
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "WORKERS: not a number"))?;
        builder.workers(n);
    }
    let rt = builder.build()?;
    rt.block_on(async {
        let ln = TcpListener::bind(addr.as_str())?;
        println!("listening on http://{}", ln.local_addr()?);
        serve(ln).await
    })
}

//! The tokio servers: a multi-thread runtime with `WORKERS` workers, one task per connection,
//! the same logic as `examples/echo.rs`, `examples/http.rs` and `examples/hyper_server.rs`.
//!
//! hyper on tokio serves the same "Hello, World!" service as `examples/hyper_server.rs` with
//! the same `http1::Builder` settings (keep-alive, a 30 s header read timeout on the runtime's
//! timer), glued with hyper-util's `TokioIo` and `TokioTimer` as a tokio user would.

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{App, ServeEnv};
use crate::proto;

pub fn run(app: App, env: ServeEnv) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env.workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(super::listen(env.addr)?)?;
        println!("tokio {app:?} listening on {}", listener.local_addr()?);
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // netpoll (hyper on netpoll included) and Go set TCP_NODELAY on accepted connections; tokio does not.
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                // A reset or an expired idle timeout ends the connection.
                let _ = match app {
                    App::Echo => echo(conn, env.deadline).await,
                    App::Http => http(conn).await,
                    App::Hyper => hyper_http(conn).await.map_err(io::Error::other),
                };
            });
        }
    })
}

/// Echo; with a deadline, every read runs inside `tokio::time::timeout` — tokio's way of
/// writing the idle timeout that netpoll's echo does with `set_read_deadline`.
async fn echo(mut conn: TcpStream, deadline: Option<Duration>) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match deadline {
            None => conn.read(&mut buf).await?,
            Some(idle) => tokio::time::timeout(idle, conn.read(&mut buf))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
        };
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

async fn http(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= proto::HTTP_MAX_BUFFER {
                return conn.write_all(proto::HTTP_BAD_REQUEST).await;
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = conn.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut out = take_response_buffer();
        let (used, close) = proto::answer_requests(&buf[..filled], &mut out);
        buf.copy_within(used..filled, 0);
        filled -= used;
        if !out.is_empty() {
            conn.write_all(&out).await?;
        }
        give_back_response_buffer(out);
        if close {
            return Ok(());
        }
    }
}

thread_local! {
    /// The worker thread's spare response buffer, lent to one batch at a time, as in
    /// `examples/http.rs`.
    static SPARE_RESPONSE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Takes the thread's spare response buffer, or a new one when another batch on this thread
/// has it.
fn take_response_buffer() -> Vec<u8> {
    let mut out = SPARE_RESPONSE_BUFFER.take();
    if out.capacity() == 0 {
        out.reserve(4096);
    }
    out
}

/// Makes `out` the thread's spare, unless an outsized batch grew it.
fn give_back_response_buffer(mut out: Vec<u8>) {
    if out.capacity() <= proto::HTTP_MAX_BUFFER {
        out.clear();
        SPARE_RESPONSE_BUFFER.set(out);
    }
}

/// How long a client may take to send a request's headers (as in `examples/hyper_server.rs`).
const HYPER_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        proto::HTTP_BODY,
    ))))
}

/// hyper on one connection, until the client closes it (or hyper ends it on an error or
/// timeout).
async fn hyper_http(conn: TcpStream) -> Result<(), hyper::Error> {
    http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HYPER_HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(conn), service_fn(hello))
        .await
}

//! TCP echo server: one task per connection, a 4 KiB buffer, read then write back.
//!
//! ```text
//! ADDR=127.0.0.1:7000 WORKERS=2 cargo run --release --example echo
//! ```
//!
//! Environment:
//! * `ADDR` — where to listen (default `127.0.0.1:7000`);
//! * `WORKERS` — worker threads (default: one per core);
//! * `DEADLINE_MS` — if set, every read gets a fresh read deadline this far ahead: the
//!   "idle timeout" pattern, which moves the deadline on every request (the benchmark's
//!   deadline-churn scenario). A connection idle that long is closed.
//!
//! It prints the address it listens on and runs until killed. This is the server that
//! `netpoll-bench` drives.

use std::io;
use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:7000".to_string());
    let deadline = env_number("DEADLINE_MS")?.map(Duration::from_millis);
    let mut builder = netpoll::Runtime::builder();
    if let Some(workers) = env_number("WORKERS")? {
        builder.workers(workers as usize);
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str())?;
        println!("echo listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    netpoll::spawn(async move {
                        // A reset or an expired idle deadline ends the connection; there is
                        // nobody to report it to.
                        let _ = serve(conn, deadline).await;
                    });
                }
                // Out of descriptors (or a transient accept error): wait for some to be freed
                // rather than spin on the listener.
                Err(e) => {
                    eprintln!("accept: {e}");
                    netpoll::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

async fn serve(conn: TcpStream, deadline: Option<Duration>) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(idle) = deadline {
            conn.set_read_deadline_after(idle)?;
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

/// An optional non-negative integer from the environment; a malformed value is an error
/// rather than silently the default.
fn env_number(name: &str) -> io::Result<Option<u64>> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => {
            v.trim().parse().map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{name}={v:?}: {e}"))
            })
        }
    }
}

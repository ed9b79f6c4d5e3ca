//! Minimal HTTP/1.1 server answering "Hello, World!" to every request, with keep-alive and
//! pipelining: one task per connection parses every complete request in its buffer and writes
//! the responses of a pipelined batch in one write.
//!
//! ```text
//! ADDR=127.0.0.1:8080 WORKERS=2 cargo run --release --example http
//! curl http://127.0.0.1:8080/
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:7000`) and `WORKERS` (default: one per core). It
//! prints the address it listens on and runs until killed. This is the server that
//! `netpoll-bench` drives; the tokio, Go and epoll-loop servers there parse the same way.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use netpoll::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// A request head (or pipelined batch remainder) larger than this is refused.
const MAX_BUFFER: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:7000".to_string());
    let mut builder = netpoll::Runtime::builder();
    if let Ok(w) = std::env::var("WORKERS") {
        let workers = w.trim().parse().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("WORKERS={w:?}: {e}"))
        })?;
        builder.workers(workers);
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str())?;
        println!("http listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    netpoll::spawn(async move {
                        let _ = serve(conn).await;
                    });
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    netpoll::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

async fn serve(conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_BUFFER {
                return conn.write_all(BAD_REQUEST).await;
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = conn.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut out = take_response_buffer();
        let mut start = 0;
        let mut close = false;
        while !close {
            match parse(&buf[start..filled]) {
                Parsed::Request { len, close: c } => {
                    out.extend_from_slice(RESPONSE);
                    start += len;
                    close = c;
                }
                Parsed::Incomplete => break,
                Parsed::Bad => {
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
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
    /// The worker thread's spare response buffer, lent to one batch at a time, as Go servers
    /// use a `sync.Pool`. A buffer kept by each connection would be cold by the time the
    /// connection is served again, after all the others; the spare is the one the previous
    /// batch on this thread just wrote, still in cache. An idle connection holds none.
    static SPARE_RESPONSE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Takes the thread's spare response buffer, or a new one when another batch on this thread
/// has it (its task is waiting for its write to finish).
fn take_response_buffer() -> Vec<u8> {
    let mut out = SPARE_RESPONSE_BUFFER.take();
    if out.capacity() == 0 {
        out.reserve(4096);
    }
    out
}

/// Makes `out` the thread's spare, unless an outsized batch grew it.
fn give_back_response_buffer(mut out: Vec<u8>) {
    if out.capacity() <= MAX_BUFFER {
        out.clear();
        SPARE_RESPONSE_BUFFER.set(out);
    }
}

/// What the front of the buffer holds.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A whole request of `len` bytes (head and body); `close` when the client asked to close
    /// the connection after it.
    Request { len: usize, close: bool },
    /// Not a whole request yet.
    Incomplete,
    /// Not HTTP/1.x.
    Bad,
}

fn parse(buf: &[u8]) -> Parsed {
    // Vectorised searches, as Go's server does with `bytes.Index`/`IndexByte`: a byte-by-byte
    // scan made the parser's speed (15–18% of the server's CPU) swing with where the compiler
    // happened to place its loop in each binary.
    static END_OF_HEAD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    let Some(head_len) = END_OF_HEAD.find(buf) else {
        return Parsed::Incomplete;
    };
    let mut lines = buf[..head_len].split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let version = match request_line.trim_ascii().rsplit(|&b| b == b' ').next() {
        Some(b"HTTP/1.1") => 1,
        Some(b"HTTP/1.0") => 0,
        _ => return Parsed::Bad,
    };
    let mut close = version == 0;
    let mut body = 0;
    for line in lines {
        let Some(colon) = memchr::memchr(b':', line) else {
            return Parsed::Bad;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                Some(n) => body = n,
                None => return Parsed::Bad,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let len = head_len + 4 + body;
    if buf.len() < len {
        Parsed::Incomplete
    } else {
        Parsed::Request { len, close }
    }
}

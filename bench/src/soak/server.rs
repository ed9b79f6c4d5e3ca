//! The soak's server: an echo server with Go's usual production deadlines — a read deadline
//! per request (a slow or silent client is dropped) and a write deadline per reply (a client
//! that does not read is dropped) — that checks every request names its connection.
//!
//! A read that times out although bytes of the request are already in the socket means the
//! server side was held up past the deadline, not the client: it is counted as *server late*
//! and the client's loop is told (through `Stats::late_peers`), so that it does not take the
//! drop for a violation.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};

use super::{parse_request, payload, Stats, FRAME, REQUEST};

/// How long a client may take to deliver a whole request (and how long a connection may idle
/// between requests).
pub(super) const READ_DEADLINE: Duration = Duration::from_millis(300);
/// How long the server waits for room to write a reply.
pub(super) const WRITE_DEADLINE: Duration = Duration::from_millis(300);
/// The largest reply the server agrees to write.
pub(super) const MAX_REPLY: usize = 64 << 20;
/// Back-off after `EMFILE`/`ENFILE` from accept (Go's `http.Server` starts at 5 ms).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);

/// Binds the listener and starts the accept loop; call inside the server runtime. Returns the
/// address and a handle to close the listener with.
pub(super) fn start(stats: Arc<Stats>) -> io::Result<(SocketAddr, TcpListener)> {
    let ln = TcpListener::bind("127.0.0.1:0")?;
    let addr = ln.local_addr()?;
    let accepting = ln.clone();
    netpoll::spawn(async move {
        loop {
            match accepting.accept().await {
                Ok((c, _)) => {
                    stats.bump(&stats.server_conns);
                    netpoll::spawn(serve(c, stats.clone()));
                }
                Err(e) if netpoll::net::is_closed(&e) => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    stats.bump(&stats.emfile);
                    netpoll::time::sleep(ACCEPT_BACKOFF).await;
                }
                Err(e) => {
                    stats.violation(format!("accept: {e:?}"));
                    netpoll::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    Ok((addr, ln))
}

/// One connection: requests until the client leaves or misses a deadline.
async fn serve(c: TcpStream, stats: Arc<Stats>) {
    let mut id = None;
    let mut next = 0u32;
    loop {
        if c.set_read_deadline(Some(Instant::now() + READ_DEADLINE))
            .is_err()
        {
            stats.violation("set_read_deadline on an open connection failed".into());
            return;
        }
        let mut req = [0u8; REQUEST];
        if let Err(e) = c.read_exact(&mut req).await {
            match e.kind() {
                io::ErrorKind::UnexpectedEof => stats.bump(&stats.server_eof),
                io::ErrorKind::ConnectionReset => stats.bump(&stats.server_reset),
                io::ErrorKind::TimedOut if queued_bytes(&c) > 0 => {
                    // Timed out with bytes of the request already received: the server task
                    // (or its poller) was held up past the deadline, not the client. Tell the
                    // client's loop, which sees an unexplained drop otherwise.
                    stats.bump(&stats.server_late);
                    if let Ok(peer) = c.peer_addr() {
                        stats.late_peers.lock().unwrap().insert(peer);
                    }
                }
                io::ErrorKind::TimedOut => stats.bump(&stats.server_read_timeout),
                _ => stats.violation(format!("server read: {e:?}")),
            }
            return;
        }
        let Some((fid, seq, reply)) = parse_request(&req) else {
            stats.violation(format!("a torn request on connection {id:?}"));
            return;
        };
        if *id.get_or_insert(fid) != fid || seq != next {
            stats.violation(format!(
                "request {fid}/{seq} on connection {id:?}, where {next} was due"
            ));
            return;
        }
        next += 1;
        if reply > MAX_REPLY {
            stats.violation(format!(
                "connection {fid}: a reply of {reply} bytes asked for"
            ));
            return;
        }
        if c.set_write_deadline(Some(Instant::now() + WRITE_DEADLINE))
            .is_err()
        {
            stats.violation("set_write_deadline on an open connection failed".into());
            return;
        }
        if let Err(e) = write_reply(&c, &req[..FRAME], reply).await {
            match e.kind() {
                io::ErrorKind::TimedOut => stats.bump(&stats.server_write_timeout),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                    stats.bump(&stats.server_write_reset)
                }
                _ => stats.violation(format!("server write: {e:?}")),
            }
            return;
        }
    }
}

/// Bytes received and not read yet (`FIONREAD`); 0 if the socket cannot tell.
fn queued_bytes(c: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the valid, writable `n`; the fd is an open socket
    // borrowed from `c` for the duration of the call.
    let r = unsafe { libc::ioctl(c.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// The frame back, then `len` bytes of the payload pattern.
async fn write_reply(c: &TcpStream, frame: &[u8], len: usize) -> io::Result<()> {
    c.write_all(frame).await?;
    let p = payload();
    let mut left = len;
    while left > 0 {
        let n = left.min(p.len());
        c.write_all(&p[..n]).await?;
        left -= n;
    }
    Ok(())
}

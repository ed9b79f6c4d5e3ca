//! Sockets with Go's semantics: TCP, UDP and Unix.
//!
//! Every socket type is a cheap handle to one shared socket, like Go's `net.Conn`: clone it to
//! read in one task and write in another; every method takes `&self`.
//!
//! * **One reader and one writer at a time.** At most one read-side operation (read, recv,
//!   peek, accept) and one write-side operation (write, send) run at once per socket; others
//!   wait their turn in FIFO order (Go's `fdMutex`).
//! * **Deadlines** (`set_deadline`, `set_read_deadline`, `set_write_deadline`) are absolute
//!   instants, settable from any task; `None` clears. A past deadline makes the next operation
//!   in that direction fail at once with [`io::ErrorKind::TimedOut`] — even when data is
//!   ready; a blocked operation fails as soon as its deadline passes or is moved into the past;
//!   moving a deadline later lets later operations block again. Deadlines are sticky: I/O does
//!   not reset them (to make an idle timeout, set the deadline again before each read). A
//!   timed-out read returns no data; a timed-out write may have written part of the buffer.
//!
//!   `set_read_deadline_after(d)` (and `set_deadline_after`, `set_write_deadline_after`) set
//!   the deadline `d` from now, for the idle and request timeouts a server moves on every
//!   request. From a second on they read the kernel's coarse clock rather than the precise
//!   one (a fifth of the cost: 5.6 against 28.7 ns on the benchmark machine, where the
//!   precise read was half the cost of a deadline move) and round up by the most it can lag,
//!   two kernel ticks plus 1 ms: the deadline is never earlier than `Instant::now() + d`, and
//!   at most 9 ms later on the usual 4 ms tick (under 1% of `d`). A hypervisor that stalls
//!   the kernel's timekeeping longer than that can make it early by the excess; where a
//!   deadline must never be early, use `set_read_deadline(Some(Instant::now() + d))`.
//!   Shorter durations read the precise clock; zero is now, which has passed.
//!
//!   Moving a deadline that is set and not yet passed to a later time, by either kind of
//!   setter, takes no lock: one compare-and-swap, none when the time is unchanged (as within a
//!   tick of the coarse clock). Every other change takes the socket's descriptor lock.
//! * **Close** from any clone wakes every pending and queued operation on every clone with the
//!   "use of closed network connection" error ([`is_closed`] tells it apart); the fd is closed
//!   once those operations have left. Closing twice is an error. Dropping the last clone closes.
//! * **I/O**: the system call is always tried first; the task waits only on `EAGAIN`. `EINTR` is
//!   retried. A zero-length read returns `Ok(0)` at once. The peer's orderly close reads as
//!   `Ok(0)`; a reset as [`io::ErrorKind::ConnectionReset`]. Writes never raise `SIGPIPE`.
//! * **Defaults, as Go's**: sockets are created non-blocking and close-on-exec; listeners set
//!   `SO_REUSEADDR` and take their backlog from `/proc/sys/net/core/somaxconn`; TCP connections
//!   get `TCP_NODELAY` and keep-alive probes after 15 s idle, every 15 s, 9 times.
//!
//! Creating a socket needs a runtime context (a task, `Runtime::block_on`, or
//! `Runtime::enter`).

use std::io;

mod fd;
pub(crate) mod fd_mutex;
mod socket;
mod stream;
mod tcp;
mod udp;
mod unix;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UCred, UnixDatagram, UnixListener, UnixStream};

/// Whether `err` is the "use of closed network connection" error that operations on a closed
/// socket return (Go's `errors.Is(err, net.ErrClosed)`).
pub fn is_closed(err: &io::Error) -> bool {
    crate::pd::is_closed(err)
}

/// Resolves `host` ("name:port" or "ip:port") to socket addresses on the blocking pool, so
/// that a slow DNS lookup does not hold up a worker.
///
/// # Panics
///
/// Outside a runtime context.
pub async fn lookup_host(host: impl Into<String>) -> io::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let host = host.into();
    crate::spawn_blocking(move || host.to_socket_addrs().map(Iterator::collect))
        .await
        .map_err(io::Error::from)?
}

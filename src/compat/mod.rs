//! Bridges to the ecosystem's I/O traits, each behind a cargo feature (none is on by default):
//!
//! | feature | what it adds |
//! |---|---|
//! | `futures-io` | `futures_io::AsyncRead`/`AsyncWrite` for [`TcpStream`], [`UnixStream`] and their `&` references |
//! | `tokio-io` | `tokio::io::AsyncRead`/`AsyncWrite` for the same types (only tokio's traits: no tokio runtime runs) |
//! | `hyper` | [`compat::hyper`](self::hyper): an executor, a timer and an I/O adapter for hyper 1.x |
//!
//! Every trait method is one poll of the socket: it locks the read or write side for that poll
//! only, so a caller may stop polling at any moment, and tries the system call first, waiting
//! for readiness only on `EAGAIN`. The socket's semantics carry over unchanged: a deadline
//! makes the trait call fail with [`std::io::ErrorKind::TimedOut`], [`close`](crate::net::TcpStream::close)
//! from any clone fails it with the closed error ([`is_closed`](crate::net::is_closed)), and
//! poll-based and async callers on clones of one socket take turns on each side. The trait
//! paths allocate nothing per call.
//!
//! There is no user-space buffering: flushing is a no-op. Closing or shutting down through a
//! trait (`poll_close`, `poll_shutdown`) **half-closes** the socket (`shutdown(Write)`: the
//! peer reads EOF, reading still works), as tokio's `poll_shutdown` does; the socket itself
//! is closed by [`TcpStream::close`] or by dropping its last clone.
//!
//! [`TcpStream`]: crate::net::TcpStream
//! [`TcpStream::close`]: crate::net::TcpStream::close
//! [`UnixStream`]: crate::net::UnixStream

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tokio-io")]
mod tokio_io;

/// Views an initialised buffer as possibly-uninitialised memory for the socket layer's
/// `recv_uninit` (`net/socket.rs`).
///
/// # Safety
///
/// The caller must write only initialised bytes through the result (never
/// `MaybeUninit::uninit()`), so that `buf` stays initialised once the borrow ends.
#[cfg(feature = "futures-io")]
pub(crate) unsafe fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and validity-superset of `u8`; the
    // caller's contract keeps every byte initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

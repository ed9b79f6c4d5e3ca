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
//! makes the trait call fail with [`io::ErrorKind::TimedOut`], [`close`](crate::net::TcpStream::close)
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

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tokio-io")]
mod tokio_io;

/// `recv(2)` into a buffer that may be uninitialised. On `Ok(n)` the first `n` bytes of `buf`
/// are initialised: the kernel wrote them. Nothing is ever de-initialised (the kernel only
/// stores bytes), so `buf` may also be a cast of an initialised `&mut [u8]`.
pub(crate) fn recv_uninit(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call
    // (`MaybeUninit<u8>` has the layout of `u8`), and `recv` writes at most that many.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Views an initialised buffer as possibly-uninitialised memory for [`recv_uninit`].
///
/// # Safety
///
/// The caller must write only initialised bytes through the result (never
/// `MaybeUninit::uninit()`), so that `buf` stays initialised once the borrow ends.
pub(crate) unsafe fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and validity-superset of `u8`; the
    // caller's contract keeps every byte initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

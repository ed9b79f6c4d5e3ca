//! tokio's `AsyncRead`/`AsyncWrite` for the stream types and their `&` references (feature
//! `tokio-io`); see the [module docs](super). Only the traits are used: no tokio runtime runs.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::{TcpStream, UnixStream};

/// Implements the traits for `$ty` by delegating to the stream's poll methods through
/// `$stream` (an expression from `$s: &Self` to the stream).
macro_rules! tokio_io_impls {
    ($(impl $([$lt:lifetime])? for $ty:ty => |$s:ident| $stream:expr;)*) => {$(
        impl $(<$lt>)? AsyncRead for $ty {
            /// Reads straight into the unfilled part of `buf`, initialised or not (no zeroing).
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let $s = &*self;
                // SAFETY: `poll_recv` only hands the slice to `recv(2)`, which stores
                // initialised bytes: nothing already initialised is de-initialised.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = ready!($stream.fd().poll_recv(cx, unfilled))?;
                // SAFETY: `poll_recv` returned `n`: the kernel wrote the first `n` bytes of the
                // unfilled part, so they are initialised.
                unsafe { buf.assume_init(n) };
                // In bounds: `n <= unfilled.len()`, now initialised.
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }

        impl $(<$lt>)? AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let $s = &*self;
                $stream.fd().poll_send(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $s = &*self;
                $stream.fd().poll_send_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Nothing is buffered in user space: always ready.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Half-closes: `shutdown(Write)`, so the peer reads EOF while this side can still
            /// read. The stream's `close` (or dropping its last clone) closes the socket.
            fn poll_shutdown(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                let $s = &*self;
                Poll::Ready($stream.shutdown(Shutdown::Write))
            }
        }
    )*};
}

tokio_io_impls! {
    impl for TcpStream => |s| s;
    impl ['a] for &'a TcpStream => |s| *s;
    impl for UnixStream => |s| s;
    impl ['a] for &'a UnixStream => |s| *s;
}

//! `futures_io::AsyncRead`/`AsyncWrite` for the stream types and their `&` references (feature
//! `futures-io`); see the [module docs](super).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::futures_io::{AsyncRead, AsyncWrite};

use crate::net::{TcpStream, UnixStream};

/// Implements the traits for `$ty` by delegating to the stream's poll methods through
/// `$stream` (a closure-like path from `&Self` to the stream).
macro_rules! futures_io_impls {
    ($(impl $([$lt:lifetime])? for $ty:ty => |$s:ident| $stream:expr;)*) => {$(
        impl $(<$lt>)? AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let $s = &*self;
                // SAFETY: `poll_recv` only hands the buffer to `recv(2)`, which stores
                // initialised bytes; nothing de-initialises it.
                $stream.fd().poll_recv(cx, unsafe { super::as_uninit(buf) })
            }

            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                let $s = &*self;
                $stream.fd().poll_recv_vectored(cx, bufs)
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

            /// Nothing is buffered in user space: always ready.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Half-closes: `shutdown(Write)`, so the peer reads EOF while this side can still
            /// read. The stream's `close` (or dropping its last clone) closes the socket.
            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $s = &*self;
                Poll::Ready($stream.shutdown(Shutdown::Write))
            }
        }
    )*};
}

futures_io_impls! {
    impl for TcpStream => |s| s;
    impl ['a] for &'a TcpStream => |s| *s;
    impl for UnixStream => |s| s;
    impl ['a] for &'a UnixStream => |s| *s;
}

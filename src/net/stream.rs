//! The byte-stream operations shared by `TcpStream` and `UnixStream`, on the shared fd.
//!
//! Each is one Go-style operation (`fd.rs`): it takes its side's lock for the whole call, so
//! `read_exact` and `write_all` are never interleaved with another operation on that side.

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;

use super::fd::{cap_rw, NetFd};
use super::socket;

impl NetFd {
    pub(crate) fn read_exact<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        let len = buf.len();
        let mut done = 0;
        self.read_op_or_empty(len, move |fd| {
            while done < len {
                match socket::recv(fd, &mut buf[done..done + cap_rw(len - done)], 0)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => done += n,
                }
            }
            Ok(())
        })
    }

    pub(crate) async fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.read_op_or_empty(len, |fd| socket::readv(fd, bufs))
            .await
    }

    pub(crate) fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        let len = buf.len();
        self.read_op_or_empty(len, move |fd| {
            socket::recv(fd, &mut buf[..cap_rw(len)], libc::MSG_PEEK)
        })
    }

    pub(crate) fn write<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.write_op(move |fd| socket::send(fd, &buf[..cap_rw(buf.len())]))
    }

    pub(crate) fn write_all<'a>(
        &'a self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        let mut done = 0;
        self.write_op(move |fd| {
            while done < buf.len() {
                done += socket::send(fd, &buf[done..done + cap_rw(buf.len() - done)])?;
            }
            Ok(())
        })
    }

    pub(crate) async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_op(|fd| socket::sendv(fd, bufs)).await
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.with_ref(|fd| socket::with_socket(fd, |s| s.shutdown(how)))
    }
}

/// One poll each, for the ecosystem's I/O traits (`src/compat/`): see
/// [`NetFd::poll_read_with`]. Deadlines and close apply exactly as to the async methods.
#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
impl NetFd {
    /// One poll of a read into `buf`, which may be uninitialised. `Ready(Ok(n))`: the first `n`
    /// bytes of `buf` now hold the data read, initialised; `0` is EOF (or an empty `buf`, which
    /// returns at once, as Go's zero-length read does, failing only on a closed socket).
    pub(crate) fn poll_recv(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> std::task::Poll<io::Result<usize>> {
        if buf.is_empty() {
            return std::task::Poll::Ready(self.with_ref(|_| Ok(0)));
        }
        let len = cap_rw(buf.len());
        self.poll_read_stream(cx, len, |fd| socket::recv_uninit(fd, &mut buf[..len]))
    }

    /// One poll of a scatter read (`readv`); empty buffers as in [`NetFd::poll_recv`].
    #[cfg(feature = "futures-io")]
    pub(crate) fn poll_recv_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return std::task::Poll::Ready(self.with_ref(|_| Ok(0)));
        }
        self.poll_read_with(cx, |fd| socket::readv(fd, bufs))
    }

    /// One poll of a write of some of `buf`.
    pub(crate) fn poll_send(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| socket::send(fd, &buf[..cap_rw(buf.len())]))
    }

    /// One poll of a gather write (`sendmsg`).
    pub(crate) fn poll_send_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| socket::sendv(fd, bufs))
    }
}

//! The byte-stream operations shared by `TcpStream` and `UnixStream`, on the shared fd.
//!
//! Each is one Go-style operation (`fd.rs`): it takes its side's lock for the whole call, so
//! `read_exact` and `write_all` are never interleaved with another operation on that side.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::Shutdown;

use super::fd::{cap_rw, NetFd};
use super::socket;

impl NetFd {
    /// A plain `recv` read (no `TCP_INQ`): for stream sockets other than TCP.
    pub(crate) async fn read_plain(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.read_op_or_empty(len, |fd| socket::recv(fd, &mut buf[..cap_rw(len)], 0))
            .await
    }

    pub(crate) async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        let mut done = 0;
        self.read_op_or_empty(len, |fd| {
            while done < len {
                match socket::recv(fd, &mut buf[done..done + cap_rw(len - done)], 0)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => done += n,
                }
            }
            Ok(len)
        })
        .await
        .map(drop)
    }

    pub(crate) async fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.read_op_or_empty(len, |fd| socket::readv(fd, bufs))
            .await
    }

    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.read_op_or_empty(len, |fd| {
            socket::recv(fd, &mut buf[..cap_rw(len)], libc::MSG_PEEK)
        })
        .await
    }

    pub(crate) async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_op(|fd| socket::send(fd, &buf[..cap_rw(buf.len())]))
            .await
    }

    pub(crate) async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        self.write_op(|fd| {
            while done < buf.len() {
                done += socket::send(fd, &buf[done..done + cap_rw(buf.len() - done)])?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_op(|fd| socket::sendv(fd, bufs)).await
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.with_ref(|fd| socket::with_socket(fd, |s| s.shutdown(how)))
    }
}

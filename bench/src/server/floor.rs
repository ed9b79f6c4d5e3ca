//! The floor: one thread, one level-triggered epoll loop, no runtime — the least work one
//! core can do to serve these protocols, and so the limit the runtimes are measured against.
//!
//! Per ready connection it makes one `read` and one `write` (echo: straight from a shared
//! 4 KiB buffer; HTTP: all the responses of a pipelined batch in one write). Only a write the
//! socket cannot take whole costs more: the rest is queued and the connection waits for
//! `EPOLLOUT` before it reads again. `WORKERS` is ignored: the floor is single-threaded.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use super::{App, ServeEnv};
use crate::proto;
use crate::sys::{self, Epoll};

const LISTENER: u64 = 0;
const BATCH: usize = 1024;

pub fn run(app: App, env: ServeEnv) -> io::Result<()> {
    if !app.served_by(super::Family::Floor) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the floor has no {} server", app.name()),
        ));
    }
    let listener = super::listen(env.addr)?;
    println!("floor {app:?} listening on {}", listener.local_addr()?);
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
    let mut floor = Floor {
        app,
        epoll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        scratch: vec![0; 4096],
        out: Vec::with_capacity(4096),
    };
    let mut events = Vec::with_capacity(BATCH);
    loop {
        floor.epoll.wait(&mut events, None)?;
        for ev in &events {
            let (token, bits) = sys::event_parts(ev);
            if token == LISTENER {
                floor.accept_all()?;
            } else {
                let idx = (token - 1) as usize;
                if let Err(e) = floor.on_event(idx, bits) {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        floor.close(idx);
                    }
                }
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    /// HTTP only: bytes read and not yet parsed.
    input: Vec<u8>,
    filled: usize,
    /// Bytes the socket did not take; while any are left the connection waits for EPOLLOUT.
    pending: Vec<u8>,
    sent: usize,
    close_after: bool,
}

struct Floor {
    app: App,
    epoll: Epoll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Echo's read buffer, shared by every connection.
    scratch: Vec<u8>,
    /// HTTP's response batch, reused.
    out: Vec<u8>,
}

impl Floor {
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of descriptors: leave the rest queued; the listener stays readable.
                Err(e) => {
                    eprintln!("accept: {e}");
                    return Ok(());
                }
            };
            stream.set_nonblocking(true)?;
            stream.set_nodelay(true)?;
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            self.epoll
                .add(stream.as_raw_fd(), idx as u64 + 1, libc::EPOLLIN as u32)?;
            self.conns[idx] = Some(Conn {
                stream,
                input: Vec::new(),
                filled: 0,
                pending: Vec::new(),
                sent: 0,
                close_after: false,
            });
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(conn) = self.conns[idx].take() {
            let _ = self.epoll.delete(conn.stream.as_raw_fd());
            self.free.push(idx);
        }
    }

    fn on_event(&mut self, idx: usize, bits: u32) -> io::Result<()> {
        let Some(conn) = self.conns[idx].as_mut() else {
            return Ok(());
        };
        let token = idx as u64 + 1;
        if !conn.pending.is_empty() {
            // Waiting for EPOLLOUT (or an error/hang-up, which the write reports).
            let n = (&conn.stream).write(&conn.pending[conn.sent..])?;
            conn.sent += n;
            if conn.sent == conn.pending.len() {
                conn.pending.clear();
                conn.sent = 0;
                if conn.close_after {
                    self.close(idx);
                    return Ok(());
                }
                self.epoll
                    .modify(conn.stream.as_raw_fd(), token, libc::EPOLLIN as u32)?;
            }
            return Ok(());
        }
        if bits & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
            return Ok(());
        }
        let reply: &[u8] = match self.app {
            App::Echo => {
                let n = (&conn.stream).read(&mut self.scratch)?;
                if n == 0 {
                    self.close(idx);
                    return Ok(());
                }
                &self.scratch[..n]
            }
            // Hyper is refused by `run`.
            App::Http | App::Hyper => {
                if conn.filled == conn.input.len() {
                    if conn.input.len() >= proto::HTTP_MAX_BUFFER {
                        self.close(idx);
                        return Ok(());
                    }
                    conn.input.resize((conn.input.len() * 2).max(4096), 0);
                }
                let n = (&conn.stream).read(&mut conn.input[conn.filled..])?;
                if n == 0 {
                    self.close(idx);
                    return Ok(());
                }
                conn.filled += n;
                self.out.clear();
                let (used, close) =
                    proto::answer_requests(&conn.input[..conn.filled], &mut self.out);
                conn.input.copy_within(used..conn.filled, 0);
                conn.filled -= used;
                conn.close_after = close;
                &self.out
            }
        };
        if reply.is_empty() {
            return Ok(());
        }
        let n = match (&conn.stream).write(reply) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if n < reply.len() {
            conn.pending.extend_from_slice(&reply[n..]);
            self.epoll
                .modify(conn.stream.as_raw_fd(), token, libc::EPOLLOUT as u32)?;
        } else if conn.close_after {
            self.close(idx);
        }
        Ok(())
    }
}

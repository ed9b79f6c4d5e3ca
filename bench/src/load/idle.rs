//! Idle connections for the memory scenario: open many connections to an echo server, make one
//! one-byte round trip on each (so the server has accepted it and its handler waits in a
//! read), and hold them open.
//!
//! Tens of thousands of connections to one port need more than one source address (each has
//! some 28,000 ephemeral ports): connections are spread over 127.0.0.2, 127.0.0.3, ...

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::sys::{self, Epoll};

/// Connections whose handshake or round trip is under way at once: well under the accept
/// backlog, so that no SYN is dropped and retried a second later.
const MAX_PENDING: usize = 256;

/// Source addresses used: 127.0.0.2 ..= 127.0.0.(1 + SOURCES).
const SOURCES: u8 = 8;

enum Phase {
    Connecting,
    RoundTrip,
    Idle,
}

/// Opens `n` connections to the echo server at `addr` and returns them once each has echoed
/// one byte. Fails if that takes longer than `limit`.
pub fn open(addr: SocketAddr, n: usize, limit: Duration) -> io::Result<Vec<Socket>> {
    let give_up = Instant::now() + limit;
    let epoll = Epoll::new()?;
    let mut socks: Vec<(Socket, Phase)> = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(MAX_PENDING);
    let (mut pending, mut done) = (0, 0);
    while done < n {
        while pending < MAX_PENDING && socks.len() < n {
            let i = socks.len();
            let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES as usize) as u8);
            let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            sock.set_nonblocking(true)?;
            sock.bind(&SocketAddrV4::new(source, 0).into())?;
            match sock.connect(&addr.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(e),
            }
            epoll.add(sock.as_raw_fd(), i as u64, libc::EPOLLOUT as u32)?;
            socks.push((sock, Phase::Connecting));
            pending += 1;
        }
        let now = Instant::now();
        if now > give_up {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{done} of {n} idle connections set up in {limit:?}"),
            ));
        }
        epoll.wait(
            &mut events,
            Some((give_up - now).min(Duration::from_secs(1))),
        )?;
        for ev in &events {
            let (token, _) = sys::event_parts(ev);
            let (sock, phase) = &mut socks[token as usize];
            match phase {
                Phase::Connecting => {
                    if let Some(e) = sock.take_error()? {
                        return Err(e);
                    }
                    sock.send(b"x")?;
                    epoll.modify(sock.as_raw_fd(), token, libc::EPOLLIN as u32)?;
                    *phase = Phase::RoundTrip;
                }
                Phase::RoundTrip => {
                    let mut byte = [std::mem::MaybeUninit::new(0u8)];
                    match sock.recv(&mut byte)? {
                        // SAFETY: recv initialised the one byte it reported.
                        1 if unsafe { byte[0].assume_init() } == b'x' => {}
                        _ => return Err(io::Error::other("the echo server did not echo")),
                    }
                    epoll.delete(sock.as_raw_fd())?;
                    *phase = Phase::Idle;
                    pending -= 1;
                    done += 1;
                }
                Phase::Idle => {}
            }
        }
    }
    Ok(socks.into_iter().map(|(s, _)| s).collect())
}

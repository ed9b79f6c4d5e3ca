//! UDP: Go's `net.UDPConn`.
//!
//! A [`UdpSocket`] is a [`NetFd`] like the TCP types, so it has the same rules: clones share
//! the socket, one receive and one send run at a time (others queue FIFO), deadlines and
//! `close` wake blocked operations. What differs — datagram framing — is documented on the
//! public type (this module is private).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::fd::NetFd;
use super::socket;
use crate::pd::Mode;

/// A UDP socket.
///
/// Clones share the socket: one task can receive while another sends, and any clone can
/// close it. See the [module docs](super) for deadlines and close semantics. What differs
/// from the stream types is datagram framing:
///
/// * Every receive is a real `recvfrom` — also with an empty buffer, which waits for a
///   datagram and consumes it. Go's `ZeroReadIsEOF` is false for datagram sockets: an empty
///   datagram is a valid message, so `Ok(0)` means "received an empty datagram" (or one
///   truncated to an empty buffer), never end of file.
/// * A datagram longer than the buffer is truncated; the rest of it is lost (as `recvfrom`).
/// * A send is one `sendto` with `MSG_NOSIGNAL`; it waits only if the socket's send buffer
///   is full, which is rare for UDP.
/// * New sockets have `SO_BROADCAST` on (Go's `setDefaultSockopts` for datagram sockets).
///
/// ```
/// # let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
/// # rt.block_on(async {
/// use netpoll::net::UdpSocket;
/// let a = UdpSocket::bind("127.0.0.1:0")?;
/// let b = UdpSocket::bind("127.0.0.1:0")?;
/// a.send_to(b"ping", b.local_addr()?).await?;
/// let mut buf = [0; 16];
/// let (n, from) = b.recv_from(&mut buf).await?;
/// assert_eq!(&buf[..n], b"ping");
/// assert_eq!(from, a.local_addr()?);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct UdpSocket {
    fd: NetFd,
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

/// The first address `addr` resolves to (std's `send_to` rule).
fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    Ok(resolve(addr)?[0])
}

fn inet_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::other("received from a non-inet address"))
}

impl UdpSocket {
    /// Binds a UDP socket to `addr` (the first address that works), with `SO_BROADCAST` on.
    ///
    /// Host names are resolved on the calling thread; pass an IP address (or use
    /// [`lookup_host`](super::lookup_host)) to avoid blocking a worker.
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let handle = crate::sched::context::current();
        let mut last = None;
        for addr in resolve(addr)? {
            match socket::udp_socket(addr) {
                Ok(s) => {
                    let fd = NetFd::with_handle(OwnedFd::from(s), &handle)?;
                    return Ok(UdpSocket { fd });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Wraps a `std` UDP socket (made non-blocking here; its options are left as they are).
    ///
    /// # Panics
    ///
    /// Outside a runtime context.
    #[track_caller]
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            fd: NetFd::new(OwnedFd::from(socket))?,
        })
    }

    /// Sets the default destination to `addr` (the first resolved address that works) and
    /// receives only from it. Never blocks: a UDP connect exchanges no packets.
    ///
    /// While connected, an ICMP "port unreachable" from the peer makes a later `recv` or
    /// `send` fail with `ConnectionRefused`.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let mut last = None;
        for addr in resolve(addr)? {
            let addr = SockAddr::from(addr);
            match self
                .fd
                .with_ref(|fd| socket::with_socket(fd, |s| s.connect(&addr)))
            {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Sends one datagram to `target` (its first resolved address); returns the bytes sent,
    /// which is all of `buf` unless the datagram is too large (then it fails with `EMSGSIZE`).
    /// An empty `buf` sends an empty datagram.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let addr = SockAddr::from(first_addr(target)?);
        self.fd.write_op(|fd| socket::send_to(fd, buf, &addr)).await
    }

    /// Waits for one datagram and copies it into `buf`; returns its length (truncated to
    /// `buf.len()`) and the sender. `Ok((0, _))` is an empty datagram, not end of file.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self.fd.read_op(|fd| socket::recv_from(fd, buf, 0)).await?;
        Ok((n, inet_addr(addr)?))
    }

    /// Like [`UdpSocket::recv_from`], but leaves the datagram queued (`MSG_PEEK`).
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self
            .fd
            .read_op(|fd| socket::recv_from(fd, buf, libc::MSG_PEEK))
            .await?;
        Ok((n, inet_addr(addr)?))
    }

    /// Sends one datagram to the connected peer (see [`UdpSocket::connect`]).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write_op(|fd| socket::send(fd, buf)).await
    }

    /// Waits for one datagram from the connected peer; `Ok(0)` is an empty datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_op(|fd| socket::recv(fd, buf, 0)).await
    }

    /// Like [`UdpSocket::recv`], but leaves the datagram queued (`MSG_PEEK`).
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd
            .read_op(|fd| socket::recv(fd, buf, libc::MSG_PEEK))
            .await
    }

    /// Closes the socket from any clone: every pending operation fails with the closed
    /// error. Closing twice fails with the closed error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }

    /// Sets the read and write deadlines (`None` clears).
    pub fn set_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, None)
    }

    /// Sets the deadline to `d` from now: `set_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, None)
    }

    /// Sets the read deadline (`None` clears): `recv`, `recv_from` and the peeks.
    pub fn set_read_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, Some(Mode::Read))
    }

    /// Sets the read deadline to `d` from now: `set_read_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_read_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, Some(Mode::Read))
    }

    /// Sets the write deadline (`None` clears): `send` and `send_to`.
    pub fn set_write_deadline(&self, deadline: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(deadline, Some(Mode::Write))
    }

    /// Sets the write deadline to `d` from now: `set_write_deadline(Some(Instant::now() + d))`,
    /// cheaper for `d` of a second or more, when it is never earlier and at most two kernel
    /// ticks plus 1 ms later (see the [module docs](crate::net)). Zero has passed at once.
    pub fn set_write_deadline_after(&self, d: Duration) -> io::Result<()> {
        self.fd.set_deadline_after(d, Some(Mode::Write))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(socket::local_addr)
    }

    /// The connected peer's address (`NotConnected` if [`UdpSocket::connect`] was not called).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.with_ref(socket::peer_addr)
    }

    /// Takes the socket's pending error (`SO_ERROR`), such as an ICMP error on a connected
    /// socket.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.with_ref(socket::take_error)
    }

    /// Sets `SO_BROADCAST` (on by default, as in Go).
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_broadcast(on))
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.with_socket(|s| s.broadcast())
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.with_socket(|s| s.ttl_v4())
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.with_socket(|s| s.set_ttl_v4(ttl))
    }

    /// Joins the IPv4 multicast group `multiaddr` on the interface with address `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: the system's choice).
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.with_socket(|s| s.join_multicast_v4(&multiaddr, &interface))
    }

    /// Leaves an IPv4 multicast group joined with [`UdpSocket::join_multicast_v4`].
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.with_socket(|s| s.leave_multicast_v4(&multiaddr, &interface))
    }

    /// Joins the IPv6 multicast group `multiaddr` on interface index `interface` (0: the
    /// system's choice).
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.with_socket(|s| s.join_multicast_v6(multiaddr, interface))
    }

    /// Leaves an IPv6 multicast group joined with [`UdpSocket::join_multicast_v6`].
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.with_socket(|s| s.leave_multicast_v6(multiaddr, interface))
    }

    /// `IP_MULTICAST_LOOP`: whether multicast datagrams sent here loop back to local members.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.with_socket(|s| s.multicast_loop_v4())
    }

    /// Sets `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_loop_v4(on))
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.with_socket(|s| s.multicast_ttl_v4())
    }

    /// Sets `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_ttl_v4(ttl))
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.with_socket(|s| s.multicast_loop_v6())
    }

    /// Sets `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_multicast_loop_v6(on))
    }

    fn with_socket<R>(&self, f: impl FnOnce(&socket2::Socket) -> io::Result<R>) -> io::Result<R> {
        self.fd.with_ref(|fd| socket::with_socket(fd, f))
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UdpSocket");
        if let Ok(addr) = self.local_addr() {
            d.field("addr", &addr);
        }
        if let Ok(peer) = self.peer_addr() {
            d.field("peer", &peer);
        }
        d.field("fd", &self.fd.as_raw_fd()).finish()
    }
}

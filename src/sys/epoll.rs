//! The Linux backend: epoll, as Go's `runtime/netpoll_epoll.go`.
//!
//! Every fd is added once with `EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLPRI|EPOLLET` and never
//! modified, so the
//! only `epoll_ctl` calls are one at open and one at close. The waker (`waker.rs`) is added
//! level-triggered with `EPOLLIN` under [`WAKE_TOKEN`]. See the contract in `mod.rs`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::waker::Waker;
use super::{EVENTS_CAPACITY, WAKE_TOKEN};

/// The one interest set of every registered fd (Go's `netpollopen`): both directions,
/// peer half-close, edge-triggered — plus `EPOLLPRI`, which Go does not ask for: TCP urgent
/// data is the one case where a short read does not mean the receive queue is empty, and the
/// layer above must hear of it (see `net/fd.rs`, "Skipping the read that would fail").
const INTEREST: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLET) as u32;

/// Bits that make an event readable (Go's `netpoll`: mode `'r'`, plus urgent data).
const READ_BITS: u32 =
    (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// Bits that make an event writable (Go's `netpoll`: mode `'w'`).
const WRITE_BITS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// The longest single wait, in ms: Go's `netpoll` caps any delay ≥ 1e15 ns at 1e9 ms (≈11.5 days).
const MAX_WAIT_MS: u128 = 1_000_000_000;

/// The epoll instance and its waker.
#[derive(Debug)]
pub(crate) struct Poller {
    /// # Invariant
    /// An epoll fd created by [`Poller::new`], owned here and closed on drop.
    epfd: OwnedFd,
    waker: Waker,
}

impl Poller {
    /// `epoll_create1(EPOLL_CLOEXEC)`, then the waker added level-triggered under `WAKE_TOKEN`.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; it only returns a new fd or -1.
        let epfd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epfd` was just returned by epoll_create1 and is owned by nothing else.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        let poller = Poller {
            epfd,
            waker: Waker::new()?,
        };
        poller.ctl(
            libc::EPOLL_CTL_ADD,
            poller.waker.fd(),
            libc::EPOLLIN as u32,
            WAKE_TOKEN,
        )?;
        Ok(poller)
    }

    /// One registration for the fd's whole life: `EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLPRI|EPOLLET`,
    /// data = `token`. `WAKE_TOKEN` is reserved (`InvalidInput`).
    pub(crate) fn register(&self, fd: RawFd, token: u64) -> io::Result<()> {
        if token == WAKE_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "netpoll: token u64::MAX is reserved for the poller's waker",
            ));
        }
        self.ctl(libc::EPOLL_CTL_ADD, fd, INTEREST, token)
    }

    /// `EPOLL_CTL_DEL`; the event pointer is non-null for kernels before 2.6.9.
    pub(crate) fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: the epoll fd is open (invariant); `event` is a valid epoll_event that the
        // kernel only reads during the call.
        syscall!(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    /// Clears `events`, waits, fills it; returns whether a `wake()` was consumed. The full
    /// semantics (timeout rounding, EINTR, who consumes a wake-up) are in the contract, `mod.rs`.
    /// If draining the wake fd fails, the error is returned and `events` still holds the batch.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<bool> {
        let timeout_ms = timeout_ms(timeout);
        events.list.clear();
        let max_events = events.list.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        let n = loop {
            // SAFETY: the epoll fd is open (invariant); the buffer has room for `max_events`
            // entries and the kernel writes at most that many.
            let res = syscall!(unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.list.as_mut_ptr(),
                    max_events,
                    timeout_ms,
                )
            });
            match res {
                Ok(n) => break n as usize,
                // Go: a finite wait returns so the caller recomputes its timeout; an infinite or
                // zero one simply retries.
                Err(e) if e.kind() == io::ErrorKind::Interrupted && timeout_ms > 0 => {
                    return Ok(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        // SAFETY: epoll_wait initialised the first `n` entries, and `n <= max_events <= capacity`.
        unsafe { events.list.set_len(n) };

        let mut saw_wake = false;
        events.list.retain(|event| {
            let (bits, token) = (event.events, event.u64);
            if token == WAKE_TOKEN {
                // Go throws here: the wake fd can only ever be readable.
                debug_assert_eq!(
                    bits,
                    libc::EPOLLIN as u32,
                    "wake fd ready for something else"
                );
                saw_wake = true;
                return false;
            }
            bits != 0
        });
        // Only a blocking wait consumes the wake-up; see the protocol in waker.rs.
        if saw_wake && timeout_ms != 0 {
            self.waker.consume()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Breaks a blocked `wait` (or makes the next one return at once); deduplicated. Returns
    /// whether this call wrote the signal.
    pub(crate) fn wake(&self) -> io::Result<bool> {
        self.waker.wake()
    }

    /// Every fd this poller owns: the epoll fd and the wake fd(s).
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.epfd.as_raw_fd()];
        fds.extend(self.waker.fds());
        fds
    }
}

/// `None` → -1 (infinite); otherwise whole milliseconds rounded up, so a 1 µs wait waits 1 ms
/// and a wait never ends early (Go rounds sub-ms delays up to 1 but truncates the rest), capped
/// at [`MAX_WAIT_MS`].
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(MAX_WAIT_MS) as libc::c_int,
    }
}

/// A batch of readiness events, reused across waits.
pub(crate) struct Events {
    /// After `wait`: only socket events with at least one bit (wake-ups and empty events removed).
    list: Vec<libc::epoll_event>,
}

impl Events {
    /// Room for [`EVENTS_CAPACITY`] events.
    pub(crate) fn new() -> Events {
        Events::with_capacity(EVENTS_CAPACITY)
    }

    /// Room for `capacity` events; panics if it is 0 (epoll_wait needs at least one slot).
    pub(crate) fn with_capacity(capacity: usize) -> Events {
        assert!(
            capacity > 0,
            "netpoll: an event batch needs room for one event"
        );
        Events {
            list: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.list
            .iter()
            .map(|event| Event::from_bits(event.u64, event.events))
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One fd's readiness: the token it was registered with and the epoll bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    token: u64,
    bits: u32,
}

impl Event {
    /// An event as `epoll_wait` reports it: the registration's token and the `EPOLL*` bits.
    pub(crate) fn from_bits(token: u64, bits: u32) -> Event {
        Event { token, bits }
    }

    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// Any of `EPOLLIN|EPOLLPRI|EPOLLRDHUP|EPOLLHUP|EPOLLERR`.
    pub(crate) fn is_readable(&self) -> bool {
        self.bits & READ_BITS != 0
    }

    /// Any of `EPOLLOUT|EPOLLHUP|EPOLLERR`.
    pub(crate) fn is_writable(&self) -> bool {
        self.bits & WRITE_BITS != 0
    }

    /// Exactly `EPOLLERR` and nothing else (Go's `setEventErr(ev.Events == EPOLLERR)`): the
    /// layer above records an error the next I/O attempt will surface.
    pub(crate) fn is_error_only(&self) -> bool {
        self.bits == libc::EPOLLERR as u32
    }

    /// The peer hung up (fully or its write side) or the socket has an error: any of
    /// `EPOLLHUP`, `EPOLLRDHUP`, `EPOLLERR`, or urgent data (`EPOLLPRI`): a state a read may
    /// not see in full (an error or EOF behind data, data behind the urgent mark).
    pub(crate) fn is_exceptional(&self) -> bool {
        self.bits & (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32
            != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{timeout_ms, Event, MAX_WAIT_MS};
    use std::time::Duration;

    #[test]
    fn timeout_rounds_up_to_whole_milliseconds_and_caps() {
        let ms = |d| timeout_ms(Some(d));
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(ms(Duration::ZERO), 0);
        assert_eq!(ms(Duration::from_nanos(1)), 1);
        assert_eq!(ms(Duration::from_millis(1)), 1);
        assert_eq!(ms(Duration::from_nanos(1_000_001)), 2);
        assert_eq!(ms(Duration::from_micros(1500)), 2);
        assert_eq!(ms(Duration::from_secs(1_000_000)), MAX_WAIT_MS as i32);
        assert_eq!(ms(Duration::MAX), MAX_WAIT_MS as i32);
    }

    #[test]
    fn event_bits_map_to_directions_as_go() {
        use libc::{EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP};
        // (bits, readable, writable, error_only)
        let cases = [
            (EPOLLIN, true, false, false),
            (EPOLLOUT, false, true, false),
            (EPOLLRDHUP, true, false, false),
            (EPOLLHUP, true, true, false),
            (EPOLLERR, true, true, true),
            (EPOLLERR | EPOLLIN, true, true, false),
            (EPOLLERR | EPOLLHUP, true, true, false),
            (EPOLLIN | EPOLLOUT | EPOLLRDHUP, true, true, false),
            (EPOLLPRI, true, false, false),
        ];
        for (bits, readable, writable, error_only) in cases {
            let event = Event::from_bits(7, bits as u32);
            assert_eq!(event.token(), 7);
            assert_eq!(event.is_readable(), readable, "readable for {bits:#x}");
            assert_eq!(event.is_writable(), writable, "writable for {bits:#x}");
            assert_eq!(
                event.is_error_only(),
                error_only,
                "error_only for {bits:#x}"
            );
        }
    }
}

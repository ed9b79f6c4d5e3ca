//! The poller's waker: one fd the backend registers level-triggered for reading, plus the
//! "signal pending" flag that keeps at most one signal in it (Go's `netpollBreak` and
//! `netpollWakeSig`).
//!
//! The fd is an `eventfd(0, EFD_CLOEXEC|EFD_NONBLOCK)` (Go 1.23+), or with
//! `--cfg netpoll_force_pipe_waker` a `pipe2(O_CLOEXEC|O_NONBLOCK)` whose read end is registered
//! (Go up to 1.22; also the fallback for sandboxes that forbid eventfd). Run the fallback with
//! `RUSTFLAGS="--cfg netpoll_force_pipe_waker" cargo test --lib --target-dir target/pipe sys`.
//!
//! # The `pending` protocol
//!
//! * **Set** by [`Waker::wake`] on any thread: `swap(true, Release)`. The caller that swapped
//!   `false → true` writes one signal into the fd; a caller that finds `true` returns at once,
//!   because a signal is in the fd (or about to be) that no blocking waiter has consumed yet.
//!   If the write fails the setter puts `false` back, so later wakes are not disabled.
//! * **Cleared** only by [`Waker::consume`], called by a *blocking* wait that saw the fd readable:
//!   first drain the fd, then `swap(false, Acquire)`. Drain-then-clear matters: with clear-first,
//!   a `wake` landing in between would set the flag and write a signal that the drain then eats,
//!   leaving `pending == true` with an empty fd, and every later `wake` would be a no-op.
//! * **Never cleared by a non-blocking wait**: it leaves both the signal and the flag, so the fd
//!   stays readable (level-triggered) and the blocked poller, for which the wake was meant,
//!   still returns (Go: "a non-blocking poll must not consume the wakeup").
//!
//! Orderings. Every `wake` swap is a release read-modify-write, so the ones that found `true`
//! extend the release sequence of the one that set it. The clearing `swap(false, Acquire)` reads
//! the last of them, hence synchronizes with every `wake` ordered before it: whatever a thread
//! wrote before calling `wake` is visible after the `wait` that consumed it returns. A `wake`
//! ordered after the clear finds `false` and writes a fresh signal, so the next blocking wait
//! returns. Either way no wake-up is lost; two concurrent blocking waiters can at worst cause one
//! spurious wake-up (one drains a signal whose flag the other already cleared).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::loom::{AtomicBool, Ordering};

#[cfg(not(netpoll_force_pipe_waker))]
use self::eventfd::WakeFd;
#[cfg(netpoll_force_pipe_waker)]
use self::pipe::WakeFd;

/// The wake fd and its pending flag.
#[derive(Debug)]
pub(super) struct Waker {
    fd: WakeFd,
    /// `true` while a signal written by [`Waker::wake`] has not been consumed by a blocking wait.
    pending: AtomicBool,
}

impl Waker {
    pub(super) fn new() -> io::Result<Waker> {
        Ok(Waker {
            fd: WakeFd::new()?,
            pending: AtomicBool::new(false),
        })
    }

    /// The fd to register level-triggered for `EPOLLIN` (the read end for a pipe).
    pub(super) fn fd(&self) -> RawFd {
        self.fd.read_end().as_raw_fd()
    }

    /// Signals the fd unless a signal is already pending.
    /// Returns whether this call wrote the signal (false: one was already pending).
    pub(super) fn wake(&self) -> io::Result<bool> {
        // Release: publishes the caller's writes to the consumer's `swap(false, Acquire)`.
        if self.pending.swap(true, Ordering::Release) {
            return Ok(false);
        }
        self.fd
            .signal()
            .inspect_err(|_| {
                // Nothing was written: let the next wake try again instead of finding `true`
                // forever.
                self.pending.store(false, Ordering::Relaxed);
            })
            .map(|()| true)
    }

    /// Drains the fd, then clears the flag. Only a blocking wait that saw the fd readable calls it.
    pub(super) fn consume(&self) -> io::Result<()> {
        self.fd.drain()?;
        // Acquire: pairs with the Release swap of every wake() ordered before this point.
        self.pending.swap(false, Ordering::Acquire);
        Ok(())
    }

    /// Every fd this waker owns.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.fd.fds()
    }

    /// Reads and returns the number of signals currently in the fd (destructive), for tests.
    #[cfg(test)]
    #[cfg_attr(loom, allow(dead_code))]
    fn take_signals(&self) -> u64 {
        self.fd.take_signals()
    }
}

/// Retries `op` while it fails with `EINTR`; `EAGAIN` becomes `Ok(None)`.
fn retry_nonblocking(mut op: impl FnMut() -> io::Result<isize>) -> io::Result<Option<usize>> {
    loop {
        match op() {
            Ok(n) => return Ok(Some(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(not(netpoll_force_pipe_waker))]
mod eventfd {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    use super::retry_nonblocking;

    /// An eventfd: written with 1, read back as the (reset-on-read) counter.
    #[derive(Debug)]
    pub(super) struct WakeFd {
        /// # Invariant
        /// A non-blocking, close-on-exec eventfd owned by this value.
        fd: OwnedFd,
    }

    impl WakeFd {
        pub(super) fn new() -> io::Result<WakeFd> {
            // SAFETY: eventfd takes no pointers; it only returns a new fd or -1.
            let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
            // SAFETY: `fd` was just returned by eventfd and is owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok(WakeFd { fd })
        }

        pub(super) fn read_end(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.fd.as_fd()
        }

        /// Adds 1 to the counter. `EAGAIN` (counter at its maximum) means already signalled.
        pub(super) fn signal(&self) -> io::Result<()> {
            let one: u64 = 1;
            retry_nonblocking(|| {
                // SAFETY: the fd is open (invariant); the buffer is 8 readable bytes, as eventfd
                // requires.
                syscall!(unsafe {
                    libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8)
                })
            })
            .map(drop)
        }

        /// Resets the counter to 0 (one read does it); `EAGAIN` means it already was 0.
        pub(super) fn drain(&self) -> io::Result<()> {
            self.read_counter().map(drop)
        }

        fn read_counter(&self) -> io::Result<u64> {
            let mut count: u64 = 0;
            let n = retry_nonblocking(|| {
                // SAFETY: the fd is open (invariant); the buffer is 8 writable bytes, as eventfd
                // requires.
                syscall!(unsafe {
                    libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8)
                })
            })?;
            Ok(if n.is_some() { count } else { 0 })
        }

        #[cfg(test)]
        #[cfg_attr(loom, allow(dead_code))]
        pub(super) fn fds(&self) -> Vec<std::os::fd::RawFd> {
            vec![self.fd.as_raw_fd()]
        }

        #[cfg(test)]
        #[cfg_attr(loom, allow(dead_code))]
        pub(super) fn take_signals(&self) -> u64 {
            self.read_counter().expect("read eventfd")
        }
    }
}

#[cfg(netpoll_force_pipe_waker)]
mod pipe {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    use super::retry_nonblocking;

    /// A pipe: one byte written per signal, the read end registered and drained fully.
    #[derive(Debug)]
    pub(super) struct WakeFd {
        /// # Invariant
        /// The non-blocking, close-on-exec read end of the pipe whose write end is `write`.
        read: OwnedFd,
        /// # Invariant
        /// The non-blocking, close-on-exec write end; open as long as `read` is, so the read end
        /// never reports `EPOLLHUP`.
        write: OwnedFd,
    }

    impl WakeFd {
        pub(super) fn new() -> io::Result<WakeFd> {
            let mut fds = [-1; 2];
            // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
            syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
            // SAFETY: pipe2 succeeded, so both fds are new and owned by nothing else.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            Ok(WakeFd { read, write })
        }

        pub(super) fn read_end(&self) -> BorrowedFd<'_> {
            self.read.as_fd()
        }

        /// Writes one byte. `EAGAIN` (pipe full) means it is already readable.
        pub(super) fn signal(&self) -> io::Result<()> {
            retry_nonblocking(|| {
                // SAFETY: `write` is open (invariant); the buffer is one readable byte.
                syscall!(unsafe { libc::write(self.write.as_raw_fd(), b"w".as_ptr().cast(), 1) })
            })
            .map(drop)
        }

        /// Reads until the pipe is empty, so the level-triggered read end stops reporting.
        pub(super) fn drain(&self) -> io::Result<()> {
            self.drain_counting().map(drop)
        }

        fn drain_counting(&self) -> io::Result<u64> {
            let mut buf = [0u8; 16];
            let mut total = 0u64;
            loop {
                let n = retry_nonblocking(|| {
                    // SAFETY: `read` is open (invariant); `buf` is writable for its length.
                    syscall!(unsafe {
                        libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    })
                })?;
                match n {
                    // EAGAIN: empty. 0 (EOF) cannot happen while we hold the write end.
                    None | Some(0) => return Ok(total),
                    Some(n) => total += n as u64,
                }
            }
        }

        #[cfg(test)]
        #[cfg_attr(loom, allow(dead_code))]
        pub(super) fn fds(&self) -> Vec<std::os::fd::RawFd> {
            vec![self.read.as_raw_fd(), self.write.as_raw_fd()]
        }

        #[cfg(test)]
        #[cfg_attr(loom, allow(dead_code))]
        pub(super) fn take_signals(&self) -> u64 {
            self.drain_counting().expect("read pipe")
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Waker;
    use crate::loom::{thread, Arc};

    #[test]
    fn repeated_wakes_write_one_signal() {
        let waker = Waker::new().unwrap();
        for _ in 0..10 {
            waker.wake().unwrap();
        }
        assert_eq!(waker.take_signals(), 1);
        // The flag is still set (nothing consumed it): further wakes write nothing.
        waker.wake().unwrap();
        assert_eq!(waker.take_signals(), 0);
    }

    #[test]
    fn consume_rearms_the_next_wake() {
        let waker = Waker::new().unwrap();
        waker.wake().unwrap();
        waker.consume().unwrap();
        assert_eq!(waker.take_signals(), 0, "consume drains the fd");
        waker.wake().unwrap();
        assert_eq!(
            waker.take_signals(),
            1,
            "a wake after consume signals again"
        );
    }

    #[test]
    fn concurrent_wakes_write_one_signal() {
        let waker = Arc::new(Waker::new().unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let waker = Arc::clone(&waker);
                thread::spawn(move || {
                    (0..100).for_each(|_| {
                        waker.wake().unwrap();
                    })
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(waker.take_signals(), 1);
    }
}

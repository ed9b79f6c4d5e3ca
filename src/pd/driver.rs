//! The I/O driver: the OS poller plus the descriptor cache, and Go's `netpoll(delay)` — turning
//! one `epoll_wait` into a batch of ready tasks.

use std::io;
use std::task::Waker;
use std::time::Duration;

use super::cache::Cache;
use super::Mode;
use crate::loom::{AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::sched::inject::Batch;
use crate::sched::{task, Handle};
use crate::sys::{Event, Events, Poller};

pub(crate) struct IoDriver {
    pub(super) poller: Poller,
    pub(super) cache: Cache,
    /// The event buffer of the one machine blocked in the poller (the scheduler's `lastpoll`
    /// protocol makes it uncontended).
    blocking_events: Mutex<Events>,
    /// The event buffer for non-blocking polls; `try_lock` failing means another thread is
    /// already polling (Go's `sched.pollingNet`), so this one need not.
    nonblocking_events: Mutex<Events>,
    /// Sockets registered now: a non-blocking poll with none is skipped (Go's
    /// `netpollAnyWaiters`, approximated by "anything registered").
    registered: AtomicUsize,
    stats: Stats,
}

/// Poller counters (bumped once per poll or wake-up, never per task).
#[derive(Default)]
struct Stats {
    waits: AtomicU64,
    nonblocking_polls: AtomicU64,
    events: AtomicU64,
    wakeups: AtomicU64,
}

/// A snapshot of the poller counters.
pub(crate) struct IoStats {
    pub(crate) waits: u64,
    pub(crate) nonblocking_polls: u64,
    pub(crate) events: u64,
    pub(crate) wakeups: u64,
}

impl IoDriver {
    pub(crate) fn new() -> io::Result<IoDriver> {
        Ok(IoDriver {
            poller: Poller::new()?,
            cache: Cache::new(),
            blocking_events: Mutex::new(Events::new()),
            nonblocking_events: Mutex::new(Events::new()),
            registered: AtomicUsize::new(0),
            stats: Stats::default(),
        })
    }

    /// The blocking poll (`timeout` `None` = until woken). Ready tasks are added to `batch`.
    pub(crate) fn poll(&self, timeout: Option<Duration>, batch: &mut Batch) {
        let mut events = self.blocking_events.lock();
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        self.wait(&mut events, timeout, batch);
    }

    /// A non-blocking poll, unless no socket is registered or another thread is polling.
    /// Returns whether it polled.
    pub(crate) fn try_poll(&self, batch: &mut Batch) -> bool {
        if self.registered.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Some(mut events) = self.nonblocking_events.try_lock() else {
            return false;
        };
        self.stats.nonblocking_polls.fetch_add(1, Ordering::Relaxed);
        self.wait(&mut events, Some(Duration::ZERO), batch);
        true
    }

    fn wait(&self, events: &mut Events, timeout: Option<Duration>, batch: &mut Batch) {
        if let Err(e) = self.poller.wait(events, timeout) {
            // epoll_wait fails only on programming errors (EBADF, EFAULT, EINVAL); Go throws.
            panic!("netpoll: epoll_wait failed: {e}");
        }
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "netpoll::poller",
            blocking = timeout != Some(Duration::ZERO),
            timeout_ms = timeout.map(|t| t.as_millis() as u64),
            events = events.len(),
            "poller wait"
        );
        if !events.is_empty() {
            self.stats
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for event in events.iter() {
            dispatch(&self.cache, event, batch);
        }
    }

    /// Breaks the blocking poll (deduplicated; Go's `netpollBreak`).
    pub(crate) fn wake(&self) {
        match self.poller.wake() {
            Ok(true) => {
                self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => panic!("netpoll: waking the poller failed: {e}"),
        }
    }

    pub(crate) fn stats(&self) -> IoStats {
        let s = &self.stats;
        IoStats {
            waits: s.waits.load(Ordering::Relaxed),
            nonblocking_polls: s.nonblocking_polls.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            wakeups: s.wakeups.load(Ordering::Relaxed),
        }
    }

    /// Marks every descriptor closing and wakes its waiters (runtime shutdown).
    pub(crate) fn shutdown(&self) {
        self.cache.for_each(|pd| pd.shutdown());
    }

    /// Sockets registered now.
    pub(crate) fn registered(&self) -> usize {
        self.registered.load(Ordering::Relaxed)
    }

    pub(super) fn count_registration(&self, delta: isize) {
        if delta > 0 {
            self.registered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Delivers one event to the descriptor its token names (the body of Go's `netpoll` loop):
/// records an error-only or exceptional event in `info`, then hands the waiters of the ready
/// directions to `batch`. An event whose generation is no longer the descriptor's belongs to a
/// socket that has since closed, and is dropped (Go's `fdseq` check; see the ground rules in
/// `pd/mod.rs` for the readiness that can still slip through).
pub(crate) fn dispatch(cache: &Cache, event: Event, batch: &mut Batch) {
    let token = event.token();
    let index = token as u32;
    let generation = (token >> 32) as u32;
    let Some(pd) = cache.get(index) else {
        return;
    };
    if pd.generation() != generation {
        return; // an event for an earlier socket that used this descriptor
    }
    pd.set_event_err(event.is_error_only(), generation);
    if event.is_exceptional() {
        // Before the readiness below is published (see `Registration::exceptional_seen`).
        pd.set_exceptional(generation);
    }
    if event.is_readable() {
        if let Some(waker) = pd.notify_ready(Mode::Read) {
            route(waker, batch);
        }
    }
    if event.is_writable() {
        if let Some(waker) = pd.notify_ready(Mode::Write) {
            route(waker, batch);
        }
    }
}

/// Sends a waker's task to `batch` if it is one of ours (no wake-up per task: the batch is
/// injected at once), or wakes a foreign waker directly.
pub(crate) fn route(waker: Waker, batch: &mut Batch) {
    match task::take_notified::<Handle>(waker) {
        Ok(Some(task)) => batch.push(task),
        Ok(None) => {}
        Err(waker) => waker.wake(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    use super::super::{PollDesc, PollError, EVENT_ERR, EXCEPTIONAL, GEN_SHIFT};
    use super::*;

    /// A descriptor in use by `generation`, as `Registration::new` leaves it.
    fn in_use(io: &IoDriver, generation: u32) -> (u32, &PollDesc) {
        let (index, pd) = io.cache.alloc();
        pd.rg.init();
        pd.wg.init();
        pd.info
            .store((generation as u64) << GEN_SHIFT, Ordering::Release);
        (index, pd)
    }

    /// Registers `fd` under `index` and `generation`, then runs one non-blocking poll.
    fn deliver(io: &IoDriver, fd: &impl AsRawFd, index: u32, generation: u32) {
        let token = ((generation as u64) << GEN_SHIFT) | index as u64;
        io.poller.register(fd.as_raw_fd(), token).unwrap();
        let mut batch = Batch::new();
        io.wait(&mut Events::new(), Some(Duration::ZERO), &mut batch);
        assert!(batch.is_empty(), "no task waits on the descriptor");
    }

    /// A stream socket with data to read and its peer gone: readable, hung up.
    fn hung_up_socket() -> UnixStream {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"x").unwrap();
        drop(b);
        a
    }

    /// The write end of a full pipe whose read end is closed: the one event that is exactly
    /// `EPOLLERR` (not writable: no room; the error: no reader).
    fn error_only_pipe() -> OwnedFd {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
        // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut file = std::fs::File::from(write);
        let chunk = [0u8; 4096];
        while file.write(&chunk).is_ok() {}
        drop(read);
        file.into()
    }

    #[test]
    fn an_event_of_an_earlier_socket_never_reaches_the_descriptor_that_reuses_it() {
        let io = IoDriver::new().unwrap();
        let (index, pd) = in_use(&io, 7);
        // Late events of the socket that had the descriptor before (generation 6): readiness,
        // hang-up and an error-only event. None may mark the new socket's descriptor.
        let (stale_socket, stale_pipe) = (hung_up_socket(), error_only_pipe());
        deliver(&io, &stale_socket, index, 6);
        deliver(&io, &stale_pipe, index, 6);
        assert!(
            !pd.rg.is_ready() && !pd.wg.is_ready(),
            "stale readiness delivered"
        );
        let info = pd.info.load(Ordering::Acquire);
        assert_eq!(
            info & (EVENT_ERR | EXCEPTIONAL),
            0,
            "stale error bits: {info:#x}"
        );
        assert_eq!(PollDesc::check(info, Mode::Read), Ok(()));

        // The same events under the current generation do (the control).
        let current_socket = hung_up_socket();
        deliver(&io, &current_socket, index, 7);
        assert!(pd.rg.is_ready(), "readiness not delivered");
        assert_ne!(pd.info.load(Ordering::Acquire) & EXCEPTIONAL, 0);
        deliver(&io, &error_only_pipe(), index, 7);
        assert_eq!(
            PollDesc::check(pd.info.load(Ordering::Acquire), Mode::Read),
            Err(PollError::NotPollable),
            "the error-only event did not mark the descriptor"
        );
    }
}

//! Tests of the backend contract (`mod.rs`), written against the contract only so that every
//! backend runs them. Sockets come from `UnixStream::pair`.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::time::{Duration, Instant};

use super::{Event, Events, Poller, EVENTS_CAPACITY, WAKE_TOKEN};
use crate::loom::{thread, Arc, AtomicBool, Ordering};

/// Long enough never to expire in a passing test; the failing path waits it out.
const LONG: Duration = Duration::from_secs(10);
/// Long enough for an event that is already queued to be reported.
const SHORT: Duration = Duration::from_millis(20);

fn events_of(poller: &Poller, timeout: Option<Duration>) -> Vec<Event> {
    let mut events = Events::new();
    poller.wait(&mut events, timeout).unwrap();
    events.iter().collect()
}

/// A registered socket pair, with the initial "writable" edge already taken.
fn registered_pair(poller: &Poller, token: u64) -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    poller.register(a.as_raw_fd(), token).unwrap();
    let first = events_of(poller, Some(LONG));
    assert_eq!(first.len(), 1);
    assert!(first[0].is_writable() && !first[0].is_readable());
    (a, b)
}

#[test]
fn readable_after_the_peer_writes() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = registered_pair(&poller, 42);
    b.write_all(b"x").unwrap();
    let events = events_of(&poller, Some(LONG));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token(), 42);
    assert!(events[0].is_readable());
    assert!(!events[0].is_error_only());
    drop(a);
}

#[test]
fn edge_triggered_no_second_event_without_new_data() {
    let poller = Poller::new().unwrap();
    let (mut a, mut b) = registered_pair(&poller, 1);
    b.write_all(b"x").unwrap();
    assert_eq!(events_of(&poller, Some(LONG)).len(), 1);
    // The byte is still unread, yet there is no new edge.
    assert!(events_of(&poller, Some(SHORT)).is_empty());
    b.write_all(b"y").unwrap();
    let again = events_of(&poller, Some(LONG));
    assert!(again.len() == 1 && again[0].is_readable());
    let mut buf = [0u8; 4];
    assert_eq!(a.read(&mut buf).unwrap(), 2);
}

#[test]
fn peer_close_reports_readable_and_writable() {
    let poller = Poller::new().unwrap();
    let (a, b) = registered_pair(&poller, 9);
    drop(b);
    let events = events_of(&poller, Some(LONG));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token(), 9);
    assert!(events[0].is_readable() && events[0].is_writable());
    assert!(!events[0].is_error_only());
    drop(a);
}

#[test]
fn wake_from_another_thread_breaks_an_infinite_wait() {
    let poller = Arc::new(Poller::new().unwrap());
    let waiter = {
        let poller = Arc::clone(&poller);
        thread::spawn(move || {
            let mut events = Events::new();
            let woken = poller.wait(&mut events, None).unwrap();
            (woken, events.len())
        })
    };
    thread::sleep(SHORT);
    poller.wake().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        (true, 0),
        "woken, and no wake event reported"
    );
}

#[test]
fn many_wakes_coalesce_into_one_and_the_next_wait_times_out() {
    let poller = Arc::new(Poller::new().unwrap());
    let wakers: Vec<_> = (0..4)
        .map(|_| {
            let poller = Arc::clone(&poller);
            thread::spawn(move || {
                (0..50).for_each(|_| {
                    poller.wake().unwrap();
                })
            })
        })
        .collect();
    wakers.into_iter().for_each(|t| t.join().unwrap());
    let mut events = Events::new();
    assert!(poller.wait(&mut events, Some(LONG)).unwrap());
    assert!(events.is_empty());
    assert!(!poller.wait(&mut events, Some(SHORT)).unwrap());
    assert!(events.is_empty());
}

#[test]
fn a_non_blocking_wait_does_not_consume_a_pending_wake() {
    let poller = Poller::new().unwrap();
    let mut events = Events::new();
    poller.wake().unwrap();
    for _ in 0..2 {
        assert!(!poller.wait(&mut events, Some(Duration::ZERO)).unwrap());
        assert!(events.is_empty());
    }
    assert!(
        poller.wait(&mut events, Some(LONG)).unwrap(),
        "the blocking wait still wakes"
    );
}

#[test]
fn a_wake_is_consumed_alongside_socket_events() {
    let poller = Poller::new().unwrap();
    let (_a, mut b) = registered_pair(&poller, 3);
    b.write_all(b"x").unwrap();
    poller.wake().unwrap();
    let mut events = Events::new();
    assert!(poller.wait(&mut events, Some(LONG)).unwrap());
    let tokens: Vec<u64> = events.iter().map(|e| e.token()).collect();
    assert_eq!(tokens, [3]);
}

#[test]
fn a_sub_millisecond_timeout_never_returns_early() {
    let poller = Poller::new().unwrap();
    let mut events = Events::new();
    for (timeout, at_least) in [
        (Duration::from_micros(1), Duration::from_millis(1)),
        (Duration::from_micros(1500), Duration::from_micros(1500)),
    ] {
        let start = Instant::now();
        assert!(!poller.wait(&mut events, Some(timeout)).unwrap());
        assert!(start.elapsed() >= at_least, "{timeout:?} returned early");
        assert!(events.is_empty());
    }
}

#[test]
fn deregister_stops_events() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = registered_pair(&poller, 5);
    poller.deregister(a.as_raw_fd()).unwrap();
    b.write_all(b"x").unwrap();
    assert!(events_of(&poller, Some(SHORT)).is_empty());
    let err = poller.deregister(a.as_raw_fd()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn u64_tokens_round_trip() {
    let poller = Poller::new().unwrap();
    let tokens = [0, 1, 1 << 32, (1 << 63) | 5, WAKE_TOKEN - 1];
    let pairs: Vec<_> = tokens
        .iter()
        .map(|&token| {
            let (a, b) = UnixStream::pair().unwrap();
            poller.register(a.as_raw_fd(), token).unwrap();
            (a, b)
        })
        .collect();
    let got: HashSet<u64> = events_of(&poller, Some(LONG))
        .iter()
        .map(Event::token)
        .collect();
    assert_eq!(got, tokens.into_iter().collect());
    drop(pairs);
}

#[test]
fn a_batch_holds_at_most_capacity_events_and_the_rest_come_next() {
    let poller = Poller::new().unwrap();
    let total = EVENTS_CAPACITY + 3;
    let pairs: Vec<_> = (0..total as u64)
        .map(|token| {
            let (a, b) = UnixStream::pair().unwrap();
            poller.register(a.as_raw_fd(), token).unwrap();
            (a, b)
        })
        .collect();
    let mut seen = HashSet::new();
    let first = events_of(&poller, Some(LONG));
    assert_eq!(first.len(), EVENTS_CAPACITY);
    seen.extend(first.iter().map(Event::token));
    seen.extend(events_of(&poller, Some(LONG)).iter().map(Event::token));
    assert_eq!(seen, (0..total as u64).collect());
    drop(pairs);
}

#[test]
fn register_rejects_the_wake_token() {
    let poller = Poller::new().unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let err = poller.register(a.as_raw_fd(), WAKE_TOKEN).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn register_of_a_closed_fd_is_ebadf() {
    let poller = Poller::new().unwrap();
    // No process can have these open: -1 is never an fd, and c_int::MAX exceeds the kernel's
    // hard cap on fd numbers (fs.nr_open ≤ 2^30), so no parallel test can reuse them.
    for fd in [-1, libc::c_int::MAX] {
        let err = poller.register(fd, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "fd {fd}");
    }
}

/// What `fd` refers to: its `/proc/self/fd` link and `fdinfo`, or `None` if it is closed.
fn fingerprint(fd: RawFd) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    Some(format!("{}\n{info}", link.display()))
}

#[test]
fn dropping_the_poller_closes_its_fds() {
    // Parallel tests may reuse a freed fd number at once, so "is fd N closed?" is not enough:
    // make each of our fds distinguishable, then check no fd number still shows the same file.
    let poller = Poller::new().unwrap();
    // The epoll fd's fdinfo lists this registration's token; other tests never use it.
    let (marker, _peer) = UnixStream::pair().unwrap();
    poller
        .register(marker.as_raw_fd(), 0x6e65_7470_6f6c_6c21)
        .unwrap();
    let fds = poller.fds();
    for &fd in &fds {
        if fingerprint(fd).unwrap().starts_with("anon_inode:[eventfd]") {
            // An eventfd's fdinfo shows its counter: give it a value no wake() ever writes.
            let mark: u64 = 0x6e65_7470_6f6c;
            // SAFETY: `fd` is the poller's open eventfd; the buffer is 8 readable bytes.
            let n = unsafe { libc::write(fd, (&mark as *const u64).cast(), 8) };
            assert_eq!(n, 8);
        }
        // A pipe's link names its inode, unique while it lives: nothing to add.
    }
    let before: Vec<_> = fds.iter().map(|&fd| fingerprint(fd).unwrap()).collect();
    drop(poller);
    for (fd, before) in fds.into_iter().zip(before) {
        assert_ne!(
            fingerprint(fd).as_ref(),
            Some(&before),
            "fd {fd} still open after drop"
        );
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs a no-op handler (without `SA_RESTART`) for `SIGUSR2`, so that signalling a thread
/// interrupts its `epoll_wait` with `EINTR` instead of killing the process.
fn install_sigusr2_handler() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler is an
    // `extern "C" fn(c_int)` that does nothing, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// Runs `wait(timeout)` on a thread, sends it `SIGUSR2` every 2 ms while it runs (up to
/// `signals` times), then calls `wake()` in case it is still waiting; returns its result.
fn wait_under_signals(timeout: Option<Duration>, signals: usize) -> (bool, usize) {
    install_sigusr2_handler();
    let poller = Arc::new(Poller::new().unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (poller, done) = (Arc::clone(&poller), Arc::clone(&done));
        thread::spawn(move || {
            let mut events = Events::new();
            let woken = poller.wait(&mut events, timeout).unwrap();
            done.store(true, Ordering::Release);
            (woken, events.len())
        })
    };
    for _ in 0..signals {
        if done.load(Ordering::Acquire) {
            break;
        }
        // SAFETY: the thread is not joined yet, so its pthread_t is valid; SIGUSR2 has a
        // handler installed above.
        assert_eq!(
            unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGUSR2) },
            0
        );
        thread::sleep(Duration::from_millis(2));
    }
    poller.wake().unwrap();
    waiter.join().unwrap()
}

#[test]
fn eintr_ends_a_finite_wait_with_no_events() {
    // Signalled for up to 10 s: it must return by EINTR, not by the final wake().
    assert_eq!(
        wait_under_signals(Some(Duration::from_secs(3600)), 5000),
        (false, 0)
    );
}

#[test]
fn eintr_does_not_end_an_infinite_wait() {
    // Still waiting after the signals: only the final wake() ends it.
    assert_eq!(wait_under_signals(None, 20), (true, 0));
}

//! Shared helpers for the `tcp_*` integration tests: a runtime per test, a watchdog that turns
//! a hang into a failure, connected pairs, error classifiers, and re-running one test in a child
//! process (for tests that change process-wide state: resource limits, signal dispositions).

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};
use netpoll::Runtime;

#[allow(unused_imports)]
pub use crate::util_proc::open_fds;

/// Runs `fut` on a fresh runtime with `workers` workers. The test fails if it has not finished
/// within `limit`: first through `netpoll::time::timeout`, and, should the runtime's timers be
/// broken, through a thread watchdog that aborts the process a little later.
#[track_caller]
pub fn run<F: Future>(workers: usize, limit: Duration, fut: F) -> F::Output {
    let rt = Runtime::builder().workers(workers).build().unwrap();
    let _dog = Watchdog::new(limit + Duration::from_secs(5));
    match rt.block_on(async { netpoll::time::timeout(limit, fut).await }) {
        Ok(out) => out,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

/// Aborts the process if it is still alive when the given time has passed (a hang that even
/// the runtime's timers cannot break must still end the test run).
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let name = std::thread::current().name().unwrap_or("?").to_string();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: test {name} hung for {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { done: Some(tx) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

/// Awaits `fut` for at most `limit`, failing the test with `what` on expiry.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match netpoll::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: still pending after {limit:?}"),
    }
}

/// Whether `fut` is still pending after `d` (the future is dropped either way).
pub async fn stays_pending<F: Future>(d: Duration, fut: F) -> bool {
    netpoll::time::timeout(d, fut).await.is_err()
}

/// A loopback listener.
pub fn listener() -> (TcpListener, SocketAddr) {
    let ln = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ln.local_addr().unwrap();
    (ln, addr)
}

/// A connected pair: (dialed side, accepted side).
pub async fn pair() -> (TcpStream, TcpStream) {
    let (ln, addr) = listener();
    let accept = netpoll::spawn(async move { ln.accept().await.map(|(c, _)| c) });
    let client = TcpStream::connect(addr).await.unwrap();
    let server = accept.await.unwrap().unwrap();
    (client, server)
}

/// Go's `isDeadlineExceeded`: a timeout, and not the closed error.
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && !netpoll::net::is_closed(e)
}

#[track_caller]
pub fn assert_timeout<T: std::fmt::Debug>(r: io::Result<T>) {
    match r {
        Err(e) if is_timeout(&e) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Go's closed-connection error: `is_closed`, and not a timeout.
#[track_caller]
pub fn assert_closed<T: std::fmt::Debug>(r: io::Result<T>) {
    match r {
        Err(e) if netpoll::net::is_closed(&e) && e.kind() != io::ErrorKind::TimedOut => {}
        other => panic!("expected the closed error, got {other:?}"),
    }
}

/// An instant `d` ago (Go's `time.Now().Add(-d)`).
pub fn ago(d: Duration) -> Instant {
    Instant::now().checked_sub(d).unwrap()
}

/// `getsockopt` of an `int` option.
pub fn sockopt_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes and `len` is the size of `v`; the fd is an
    // open socket borrowed from `fd`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
    v
}

/// `RLIMIT_NOFILE` as (soft, hard).
pub fn nofile_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is valid for writes.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(r, 0, "getrlimit: {}", io::Error::last_os_error());
    (lim.rlim_cur, lim.rlim_max)
}

/// Sets the soft `RLIMIT_NOFILE`.
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit();
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft descriptor limit to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let (soft, hard) = nofile_limit();
    if soft < hard {
        set_nofile_soft(hard).unwrap();
    }
    hard
}

/// The environment variable that marks a child process started by [`run_in_child`].
pub const CHILD_ENV: &str = "NETPOLL_TCP_TEST_CHILD";

/// The role this process plays for test `name`: `Some(arg)` when it is the child started by
/// [`run_in_child`] for that test.
pub fn child_role(name: &str) -> Option<String> {
    let v = std::env::var(CHILD_ENV).ok()?;
    let (test, arg) = v.split_once('=')?;
    (test == name).then(|| arg.to_string())
}

/// Re-runs test `name` of this test binary in a child process with `arg` as its
/// [`child_role`], and returns its exit status and output. The child is killed after `limit`.
pub fn run_in_child(name: &str, arg: &str, limit: Duration) -> (std::process::ExitStatus, String) {
    try_run_in_child(name, arg, limit, |_| {}).unwrap()
}

/// [`run_in_child`], with `configure` applied to the command first; fails if the child cannot
/// be started.
pub fn try_run_in_child(
    name: &str,
    arg: &str,
    limit: Duration,
    configure: impl FnOnce(&mut Command),
) -> io::Result<(std::process::ExitStatus, String)> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{name}={arg}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    configure(&mut cmd);
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    // Collect the output on a thread so that a chatty child never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: plain syscall on the child we started (it is not reaped yet: the thread
            // above is still waiting for it, so the pid cannot have been reused).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "child for {name} hung for {limit:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status, text))
}

//! Shared helpers for the UDP and Unix socket tests: a runtime with a watchdog, scratch
//! directories for socket files, and small checks.

#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[allow(unused_imports)]
pub use crate::util_proc::{cpu_time, open_fds};

/// Every test body runs under this timeout: a hang becomes a failure.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on a fresh two-worker runtime, failing if it takes longer than [`WATCHDOG`].
pub fn run<F: Future>(f: F) -> F::Output {
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        netpoll::time::timeout(WATCHDOG, f)
            .await
            .expect("test hung: watchdog expired")
    })
}

/// Awaits `f`, failing the test if it does not finish within `secs` seconds.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    netpoll::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("operation hung")
}

/// Whether `f` is still pending after `ms` milliseconds (it is then dropped).
pub async fn stays_pending<F: Future>(ms: u64, f: F) -> bool {
    netpoll::time::timeout(Duration::from_millis(ms), f)
        .await
        .is_err()
}

pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// A scratch directory for socket files, removed on drop. It lives under Cargo's per-target
/// temporary directory unless that path is too long for a `sun_path` (108 bytes).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "np-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
        if dir.as_os_str().len() > 80 {
            dir = std::env::temp_dir().join(&name);
        }
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (blocking the thread, at most 5 s) until `fd` has data to read, without consuming it.
pub fn wait_readable(fd: std::os::fd::RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    assert_eq!(n, 1, "no data arrived within 5 s");
}

/// Asserts that `fd` was created non-blocking and close-on-exec.
pub fn assert_nonblocking_cloexec(fd: std::os::fd::RawFd) {
    // SAFETY: F_GETFL/F_GETFD only read flags; the caller keeps `fd` open.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    assert!(fl >= 0 && fdfl >= 0, "fd {fd} is not open");
    assert!(fl & libc::O_NONBLOCK != 0, "fd {fd} is blocking");
    assert!(fdfl & libc::FD_CLOEXEC != 0, "fd {fd} is not close-on-exec");
}

pub fn assert_send<T: Send>(_: &T) {}
pub fn assert_send_sync<T: Send + Sync>() {}

//! Process-level helpers the other `util_*` modules share (each re-exports what its tests use):
//! counting this process's descriptors and threads, listing them for failure messages, its CPU
//! time, and a small deterministic random generator.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

/// The number of open file descriptors of this process (not counting the one used to list
/// them).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
        .saturating_sub(1)
}

/// The open descriptors of this process, with what they point to (for failure messages).
pub fn fd_list() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("{}->{}", e.file_name().to_string_lossy(), target)
        })
        .collect();
    fds.sort();
    fds
}

/// The number of threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// The number of threads once it is down to `expected`, or after a second. A thread that was
/// joined can stay listed for a moment after `join` returns: the kernel wakes the joiner when
/// the exiting thread clears its id, before it removes the thread from `/proc/self/task`. A
/// thread really left running stays counted.
pub fn threads_settled(expected: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(1);
    loop {
        let n = threads();
        if n <= expected || Instant::now() >= end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The names of this process's threads (for failure messages).
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .collect();
    names.sort();
    names
}

/// CPU time (user + system) used by this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(r, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A small xorshift generator: deterministic choices without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A duration in `0..max_us` microseconds.
    pub fn micros(&mut self, max_us: u64) -> Duration {
        Duration::from_micros(self.below(max_us.max(1)))
    }
}

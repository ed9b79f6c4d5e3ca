//! Helpers for the fault and race tests (`fault_*`, `race_*`), on top of `util_tcp`: a small
//! random generator, id-tagged frames, the set of errors a faulty peer or a racing close may
//! legitimately produce, thread counts, and a child process spoken to over its stdin/stdout.
//!
//! Each test binary includes this module with `mod util_fault;` and uses part of it.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[allow(unused_imports)]
pub use crate::util_proc::{fd_list, thread_names, threads, threads_settled, Rng};

/// The length of a [`frame`].
pub const FRAME: usize = 16;

/// A message that names its connection and its place in it: `id`, `seq`, and a check word
/// derived from both, so that a frame of one connection read on another, or a torn frame, is
/// caught.
pub fn frame(id: u32, seq: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..4].copy_from_slice(&id.to_le_bytes());
    f[4..8].copy_from_slice(&seq.to_le_bytes());
    f[8..16].copy_from_slice(&check_word(id, seq).to_le_bytes());
    f
}

fn check_word(id: u32, seq: u32) -> u64 {
    ((id as u64) << 32 | seq as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5851_F42D_4C95_7F2D
}

/// Parses a [`frame`]: `(id, seq)`, or `None` if its check word does not match.
pub fn parse_frame(f: &[u8; FRAME]) -> Option<(u32, u32)> {
    let id = u32::from_le_bytes(f[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(f[4..8].try_into().unwrap());
    let check = u64::from_le_bytes(f[8..16].try_into().unwrap());
    (check == check_word(id, seq)).then_some((id, seq))
}

/// Byte `i` of the test streams: a sequence with period 251 (a prime), so that a lost,
/// repeated or reordered chunk of any power-of-two size shows.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// `len` bytes of the pattern starting at stream offset `from`.
pub fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(pattern_byte).collect()
}

/// Whether `buf` is the pattern starting at stream offset `from`.
pub fn is_pattern(from: usize, buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .all(|(k, &b)| b == pattern_byte(from + k))
}

/// How an operation on a socket whose peer misbehaves, or that another task closes, may end
/// without anything being wrong (DESIGN §3, the module docs of `netpoll::net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Data, or a successful non-I/O call.
    Done,
    /// `Ok(0)` from a read: the peer's orderly close or our own `shutdown(Read)`.
    Eof,
    /// The "use of closed network connection" error: someone closed this socket.
    Closed,
    /// A deadline passed.
    TimedOut,
    /// The peer reset the connection.
    Reset,
    /// Writing to a connection whose write side is shut down (ours, or gone after a reset).
    BrokenPipe,
    /// `read_exact` met EOF early.
    UnexpectedEof,
}

/// Classifies an error into the documented [`Outcome`]s; anything else is `Err` with the error.
pub fn outcome(e: &io::Error) -> Result<Outcome, String> {
    if netpoll::net::is_closed(e) {
        return Ok(Outcome::Closed);
    }
    match e.kind() {
        io::ErrorKind::TimedOut => Ok(Outcome::TimedOut),
        io::ErrorKind::ConnectionReset => Ok(Outcome::Reset),
        io::ErrorKind::BrokenPipe => Ok(Outcome::BrokenPipe),
        io::ErrorKind::UnexpectedEof => Ok(Outcome::UnexpectedEof),
        _ => Err(format!("undocumented error: {e:?}")),
    }
}

/// [`outcome`] of a read's result.
pub fn read_outcome(r: &io::Result<usize>) -> Result<Outcome, String> {
    match r {
        Ok(0) => Ok(Outcome::Eof),
        Ok(_) => Ok(Outcome::Done),
        Err(e) => outcome(e),
    }
}

/// [`outcome`] of any other result.
pub fn op_outcome<T>(r: &io::Result<T>) -> Result<Outcome, String> {
    match r {
        Ok(_) => Ok(Outcome::Done),
        Err(e) => outcome(e),
    }
}

/// A descriptor limit (`RLIMIT_NOFILE`, which bounds descriptor *numbers*) that leaves about
/// `free` numbers available to this process: the lowest free numbers are counted, holes
/// included, since the kernel always hands out the lowest one. (One more may be free: the
/// descriptor used to list them.)
pub fn limit_leaving_free(free: usize) -> u64 {
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut left = free;
    let mut n = 0u64;
    while left > 0 {
        if !open.contains(&n) {
            left -= 1;
        }
        n += 1;
    }
    n
}

/// The environment variable that gives a child started by [`Conversation::start`] its role.
pub const ROLE_ENV: &str = "NETPOLL_FAULT_TEST_CHILD";

/// The role this process plays for test `name`, if it is a child started for that test.
pub fn role(name: &str) -> Option<String> {
    let v = std::env::var(ROLE_ENV).ok()?;
    let (test, arg) = v.split_once('=')?;
    (test == name).then(|| arg.to_string())
}

/// A child process (this test binary, re-run with one test selected and a role) that the
/// parent talks to line by line: the child prints `key=value` lines on stdout and reads
/// commands on stdin. The child is killed when the conversation is dropped.
pub struct Conversation {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line the child printed so far (for failure messages).
    pub transcript: Vec<String>,
}

impl Conversation {
    /// Starts test `name` of this binary in a child with role `role`; `configure` may add to
    /// the command (e.g. a `pre_exec` hook).
    pub fn start(name: &str, role: &str, configure: impl FnOnce(&mut Command)) -> Conversation {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, format!("{name}={role}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start the child");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // A reader thread, so that waiting for a line can time out.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Conversation {
            stdin: child.stdin.take(),
            child,
            lines,
            transcript: Vec::new(),
        }
    }

    /// Waits (at most `limit`) for a line `key=value` and returns the value; panics on timeout
    /// or if the child's output ends first.
    #[track_caller]
    pub fn expect(&mut self, key: &str, limit: Duration) -> String {
        let end = std::time::Instant::now() + limit;
        let prefix = format!("{key}=");
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    // The test harness may have started the line ("test name ... ").
                    if let Some(pos) = line.find(&prefix) {
                        if pos == 0 || line[..pos].ends_with(' ') {
                            return line[pos + prefix.len()..].to_string();
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the child printed no `{key}=` line within {limit:?}; it said:\n{}",
                    self.transcript.join("\n")
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "the child ended ({status:?}) before printing `{key}=`; it said:\n{}",
                        self.transcript.join("\n")
                    )
                }
            }
        }
    }

    /// Sends one line to the child.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin and waits (at most `limit`) for it to exit successfully.
    #[track_caller]
    pub fn finish(mut self, limit: Duration) {
        drop(self.stdin.take());
        let end = std::time::Instant::now() + limit;
        loop {
            // Keep the transcript complete for the failure message.
            while let Ok(line) = self.lines.try_recv() {
                self.transcript.push(line);
            }
            match self.child.try_wait().expect("wait for the child") {
                Some(status) => {
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                        self.transcript.push(line);
                    }
                    assert!(
                        status.success(),
                        "the child failed ({status}); it said:\n{}",
                        self.transcript.join("\n")
                    );
                    return;
                }
                None if std::time::Instant::now() >= end => {
                    panic!(
                        "the child did not exit within {limit:?}; it said:\n{}",
                        self.transcript.join("\n")
                    )
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        // Kills a child left running by a failing test; harmless if it has exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child: prints `key=value` on its own line, flushed at once.
pub fn say(key: &str, value: impl std::fmt::Display) {
    let mut out = io::stdout().lock();
    writeln!(out, "{key}={value}").unwrap();
    out.flush().unwrap();
}

/// In a child: reads the next command line from stdin (`None` at end of input).
pub fn hear() -> Option<String> {
    let mut line = String::new();
    match io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// A loopback address whose connects hang: a listener with backlog 0 whose accept queue is
/// already full, so the kernel drops further SYNs (and a client would retransmit for minutes).
/// Returns what must stay alive while the address is used.
pub fn black_hole() -> (
    std::net::SocketAddr,
    socket2::Socket,
    Vec<std::net::TcpStream>,
) {
    use socket2::{Domain, Socket, Type};
    let ln = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    ln.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    ln.listen(0).unwrap();
    let addr = ln.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (addr, ln, fill),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled up");
}

/// Panics whose message contains this are part of the test: [`quiet_deliberate_panics`] keeps
/// them out of the output.
pub const DELIBERATE: &str = "deliberate panic";

/// Installs a panic hook that prints every panic but the deliberate ones.
pub fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if !msg.contains(DELIBERATE) {
            default(info);
        }
    }));
}

//! The servers under test, one module per family, and how the harness builds, starts and stops
//! them.
//!
//! Every server reads `ADDR` and `WORKERS` (and echo `DEADLINE_MS`) from the environment and
//! stops on SIGTERM (the default action: none of them needs to clean up). netpoll's servers
//! are the crate's examples (hyper's needs the crate's `hyper` feature); tokio's and the
//! floor run inside this binary (`netpoll-bench serve ...`); Go's are built from `bench/go/`.
//! hyper is served by netpoll and tokio only: the floor and Go have no hyper.

pub mod floor;
pub mod go;
pub mod tokio;

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// A server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Netpoll,
    Tokio,
    Go,
    Floor,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Netpoll => "netpoll",
            Family::Tokio => "tokio",
            Family::Go => "go",
            Family::Floor => "floor",
        }
    }
}

/// What a server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    Echo,
    /// HTTP/1.1 plaintext, the same hand-written server logic everywhere.
    Http,
    /// HTTP/1.1 plaintext served by hyper 1.x (netpoll and tokio only).
    Hyper,
}

impl App {
    /// The name on the command line (`--app`).
    pub fn name(self) -> &'static str {
        match self {
            App::Echo => "echo",
            App::Http => "http",
            App::Hyper => "hyper",
        }
    }

    /// Whether `family` has a server for this app.
    pub fn served_by(self, family: Family) -> bool {
        match self {
            App::Echo | App::Http => true,
            App::Hyper => matches!(family, Family::Netpoll | Family::Tokio),
        }
    }
}

/// A server as a scenario runs it: a family, optionally moving its read deadline on every
/// request (echo's `DEADLINE_MS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    pub family: Family,
    pub deadline: bool,
}

impl Variant {
    pub const fn plain(family: Family) -> Variant {
        Variant {
            family,
            deadline: false,
        }
    }

    pub const fn with_deadline(family: Family) -> Variant {
        Variant {
            family,
            deadline: true,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.family.name())?;
        if self.deadline {
            f.write_str("+deadline")?;
        }
        Ok(())
    }
}

/// The deadline the deadline-churn variants move forward on every read: long enough never to
/// expire during a run.
const CHURN_DEADLINE_MS: u64 = 10_000;

/// The environment of a `netpoll-bench serve` process.
#[derive(Clone, Copy, Debug)]
pub struct ServeEnv {
    pub addr: SocketAddr,
    pub workers: usize,
    pub deadline: Option<Duration>,
}

impl ServeEnv {
    /// Reads `ADDR`, `WORKERS` and `DEADLINE_MS` with the examples' defaults.
    pub fn from_env() -> io::Result<ServeEnv> {
        let invalid = |name: &str, v: &str| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name}={v:?}"))
        };
        let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:7000".into());
        let addr = addr.parse().map_err(|_| invalid("ADDR", &addr))?;
        let workers = match std::env::var("WORKERS") {
            Ok(v) => v.parse().map_err(|_| invalid("WORKERS", &v))?,
            Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let deadline = match std::env::var("DEADLINE_MS") {
            Ok(v) => Some(Duration::from_millis(
                v.parse().map_err(|_| invalid("DEADLINE_MS", &v))?,
            )),
            Err(_) => None,
        };
        Ok(ServeEnv {
            addr,
            workers,
            deadline,
        })
    }
}

/// The servers that run inside this binary, for `netpoll-bench serve`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum InProcess {
    TokioEcho,
    TokioHttp,
    TokioHyper,
    FloorEcho,
    FloorHttp,
}

/// The floor's and tokio's listener: non-blocking, with the system's maximum backlog (the
/// kernel caps 4096 at `net.core.somaxconn`), as netpoll and Go listen. tokio's own
/// `TcpListener::bind` uses a backlog of 128, which overflows at 5,000 connections while the
/// accept loop catches up; each dropped handshake then costs its client a 1 s SYN
/// retransmission (connecting 5,000 took 13.5 s against 0.35 s for netpoll).
fn listen(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `netpoll-bench serve KIND`: runs until killed.
pub fn serve(kind: InProcess) -> io::Result<()> {
    let env = ServeEnv::from_env()?;
    match kind {
        InProcess::TokioEcho => tokio::run(App::Echo, env),
        InProcess::TokioHttp => tokio::run(App::Http, env),
        InProcess::TokioHyper => tokio::run(App::Hyper, env),
        InProcess::FloorEcho => floor::run(App::Echo, env),
        InProcess::FloorHttp => floor::run(App::Http, env),
    }
}

/// Where the server binaries are, once built.
pub struct Binaries {
    /// This binary (tokio and floor servers, loaders).
    pub me: PathBuf,
    pub netpoll_echo: PathBuf,
    pub netpoll_http: PathBuf,
    /// `examples/hyper_server.rs` (built with `--features hyper`).
    pub netpoll_hyper: PathBuf,
    /// `None` when Go is not installed.
    pub go: Option<PathBuf>,
    /// Where servers' stderr goes.
    pub logs: PathBuf,
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

impl Binaries {
    /// Builds netpoll's examples (release, with the `hyper` feature for `hyper_server`) and, if `with_go` and Go is installed, the Go
    /// servers. `build: false` uses what is already built.
    pub fn prepare(build: bool, with_go: bool) -> io::Result<Binaries> {
        let work = target_dir().join("netpoll-bench");
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs)?;
        if build {
            eprintln!(
                "building netpoll's examples \
                 (cargo build --release --examples -p netpoll --features hyper)"
            );
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--examples",
                    "-p",
                    "netpoll",
                    "--features",
                    "hyper",
                ])
                .current_dir(workspace_root())
                .status()?;
            if !status.success() {
                return Err(io::Error::other(format!("building the examples: {status}")));
            }
        }
        let examples = target_dir().join("release").join("examples");
        let go = if with_go {
            go::build(&work, build)?
        } else {
            None
        };
        let bins = Binaries {
            me: std::env::current_exe()?,
            netpoll_echo: examples.join("echo"),
            netpoll_http: examples.join("http"),
            netpoll_hyper: examples.join("hyper_server"),
            go,
            logs,
        };
        for path in [&bins.netpoll_echo, &bins.netpoll_http, &bins.netpoll_hyper] {
            if !path.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is missing: run without --no-build", path.display()),
                ));
            }
        }
        Ok(bins)
    }

    fn command(&self, variant: Variant, app: App) -> io::Result<Command> {
        if !app.served_by(variant.family) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} has no {} server", variant.family.name(), app.name()),
            ));
        }
        let mut cmd;
        match variant.family {
            Family::Netpoll => {
                cmd = Command::new(match app {
                    App::Echo => &self.netpoll_echo,
                    App::Http => &self.netpoll_http,
                    App::Hyper => &self.netpoll_hyper,
                });
            }
            Family::Tokio | Family::Floor => {
                let kind = match (variant.family, app) {
                    (Family::Tokio, App::Echo) => "tokio-echo",
                    (Family::Tokio, App::Http) => "tokio-http",
                    (Family::Tokio, App::Hyper) => "tokio-hyper",
                    (_, App::Echo) => "floor-echo",
                    // Refused above: the floor has no hyper.
                    (_, App::Http | App::Hyper) => "floor-http",
                };
                cmd = Command::new(&self.me);
                cmd.args(["serve", kind]);
            }
            Family::Go => {
                let go = self.go.as_ref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the Go servers are not built")
                })?;
                cmd = Command::new(go);
                // Refused above: Go has no hyper.
                cmd.arg(match app {
                    App::Echo => "echo",
                    App::Http | App::Hyper => "http",
                });
            }
        }
        Ok(cmd)
    }
}

/// A tool the server runs under, counting its system calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracer {
    /// `perf stat -e raw_syscalls:sys_enter`: exact counts at little cost; also the tracepoints
    /// of the calls that wait for readiness that this kernel has (`waits`; all or none).
    Perf { waits: bool },
    /// `strace -c -f`: exact counts per call, but slows every system call down.
    Strace,
}

/// The `perf` event for every system call.
const PERF_ALL: &str = "raw_syscalls:sys_enter";
/// The `perf` events for the calls that wait for readiness. (The floor calls `epoll_wait(3)`,
/// which this machine's glibc makes an `epoll_pwait2`.)
const PERF_WAITS: [&str; 3] = [
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_epoll_pwait2",
];
/// The calls that wait for readiness, by name in `strace -c`'s table.
const WAIT_CALLS: [&str; 3] = ["epoll_wait", "epoll_pwait", "epoll_pwait2"];

/// A traced server's system calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallCount {
    pub total: u64,
    /// Of which `epoll_wait`/`epoll_pwait`/`epoll_pwait2`, when the tool tells them apart.
    pub waits: Option<u64>,
}

impl Tracer {
    /// The best tool that works here, if any.
    pub fn detect() -> Option<Tracer> {
        let works = |cmd: &mut Command| {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let perf = |t: Tracer| {
            let mut cmd = Command::new("perf");
            cmd.args([
                "stat",
                "-x,",
                "-e",
                &t.perf_events(),
                "-o",
                "/dev/null",
                "true",
            ]);
            works(&mut cmd).then_some(t)
        };
        perf(Tracer::Perf { waits: true })
            .or_else(|| perf(Tracer::Perf { waits: false }))
            .or_else(|| {
                works(Command::new("strace").args(["-c", "-o", "/dev/null", "true"]))
                    .then_some(Tracer::Strace)
            })
    }

    pub fn name(&self) -> String {
        match self {
            Tracer::Perf { .. } => format!("perf stat -e {}", self.perf_events()),
            Tracer::Strace => "strace -c -f".into(),
        }
    }

    fn perf_events(&self) -> String {
        match self {
            Tracer::Perf { waits: true } => [PERF_ALL]
                .iter()
                .chain(&PERF_WAITS)
                .copied()
                .collect::<Vec<_>>()
                .join(","),
            _ => PERF_ALL.into(),
        }
    }

    fn wrap(&self, inner: &Command, out: &Path) -> Command {
        let mut cmd = match self {
            Tracer::Perf { .. } => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x,", "-e", &self.perf_events(), "-o"]);
                c
            }
            Tracer::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-c", "-o"]);
                c
            }
        };
        cmd.arg(out).arg("--").arg(inner.get_program());
        cmd.args(inner.get_args());
        cmd
    }

    /// The system calls in the tool's report; `None` if it holds no total.
    fn parse(&self, report: &str) -> Option<SyscallCount> {
        match self {
            // "<count>,,<event>,...", one line per event.
            Tracer::Perf { waits } => {
                let count = |event: &str| {
                    report.lines().find_map(|l| {
                        let mut fields = l.split(',');
                        let n = fields.next()?;
                        if fields.nth(1)? != event {
                            return None;
                        }
                        n.trim().parse::<u64>().ok()
                    })
                };
                Some(SyscallCount {
                    total: count(PERF_ALL)?,
                    waits: waits
                        .then(|| PERF_WAITS.iter().map(|e| count(e)).sum::<Option<u64>>())
                        .flatten(),
                })
            }
            // "% time  seconds  usecs/call  calls  [errors]  syscall": calls is the fourth
            // column, the call's name (or "total") the last.
            Tracer::Strace => {
                let mut total = None;
                let mut waits = 0;
                for l in report.lines() {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let (Some(name), Some(calls)) = (cols.last(), cols.get(3)) else {
                        continue;
                    };
                    let Ok(calls) = calls.parse::<u64>() else {
                        continue;
                    };
                    if *name == "total" {
                        total = Some(calls);
                    } else if WAIT_CALLS.contains(name) {
                        waits += calls;
                    }
                }
                Some(SyscallCount {
                    total: total?,
                    waits: Some(waits),
                })
            }
        }
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Launch {
    pub variant: Variant,
    pub app: App,
    pub workers: usize,
    /// Pin the server (all its threads) to these CPUs.
    pub cpus: Option<Vec<usize>>,
    pub tracer: Option<Tracer>,
}

/// A started server; stop it with [`Running::stop`] (dropping it kills it too).
pub struct Running {
    child: Child,
    /// The server process itself (the tracer's child when traced).
    pub pid: u32,
    pub addr: SocketAddr,
    trace: Option<(Tracer, PathBuf)>,
}

/// A free port on the loopback interface (a fresh one per run, so that no run meets the
/// previous one's sockets).
fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

impl Running {
    /// Starts a server and waits until it accepts connections.
    pub fn start(bins: &Binaries, launch: &Launch) -> io::Result<Running> {
        let addr = free_addr()?;
        let inner = bins.command(launch.variant, launch.app)?;
        let trace = launch.tracer.clone().map(|t| {
            let out = bins
                .logs
                .join(format!("{}-{:?}.syscalls", launch.variant, launch.app));
            let _ = std::fs::remove_file(&out);
            (t, out)
        });
        let mut cmd = match &trace {
            Some((tracer, out)) => tracer.wrap(&inner, out),
            None => inner,
        };
        cmd.env("ADDR", addr.to_string())
            .env("WORKERS", launch.workers.to_string());
        if launch.variant.deadline {
            cmd.env("DEADLINE_MS", CHURN_DEADLINE_MS.to_string());
        } else {
            cmd.env_remove("DEADLINE_MS");
        }
        let log = File::options().create(true).append(true).open(
            bins.logs
                .join(format!("{}-{:?}.log", launch.variant, launch.app)),
        )?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        if let Some(cpus) = &launch.cpus {
            sys::pin_command(&mut cmd, cpus);
        }
        sys::die_with_parent(&mut cmd);
        let child = cmd.spawn()?;
        let mut running = Running {
            pid: child.id(),
            child,
            addr,
            trace,
        };
        running.wait_ready(Duration::from_secs(15))?;
        Ok(running)
    }

    fn wait_ready(&mut self, limit: Duration) -> io::Result<()> {
        let give_up = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("the server exited: {status}")));
            }
            if self.trace.is_some() && self.pid == self.child.id() {
                // The traced server is the tracer's child; find it first.
                if let Some(&pid) = sys::children(self.child.id()).first() {
                    self.pid = pid;
                }
            } else if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server did not start listening",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and returns the system calls it made
    /// if it was traced.
    pub fn stop(mut self) -> io::Result<Option<SyscallCount>> {
        let _ = sys::kill(self.pid, libc::SIGTERM);
        let give_up = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > give_up {
                let _ = sys::kill(self.pid, libc::SIGKILL);
                let _ = self.child.kill();
                self.child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let Some((tracer, out)) = self.trace.take() else {
            return Ok(None);
        };
        let report = std::fs::read_to_string(&out)?;
        tracer
            .parse(&report)
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("no system call count in {}", out.display())))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SyscallCount, Tracer};

    #[test]
    fn perf_report_gives_the_total_and_the_epoll_waits() {
        let report = "# started on Wed Nov 25 16:50:00 2026\n\n\
            439120,,raw_syscalls:sys_enter,4001234567,100.00,,\n\
            10012,,syscalls:sys_enter_epoll_wait,4001234567,100.00,,\n\
            0,,syscalls:sys_enter_epoll_pwait,4001234567,100.00,,\n\
            7,,syscalls:sys_enter_epoll_pwait2,4001234567,100.00,,\n";
        assert_eq!(
            Tracer::Perf { waits: true }.parse(report),
            Some(SyscallCount {
                total: 439120,
                waits: Some(10019)
            })
        );
        assert_eq!(
            Tracer::Perf { waits: false }.parse(report),
            Some(SyscallCount {
                total: 439120,
                waits: None
            })
        );
        let uncounted = "<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n";
        assert_eq!(Tracer::Perf { waits: false }.parse(uncounted), None);
    }

    #[test]
    fn strace_report_gives_the_total_and_the_epoll_waits() {
        let report = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 48.91    0.120000           0    219932           sendto
 47.50    0.116000           0    219932         3 recvfrom
  3.00    0.007000           0      7239           epoll_wait
  0.59    0.001000           1       100           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    0.244000           0    447203         3 total
";
        assert_eq!(
            Tracer::Strace.parse(report),
            Some(SyscallCount {
                total: 447203,
                waits: Some(7339)
            })
        );
        assert_eq!(Tracer::Strace.parse("strace: exec failed\n"), None);
    }
}

//! Runs scenarios: servers interleaved (A B C A B C …), one fresh server process per run, a
//! progress line per run with the time left.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::load::{self, idle, LoadArgs, LoadResult};
use crate::scenario::{Kind, Scenario};
use crate::server::{Binaries, Family, Launch, Running, Tracer, Variant};
use crate::sys;

/// How a whole run is done.
#[derive(Clone, Debug)]
pub struct Plan {
    pub repeats: usize,
    pub warmup: f64,
    pub duration: f64,
    pub families: Vec<Family>,
    /// Counts system calls in the syscall scenario; `None` skips it.
    pub tracer: Option<Tracer>,
    /// Seconds to wait, at most, for a quiet machine before each run.
    pub wait_quiet: f64,
}

/// One run of one server in one scenario.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Index into the scenario list of the run.
    pub scenario: usize,
    pub variant: Variant,
    pub repeat: usize,
    pub load: Option<LoadResult>,
    /// Idle memory: server RSS growth per connection, bytes.
    pub mem_per_conn: Option<f64>,
    pub syscalls_per_req: Option<f64>,
    /// Of those, the `epoll_wait` family's (when the tracer tells them apart).
    pub waits_per_req: Option<f64>,
    pub error: Option<String>,
}

/// The header of the raw dump (one line per run).
pub const RAW_HEADER: &str =
    "scenario\tserver\trepeat\tmem_per_conn_bytes\tsyscalls_per_req\tepoll_waits_per_req\terror\tloader_result";

impl Sample {
    /// This run as a line of the raw dump: its scenario, server, repeat, the harness's own
    /// measurements and the loader's RESULT line as it printed it.
    pub fn raw_line(&self, scenario: &Scenario) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            scenario.id,
            self.variant,
            self.repeat,
            opt(self.mem_per_conn),
            opt(self.syscalls_per_req),
            opt(self.waits_per_req),
            self.error
                .as_deref()
                .unwrap_or("")
                .replace(['\t', '\n'], " "),
            self.load.as_ref().map_or(String::new(), |l| l.to_string())
        )
    }
}

/// Runs every scenario and returns the samples in run order; each run's raw line goes to `raw`
/// as soon as it ends, so that an interrupted run keeps what it measured.
pub fn run_all(
    bins: &Binaries,
    scenarios: &[Scenario],
    plan: &Plan,
    raw: &mut impl Write,
) -> Vec<Sample> {
    let _ = writeln!(raw, "{RAW_HEADER}");
    let mut jobs = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        if matches!(s.kind, Kind::Syscalls { .. }) && plan.tracer.is_none() {
            eprintln!(
                "note: neither perf nor strace works here: {} is skipped",
                s.id
            );
            continue;
        }
        let variants = s.variants(&plan.families);
        for repeat in 0..s.repeats(plan.repeats) {
            for &variant in &variants {
                jobs.push((si, variant, repeat));
            }
        }
    }
    let estimate = |si: usize| scenarios[si].estimate_secs(plan.warmup, plan.duration);
    let mut left: f64 = jobs.iter().map(|&(si, ..)| estimate(si)).sum();
    let (mut spent_estimated, started) = (0.0, Instant::now());
    let mut samples = Vec::with_capacity(jobs.len());
    for (n, &(si, variant, repeat)) in jobs.iter().enumerate() {
        let s = &scenarios[si];
        // Scale what is left by how the estimates have held up so far.
        let pace = if spent_estimated > 0.0 {
            started.elapsed().as_secs_f64() / spent_estimated
        } else {
            1.0
        };
        eprintln!(
            "[{:>3}/{}] {} · {} · run {}/{} · about {} left",
            n + 1,
            jobs.len(),
            s.title,
            variant,
            repeat + 1,
            s.repeats(plan.repeats),
            format_duration(left * pace)
        );
        if plan.wait_quiet > 0.0 {
            wait_quiet(Duration::from_secs_f64(plan.wait_quiet));
        }
        let sample = run_one(bins, s, si, variant, repeat, plan).unwrap_or_else(|e| {
            eprintln!("  failed: {e}");
            Sample {
                scenario: si,
                variant,
                repeat,
                load: None,
                mem_per_conn: None,
                syscalls_per_req: None,
                waits_per_req: None,
                error: Some(e.to_string()),
            }
        });
        if let Some(e) = sample.load.as_ref().filter(|l| l.errors > 0) {
            eprintln!("  warning: {} connections failed", e.errors);
        }
        let _ = writeln!(raw, "{}", sample.raw_line(s));
        let _ = raw.flush();
        samples.push(sample);
        left -= estimate(si);
        spent_estimated += estimate(si);
    }
    eprintln!(
        "done in {}",
        format_duration(started.elapsed().as_secs_f64())
    );
    samples
}

fn run_one(
    bins: &Binaries,
    s: &Scenario,
    si: usize,
    variant: Variant,
    repeat: usize,
    plan: &Plan,
) -> io::Result<Sample> {
    let launch = Launch {
        variant,
        app: s.app,
        workers: s.placement.workers(),
        cpus: s.placement.server_cpus(),
        tracer: match s.kind {
            Kind::Syscalls { .. } => plan.tracer.clone(),
            _ => None,
        },
    };
    let server = Running::start(bins, &launch)?;
    let mut sample = Sample {
        scenario: si,
        variant,
        repeat,
        load: None,
        mem_per_conn: None,
        syscalls_per_req: None,
        waits_per_req: None,
        error: None,
    };
    let loader =
        |conns: usize, size: usize, inflight: usize, rate: Option<f64>, warmup: f64| LoadArgs {
            addr: server.addr,
            app: s.app,
            conns,
            size: size.max(1),
            inflight,
            rate,
            duration: plan.duration,
            warmup,
            threads: Some(s.placement.loader_threads()),
            cpus: s.placement.loader_cpus(),
            server_pid: Some(server.pid),
            latency_log: None,
        };
    let args = match s.kind {
        Kind::Closed {
            conns,
            size,
            inflight,
        } => Some(loader(conns, size, inflight, None, plan.warmup)),
        Kind::DeadlineChurn { conns, size } => Some(loader(conns, size, 1, None, plan.warmup)),
        Kind::Open { conns, size, rate } => Some(loader(conns, size, 1, Some(rate), plan.warmup)),
        // Every request counts: the system calls are counted over the whole server life.
        Kind::Syscalls { conns, size } => Some(loader(conns, size, 1, None, 0.0)),
        Kind::IdleMemory { .. } => None,
    };
    if let Some(args) = args {
        let result = load::run_process(&bins.me, &args);
        let syscalls = server.stop()?;
        let result = result?;
        let per_req = |n: u64| n as f64 / result.total.max(1) as f64;
        sample.syscalls_per_req = syscalls.map(|c| per_req(c.total));
        sample.waits_per_req = syscalls.and_then(|c| c.waits).map(per_req);
        sample.load = Some(result);
    } else if let Kind::IdleMemory { conns } = s.kind {
        sample.mem_per_conn = Some(idle_memory(&server, conns)?);
        server.stop()?;
    }
    Ok(sample)
}

/// Server RSS growth per connection once `conns` connections have each made one round trip
/// and sit idle.
fn idle_memory(server: &Running, conns: usize) -> io::Result<f64> {
    std::thread::sleep(Duration::from_millis(200));
    let before = sys::rss_bytes(server.pid)?;
    let held = idle::open(server.addr, conns, Duration::from_secs(120))?;
    // Let every handler settle into its read.
    std::thread::sleep(Duration::from_millis(500));
    let after = sys::rss_bytes(server.pid)?;
    drop(held);
    Ok(after.saturating_sub(before) as f64 / conns as f64)
}

/// Waits until the machine's processes use under 10% of a core over half a second (nothing of
/// ours runs between runs), or until `limit`.
fn wait_quiet(limit: Duration) {
    let give_up = Instant::now() + limit;
    let mut said = false;
    loop {
        let (Ok(a), t) = (sys::machine_busy(), Instant::now()) else {
            return;
        };
        std::thread::sleep(Duration::from_millis(500));
        let Ok(b) = sys::machine_busy() else {
            return;
        };
        let load = (b - a).as_secs_f64() / t.elapsed().as_secs_f64();
        if load < 0.1 || Instant::now() >= give_up {
            return;
        }
        if !said {
            eprintln!(
                "  waiting for a quiet machine (other load {:.0}%)",
                load * 100.0
            );
            said = true;
        }
    }
}

pub fn format_duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

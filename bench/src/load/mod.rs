//! The load generators. They run in their own process (`netpoll-bench load ...`), on plain
//! epoll loops — not on any runtime under test — and report their own CPU use so that a run
//! limited by the loader shows as such.
//!
//! * closed loop (`closed.rs`): echo or HTTP, `--inflight` requests outstanding per
//!   connection (HTTP: the pipeline depth);
//! * open loop (`open.rs`, with `--rate`): a fixed request rate, latency from the scheduled
//!   send time;
//! * idle connections (`idle.rs`), for the memory scenario, driven by the harness itself.
//!
//! The result is one line on stdout, `RESULT key=value ...`, that the harness parses.

pub mod closed;
pub mod conn;
pub mod idle;
pub mod open;

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn::{Conn, ConnSet, Echo, Http, ParsedHttp, Protocol, Stats, Window};

use crate::server::App;
use crate::sys;

/// Options of `netpoll-bench load`.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// What the server speaks.
    #[arg(long, value_enum, default_value = "echo")]
    pub app: App,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Echo message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Requests in flight per connection (closed loop; for HTTP, the pipeline depth).
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Open loop: total requests per second, on a fixed schedule. Without it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Loader threads (default: one per CPU in --cpus, else one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin the loader to these CPUs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Also measure the CPU time this process (the server) uses during the window.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write every response of the window to this file, one line each: arrival time (µs after
    /// the window began), latency (µs) and connection, in arrival order. For finding out what
    /// makes a tail: stalls that hit every connection at once line up in time.
    #[arg(long)]
    pub latency_log: Option<PathBuf>,
}

impl LoadArgs {
    /// The command-line form, for running the loader as a child process.
    fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            format!("--addr={}", self.addr),
            format!("--app={}", self.app.name()),
            format!("--conns={}", self.conns),
            format!("--size={}", self.size),
            format!("--inflight={}", self.inflight),
            format!("--duration={}", self.duration),
            format!("--warmup={}", self.warmup),
        ];
        v.extend(self.rate.map(|r| format!("--rate={r}")));
        v.extend(self.threads.map(|t| format!("--threads={t}")));
        if !self.cpus.is_empty() {
            let cpus: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
            v.push(format!("--cpus={}", cpus.join(",")));
        }
        v.extend(self.server_pid.map(|p| format!("--server-pid={p}")));
        v.extend(
            self.latency_log
                .as_ref()
                .map(|p| format!("--latency-log={}", p.display())),
        );
        v
    }
}

/// What one loader run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadResult {
    /// Responses inside the measured window.
    pub requests: u64,
    /// Responses including the warm-up.
    pub total: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Loader CPU time (all threads) during the window, in seconds.
    pub loader_cpu_s: f64,
    /// Server CPU time during the window, in seconds (negative: not measured).
    pub server_cpu_s: f64,
    /// CPU time the whole machine was busy during the window (every process), in seconds:
    /// what is neither loader nor server is other load, i.e. noise.
    pub machine_cpu_s: f64,
    /// Connections that failed.
    pub errors: u64,
    /// Open loop: mean delay between a request's scheduled and actual send time.
    pub send_lag_us: f64,
    /// Fairness: responses of the least-served connection ÷ the mean per connection, in the
    /// window (1 = perfectly even; 0 = a connection starved).
    pub slowest_conn: f64,
}

impl fmt::Display for LoadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RESULT requests={} total={} seconds={:.6} rps={:.1} p50_us={:.1} p90_us={:.1} \
             p99_us={:.1} p999_us={:.1} max_us={:.1} loader_cpu_s={:.6} server_cpu_s={:.6} \
             machine_cpu_s={:.6} errors={} send_lag_us={:.1} slowest_conn={:.4}",
            self.requests,
            self.total,
            self.seconds,
            self.rps,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.loader_cpu_s,
            self.server_cpu_s,
            self.machine_cpu_s,
            self.errors,
            self.send_lag_us,
            self.slowest_conn
        )
    }
}

impl std::str::FromStr for LoadResult {
    type Err = io::Error;

    fn from_str(line: &str) -> io::Result<LoadResult> {
        let bad = || io::Error::other(format!("malformed loader result: {line}"));
        let body = line.strip_prefix("RESULT ").ok_or_else(bad)?;
        let mut r = LoadResult::default();
        for pair in body.split_whitespace() {
            let (key, value) = pair.split_once('=').ok_or_else(bad)?;
            let num: f64 = value.parse().map_err(|_| bad())?;
            match key {
                "requests" => r.requests = num as u64,
                "total" => r.total = num as u64,
                "seconds" => r.seconds = num,
                "rps" => r.rps = num,
                "p50_us" => r.p50_us = num,
                "p90_us" => r.p90_us = num,
                "p99_us" => r.p99_us = num,
                "p999_us" => r.p999_us = num,
                "max_us" => r.max_us = num,
                "loader_cpu_s" => r.loader_cpu_s = num,
                "server_cpu_s" => r.server_cpu_s = num,
                "machine_cpu_s" => r.machine_cpu_s = num,
                "errors" => r.errors = num as u64,
                "send_lag_us" => r.send_lag_us = num,
                "slowest_conn" => r.slowest_conn = num,
                _ => {}
            }
        }
        Ok(r)
    }
}

/// `netpoll-bench load`: runs one load and prints its `RESULT` line.
pub fn main(args: &LoadArgs) -> io::Result<()> {
    let result = run(args)?;
    println!("{result}");
    if result.errors > 0 {
        eprintln!("warning: {} connections failed", result.errors);
    }
    Ok(())
}

fn run(args: &LoadArgs) -> io::Result<LoadResult> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    if args.conns == 0 || args.inflight == 0 {
        return Err(invalid("--conns and --inflight must be at least 1"));
    }
    if !(1..=conn::MAX_MESSAGE).contains(&args.size) {
        return Err(invalid("--size must be 1..=65536"));
    }
    if args.duration <= 0.0 || args.warmup < 0.0 || args.rate.is_some_and(|r| r <= 0.0) {
        return Err(invalid("--duration and --rate must be positive"));
    }
    if !args.cpus.is_empty() {
        // Every thread of the loader, this one included, stays off the server's CPUs.
        sys::pin_current_thread(&args.cpus)?;
    }
    sys::raise_nofile_limit(args.conns as u64 + 1024)?;
    let threads = args
        .threads
        .unwrap_or(if args.cpus.is_empty() {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            args.cpus.len()
        })
        .clamp(1, args.conns);
    let streams = conn::connect_all(args.addr, args.conns)?;
    let mut per_thread: Vec<Vec<(usize, std::net::TcpStream)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        per_thread[i % threads].push((i, s));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let window = Window {
        start,
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
    };
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, conns)| {
            let args = args.clone();
            let cpu = (!args.cpus.is_empty()).then(|| args.cpus[t % args.cpus.len()]);
            std::thread::spawn(move || -> io::Result<Stats> {
                if let Some(cpu) = cpu {
                    sys::pin_current_thread(&[cpu])?;
                }
                let rate = args.rate.map(|r| r / threads as f64);
                let log = args.latency_log.is_some();
                match args.app {
                    App::Echo => drive(
                        conns
                            .into_iter()
                            .map(|(i, s)| Conn::new(i, s, Echo::new(args.size, i)))
                            .collect(),
                        window,
                        args.inflight,
                        rate,
                        log,
                    ),
                    App::Http => drive(
                        conns
                            .into_iter()
                            .map(|(i, s)| Conn::new(i, s, Http))
                            .collect(),
                        window,
                        args.inflight,
                        rate,
                        log,
                    ),
                    App::Hyper => drive(
                        conns
                            .into_iter()
                            .map(|(i, s)| Conn::new(i, s, ParsedHttp))
                            .collect(),
                        window,
                        args.inflight,
                        rate,
                        log,
                    ),
                }
            })
        })
        .collect();
    sleep_until(window.measure_from);
    let loader0 = sys::self_cpu();
    let server0 = args.server_pid.map(sys::process_cpu).transpose()?;
    let machine0 = sys::machine_busy()?;
    sleep_until(window.end);
    let loader1 = sys::self_cpu();
    let server1 = args.server_pid.map(sys::process_cpu).transpose()?;
    let machine1 = sys::machine_busy()?;
    let mut stats = Stats::new(args.latency_log.is_some());
    for h in handles {
        stats.merge(h.join().expect("loader thread panicked")?);
    }
    if stats.window == 0 {
        return Err(io::Error::other(format!(
            "no response in the measured window ({})",
            stats.first_error.as_deref().unwrap_or("no error reported")
        )));
    }
    if let (Some(path), Some(log)) = (&args.latency_log, stats.log.take()) {
        write_latency_log(path, log)?;
    }
    let mean = stats.window as f64 / stats.per_conn.len().max(1) as f64;
    let slowest = stats.per_conn.iter().copied().min().unwrap_or(0) as f64 / mean;
    let us = |q: f64| stats.hist.value_at_quantile(q) as f64 / 1000.0;
    let seconds = (window.end - window.measure_from).as_secs_f64();
    Ok(LoadResult {
        requests: stats.window,
        total: stats.total,
        seconds,
        rps: stats.window as f64 / seconds,
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: stats.hist.max() as f64 / 1000.0,
        loader_cpu_s: (loader1 - loader0).as_secs_f64(),
        server_cpu_s: match (server0, server1) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => -1.0,
        },
        machine_cpu_s: (machine1 - machine0).as_secs_f64(),
        errors: stats.errors,
        send_lag_us: if stats.lag_count == 0 {
            0.0
        } else {
            stats.lag_sum.as_secs_f64() * 1e6 / stats.lag_count as f64
        },
        slowest_conn: slowest,
    })
}

fn drive<P: Protocol>(
    conns: Vec<Conn<P>>,
    window: Window,
    inflight: usize,
    rate: Option<f64>,
    log: bool,
) -> io::Result<Stats> {
    let mut set = ConnSet::new(conns, window, log)?;
    sleep_until(window.start);
    match rate {
        None => closed::run(&mut set, inflight)?,
        Some(rate) => open::run(&mut set, rate)?,
    }
    Ok(set.finish())
}

fn write_latency_log(path: &Path, log: conn::LatencyLog) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# at_us latency_us conn")?;
    for s in log.into_sorted() {
        writeln!(
            out,
            "{:.1} {:.1} {}",
            s.at_ns as f64 / 1e3,
            s.latency_ns as f64 / 1e3,
            s.conn
        )?;
    }
    out.flush()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Runs the loader as a child process of this binary (`me`) and returns its result.
pub fn run_process(me: &Path, args: &LoadArgs) -> io::Result<LoadResult> {
    let mut cmd = Command::new(me);
    cmd.arg("load")
        .args(args.to_argv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if line.starts_with("RESULT ") {
            result = Some(line.parse()?);
        }
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match result {
        Some(r) if out.status.success() => Ok(r),
        _ => Err(io::Error::other(format!(
            "loader failed ({}): {}",
            out.status,
            stderr.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_round_trips() {
        let r = LoadResult {
            requests: 10,
            total: 12,
            seconds: 1.5,
            rps: 6.7,
            p50_us: 1.5,
            p90_us: 2.0,
            p99_us: 3.0,
            p999_us: 4.0,
            max_us: 5.0,
            loader_cpu_s: 0.25,
            server_cpu_s: -1.0,
            machine_cpu_s: 2.0,
            errors: 1,
            send_lag_us: 0.5,
            slowest_conn: 0.25,
        };
        assert_eq!(r.to_string().parse::<LoadResult>().unwrap(), r);
        assert!("RESULT rps=x".parse::<LoadResult>().is_err());
    }

    #[test]
    fn the_loader_command_line_names_every_app_as_clap_parses_it() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        for app in [App::Echo, App::Http, App::Hyper] {
            let args = LoadArgs {
                addr: "127.0.0.1:7000".parse().unwrap(),
                app,
                conns: 3,
                size: 64,
                inflight: 16,
                rate: None,
                duration: 1.0,
                warmup: 0.0,
                threads: Some(1),
                cpus: vec![1],
                server_pid: None,
                latency_log: Some("/tmp/log".into()),
            };
            let argv = std::iter::once("load".to_string()).chain(args.to_argv());
            let parsed = Cli::try_parse_from(argv).unwrap().load;
            assert_eq!((parsed.app, parsed.inflight), (app, 16));
            assert_eq!(parsed.latency_log, args.latency_log);
        }
    }
}

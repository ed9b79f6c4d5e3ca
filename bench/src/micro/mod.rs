//! `netpoll-bench micro`: in-process micro-benchmarks, netpoll beside tokio in one run.
//!
//! Every case is written once against a small runtime trait (`rt.rs`) and runs inside a task
//! spawned on a fresh runtime of each kind, with a warm-up pass first. The runtimes are
//! interleaved (netpoll, tokio, netpoll, tokio, ...) for every repeat; the table gives the
//! median with min–max over the repeats, and the ratio of the medians, netpoll / tokio.
//!
//! Cases: spawn + join (batch of 1 and of 1000), wake-to-run ping-pong between two tasks over a
//! hand-written signal (`signal.rs`), ping-pong over loopback TCP, timer insert+cancel and
//! insert+fire, and the cost of bounding a ready read in time: netpoll moving the read deadline
//! 10 s ahead (`set_read_deadline_after`, which reads the coarse clock) against tokio's
//! `time::timeout` (which reads the precise one), the precise read's own cost, and the same
//! read bounded by an instant already at hand (`set_read_deadline(Some(at))` against
//! `timeout_at`: each runtime's machinery without a precise clock read; netpoll reads the
//! coarse one, to check the deadline as it is set and as the read starts), the read inside
//! each runtime's own `time::timeout` (tokio-style code on netpoll), with allocations per
//! operation (`alloc.rs`).

mod alloc;
mod cases;
mod rt;
mod signal;

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rt::{Netpoll, Rt, Tokio};

const USAGE: &str = "\
usage: netpoll-bench micro [--repeats N] [--scale F] [--only NAME] [--workers N]
                           [--runtime netpoll|tokio] [--out PATH|-]
  --repeats N   interleaved repeats per case (default 5)
  --scale F     multiply every case's operation count by F (default 1; 0.1 for a smoke run)
  --only NAME   run the cases whose name contains NAME (spawn, wake, tcp, timer, deadline)
  --workers N   run the cases measured with N workers only
  --runtime R   run one runtime only (for profiling)
  --out PATH    where to write the Markdown table (default bench/results/micro.md; - for none;
                a narrowed run (--only, --workers, --runtime) writes nothing unless --out is
                given)";

#[derive(Clone, Copy, Debug)]
enum Case {
    Spawn { batch: usize },
    Wake,
    Tcp,
    TimerCancel,
    TimerFire,
    Deadline,
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    case: Case,
    workers: usize,
    /// Operations per measured pass (before `--scale`).
    ops: usize,
}

impl Spec {
    fn name(&self) -> &'static str {
        match self.case {
            Case::Spawn { .. } => "spawn",
            Case::Wake => "wake",
            Case::Tcp => "tcp",
            Case::TimerCancel | Case::TimerFire => "timer",
            Case::Deadline => "deadline",
        }
    }

    /// The rows this case reports, in the order of the metrics `measure` returns.
    fn rows(&self) -> Vec<(String, &'static str)> {
        let w = match self.workers {
            1 => "1 worker".to_string(),
            n => format!("{n} workers"),
        };
        match self.case {
            Case::Spawn { batch } => {
                vec![(format!("spawn + join, batch of {batch}, {w}"), "ns/task")]
            }
            Case::Wake => vec![(
                format!("wake-to-run ping-pong (signal), {w}"),
                "ns/round trip",
            )],
            Case::Tcp => vec![(format!("TCP loopback ping-pong, 1 B, {w}"), "ns/round trip")],
            Case::TimerCancel => vec![(format!("timer insert + cancel, {w}"), "ns/timer")],
            Case::TimerFire => vec![(
                format!("timer insert + fire (10k × 1 ms), {w}"),
                "CPU ns/timer",
            )],
            Case::Deadline => vec![
                (format!("ready 1 B read, bare, {w}"), "ns/read"),
                (
                    format!("ready read + deadline (np) / timeout (tokio), {w}"),
                    "ns/read",
                ),
                ("added cost of the deadline / timeout".into(), "ns/read"),
                (
                    "precise clock read (`Instant::now() + 10 s`; in tokio's `timeout`)".into(),
                    "ns/read",
                ),
                (
                    "added cost, instant at hand: deadline (np) / `timeout_at` (tokio)".into(),
                    "ns/read",
                ),
                (
                    "added cost, each runtime's own `time::timeout(10 s, read)`".into(),
                    "ns/read",
                ),
                ("allocations per bounded read".into(), "allocs/read"),
            ],
        }
    }
}

fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for workers in [1, 2] {
        v.push(Spec {
            case: Case::Spawn { batch: 1 },
            workers,
            ops: 200_000,
        });
        v.push(Spec {
            case: Case::Spawn { batch: 1000 },
            workers,
            ops: 500_000,
        });
    }
    for workers in [1, 2] {
        v.push(Spec {
            case: Case::Wake,
            workers,
            ops: 200_000,
        });
    }
    for workers in [1, 2] {
        v.push(Spec {
            case: Case::Tcp,
            workers,
            ops: 20_000,
        });
    }
    v.push(Spec {
        case: Case::TimerCancel,
        workers: 1,
        ops: 500_000,
    });
    v.push(Spec {
        case: Case::TimerFire,
        workers: 1,
        ops: 50_000,
    });
    v.push(Spec {
        case: Case::Deadline,
        workers: 1,
        ops: 65_536,
    });
    v
}

const TIMER_BATCH: usize = 10_000;
const DEADLINE_BATCH: usize = 2048;

/// One pass of `spec` on `R` (inside a task), returning its metrics (NaN for "not measured").
async fn pass<R: Rt>(spec: Spec, ops: usize) -> io::Result<Vec<f64>> {
    Ok(match spec.case {
        Case::Spawn { batch } => vec![cases::spawn_join::<R>(ops.max(batch), batch).await],
        Case::Wake => vec![cases::ping_pong::<R>(ops).await],
        Case::Tcp => vec![cases::tcp_ping_pong::<R>(ops).await?],
        Case::TimerCancel => vec![cases::timer_cancel::<R>(ops).await],
        Case::TimerFire => {
            vec![cases::timer_fire::<R>(ops.max(TIMER_BATCH), TIMER_BATCH).await]
        }
        Case::Deadline => {
            let rounds = (ops / DEADLINE_BATCH).max(1);
            let d = cases::deadline::<R>(rounds, DEADLINE_BATCH).await?;
            vec![
                d.bare,
                d.bounded,
                d.added,
                d.clock,
                d.added_at,
                d.added_timeout,
                d.allocs.unwrap_or(f64::NAN),
            ]
        }
    })
}

/// A fresh runtime of kind `R`: a warm-up pass, then the measured pass.
fn sample<R: Rt>(spec: Spec, ops: usize) -> io::Result<Vec<f64>> {
    let rt = R::start(spec.workers)?;
    rt.block_on(async move {
        R::spawn(async move {
            pass::<R>(spec, ops).await?;
            pass::<R>(spec, ops).await
        })
        .await
    })
}

struct Options {
    repeats: usize,
    scale: f64,
    only: Option<String>,
    workers: Option<usize>,
    runtime: Option<String>,
    out: Option<String>,
}

fn parse(args: &[String]) -> io::Result<Options> {
    let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{msg}\n{USAGE}"));
    let mut o = Options {
        repeats: 5,
        scale: 1.0,
        only: None,
        workers: None,
        runtime: None,
        out: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| bad(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--repeats" => o.repeats = value.parse().map_err(|_| bad(format!("bad {flag}")))?,
            "--scale" => o.scale = value.parse().map_err(|_| bad(format!("bad {flag}")))?,
            "--only" => o.only = Some(value.clone()),
            "--workers" => o.workers = Some(value.parse().map_err(|_| bad(format!("bad {flag}")))?),
            "--runtime" if value == Netpoll::NAME || value == Tokio::NAME => {
                o.runtime = Some(value.clone())
            }
            "--out" => o.out = Some(value.clone()),
            _ => return Err(bad(format!("unknown option {flag} {value}"))),
        }
    }
    if o.repeats == 0 || o.scale.is_nan() || o.scale <= 0.0 {
        return Err(bad("--repeats and --scale must be positive".into()));
    }
    Ok(o)
}

/// Median, min and max of the finite values (`None` if there are none).
fn summary(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

fn num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: Option<(f64, f64, f64)>) -> String {
    match s {
        Some((m, lo, hi)) => format!("{} ({}–{})", num(m), num(lo), num(hi)),
        None => "–".into(),
    }
}

/// `repeats` interleaved samples of `spec` on each runtime `want` accepts:
/// `samples[runtime][repeat][metric]`, netpoll first.
fn interleaved(
    spec: Spec,
    ops: usize,
    repeats: usize,
    want: impl Fn(&str) -> bool,
) -> io::Result<[Vec<Vec<f64>>; 2]> {
    let mut samples: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..repeats {
        if want(Netpoll::NAME) {
            samples[0].push(sample::<Netpoll>(spec, ops)?);
        }
        if want(Tokio::NAME) {
            samples[1].push(sample::<Tokio>(spec, ops)?);
        }
    }
    Ok(samples)
}

/// The deadline target, measured in process: what bounding a ready read in time adds,
/// netpoll's `set_read_deadline_after(10 s)` against tokio's `timeout(10 s, ...)`.
pub struct DeadlineCost {
    /// Medians (min, max) of the added cost, ns per read: [netpoll, tokio].
    pub added_ns: [(f64, f64, f64); 2],
    /// Median allocations per bounded read on netpoll.
    pub netpoll_allocs: f64,
    pub repeats: usize,
}

impl DeadlineCost {
    /// netpoll's added cost at most half of tokio's, with no allocation.
    pub fn met(&self) -> bool {
        self.added_ns[0].0 <= self.added_ns[1].0 / 2.0 && self.netpoll_allocs == 0.0
    }
}

/// Runs the deadline case `repeats` times on each runtime, interleaved (for `full`).
pub fn deadline_cost(repeats: usize) -> io::Result<DeadlineCost> {
    let spec = specs()
        .into_iter()
        .find(|s| matches!(s.case, Case::Deadline))
        .expect("the deadline case is in the table");
    let samples = interleaved(spec, spec.ops, repeats, |_| true)?;
    let metric = |r: usize, m: usize| summary(&samples[r].iter().map(|s| s[m]).collect::<Vec<_>>());
    let lost = || io::Error::other("the deadline case returned no finite sample");
    // Metrics in the order of `Spec::rows`: 2 = added cost, 6 = allocations per bounded read.
    Ok(DeadlineCost {
        added_ns: [
            metric(0, 2).ok_or_else(lost)?,
            metric(1, 2).ok_or_else(lost)?,
        ],
        netpoll_allocs: metric(0, 6).ok_or_else(lost)?.0,
        repeats,
    })
}

/// Runs the micro-benchmarks; `args` are the options after `micro` (see `--help`).
pub fn run(args: &[String]) -> io::Result<()> {
    let o = parse(args)?;
    let specs: Vec<Spec> = specs()
        .into_iter()
        .filter(|s| o.only.as_deref().is_none_or(|n| s.name().contains(n)))
        .filter(|s| o.workers.is_none_or(|w| s.workers == w))
        .collect();
    let want = |name: &str| o.runtime.as_deref().is_none_or(|r| r == name);

    let mut table =
        String::from("| case | netpoll | tokio | ratio | unit |\n|---|---:|---:|---:|---|\n");
    // The deadline case's medians [netpoll, tokio] of: added cost, clock read, added cost
    // with the instant at hand.
    let mut deadline: [[Option<f64>; 2]; 3] = [[None; 2]; 3];
    for (i, spec) in specs.iter().enumerate() {
        let ops = ((spec.ops as f64 * o.scale) as usize).max(1);
        eprintln!(
            "[{}/{}] {} ({} repeats)",
            i + 1,
            specs.len(),
            spec.rows()[0].0,
            o.repeats
        );
        let samples = interleaved(*spec, ops, o.repeats, want)?;
        for (m, (label, unit)) in spec.rows().into_iter().enumerate() {
            let [np, tk] =
                [0, 1].map(|r| summary(&samples[r].iter().map(|s| s[m]).collect::<Vec<_>>()));
            let ratio = match (np, tk) {
                (Some((a, ..)), Some((b, ..))) if b != 0.0 => format!("{:.2}", a / b),
                _ => "–".into(),
            };
            writeln!(
                table,
                "| {label} | {} | {} | {ratio} | {unit} |",
                cell(np),
                cell(tk)
            )
            .expect("writing to a String");
            if matches!(spec.case, Case::Deadline) && (2..=4).contains(&m) {
                deadline[m - 2] = [np, tk].map(|s| s.map(|(median, ..)| median));
            }
        }
    }
    let mut notes = String::new();
    if let [[Some(np), Some(tk)], [Some(clock), _], [Some(np_at), Some(tk_at)]] = deadline {
        let verdict = |yes: bool| if yes { "yes" } else { "no" };
        writeln!(
            notes,
            "\nDeadline target (netpoll's added cost ≤ half of tokio's): {} \
             (netpoll +{} ns, tokio +{} ns per read). tokio's includes a precise read of the \
             clock, {} ns here ({:.0}% of its added cost); netpoll's \
             `set_read_deadline_after` reads the coarse clock.\n\
             With the instant at hand (no precise clock read; netpoll reads the coarse one to \
             check the deadline as it is set and as the read starts), netpoll's machinery ≤ \
             half of tokio's: {} (netpoll +{} ns, tokio +{} ns per read).",
            verdict(np <= tk / 2.0),
            num(np),
            num(tk),
            num(clock),
            100.0 * clock / tk,
            verdict(np_at <= tk_at / 2.0),
            num(np_at),
            num(tk_at),
        )
        .expect("writing to a String");
    }
    print!("{table}{notes}");

    let narrowed = o.only.is_some() || o.workers.is_some() || o.runtime.is_some();
    let out = match o.out.as_deref() {
        Some("-") => None,
        Some(p) => Some(PathBuf::from(p)),
        None if narrowed => None,
        None => Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/micro.md")),
    };
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, report(&o, &table, &notes))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn report(o: &Options, table: &str, notes: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let command: Vec<String> = std::env::args().collect();
    format!(
        "# Micro-benchmarks: netpoll beside tokio\n\n\
         - date (UTC): {}\n- machine: {cpu}, {cores} CPUs, Linux {}\n\
         - command: `{}` (release build)\n\
         - {} interleaved repeats per case, each on a fresh runtime after a warm-up pass; \
         median (min–max); ratio = netpoll median / tokio median (below 1: netpoll is \
         cheaper); scale {}\n\n{table}{notes}",
        today(),
        kernel.trim(),
        command.join(" "),
        o.repeats,
        o.scale,
    )
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (year, month, day) = civil_date(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar, counted
/// in 400-year eras from 0000-03-01 so that the leap day ends a year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::cases::read_byte;
    use super::rt::{Netpoll, Rt, Tokio};
    use super::signal::Signal;
    use super::*;
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    /// Runs `f` on its own thread and fails if it has not returned within `limit` (a stuck
    /// runtime is left behind on that thread).
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no result within {limit:?}: stalled"))
    }

    /// Runs `pass` for `spec` on a fresh runtime of kind `R`, under a watchdog.
    fn metrics<R: Rt>(spec: Spec, ops: usize) -> Vec<f64> {
        within(Duration::from_secs(30), move || sample::<R>(spec, ops))
            .unwrap_or_else(|e| panic!("{} {spec:?}: {e}", R::NAME))
    }

    #[test]
    fn every_case_completes_on_both_runtimes_with_finite_costs() {
        for spec in specs() {
            let ops = match spec.case {
                Case::TimerFire => TIMER_BATCH,
                Case::Deadline => 2 * DEADLINE_BATCH,
                _ => 100,
            };
            for m in [metrics::<Netpoll>(spec, ops), metrics::<Tokio>(spec, ops)] {
                assert_eq!(m.len(), spec.rows().len(), "{spec:?}");
                // The added cost is a difference and may be negative; allocation counts may
                // be NaN (counting compiled out); the others are positive.
                assert!(m[0].is_finite() && m[0] > 0.0, "{spec:?}: {m:?}");
            }
        }
    }

    #[test]
    fn summary_is_median_min_max_of_the_finite_values() {
        assert_eq!(summary(&[3.0, f64::NAN, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0, 3.0, 2.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(&[f64::NAN]), None);
    }

    #[test]
    fn civil_date_matches_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_723), (2024, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn options_are_checked() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&args(&[
            "--repeats",
            "7",
            "--scale",
            "0.5",
            "--only",
            "tcp",
        ]))
        .unwrap();
        assert_eq!(
            (o.repeats, o.scale, o.only.as_deref()),
            (7, 0.5, Some("tcp"))
        );
        for bad in [
            &["--repeats", "0"][..],
            &["--scale", "-1"],
            &["--runtime", "go"],
            &["--frobnicate", "1"],
            &["--repeats"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn signal_wakes_a_task_waiting_on_it_from_another_thread() {
        within(Duration::from_secs(20), || {
            let rt = Netpoll::start(1).unwrap();
            let sig = Arc::new(Signal::default());
            let waiter = sig.clone();
            rt.block_on(async move {
                let task = Netpoll::spawn(async move {
                    for _ in 0..100 {
                        waiter.wait().await;
                    }
                });
                // Each wait consumes one notification: wait for it before the next one.
                let notifier = std::thread::spawn(move || {
                    for _ in 0..100 {
                        sig.notify();
                        while sig.is_set() {
                            std::thread::yield_now();
                        }
                    }
                });
                task.await;
                notifier.join().unwrap();
            });
        });
    }

    /// The lost wake-up described in the report (src/sched/worker.rs, `poll_blocking`): a
    /// machine returning from the blocking poll finds no idle core, puts the ready tasks on the
    /// global queue and parks without starting a core (the submitter half of idle.rs's
    /// no-lost-wake-up rule is missing); the core it could not get is released meanwhile by a
    /// machine that had already checked the global queue and now blocks in `epoll_wait` with no
    /// timeout. Nobody runs the tasks.
    ///
    /// The shape that opens the window, many times a second: a thread outside the runtime wakes
    /// task `T` (a parked machine takes the core, while another sits in `epoll_wait`); `T` writes
    /// one byte, which makes reader task `R` ready through the poller, and goes idle at once.
    /// `R` acknowledges to the outside thread. A stall is a missing acknowledgement. Failed in
    /// about 4 runs out of 5 (release build, 20 s) before the fix (`start_idle` after the
    /// splice in `poll_blocking`).
    #[test]
    #[ignore = "a 20 s stress run (release build); the CI variant is tests/rt_io_wakeups.rs"]
    fn io_readiness_is_never_stranded_on_the_global_queue() {
        let rt = Netpoll::start(1).expect("runtime");
        let go = Arc::new(Signal::default());
        let (ack_tx, ack_rx) = mpsc::channel();
        let go_task = go.clone();
        rt.block_on(async move {
            let (w, mut r) = Netpoll::pair().await.expect("pair");
            drop(Netpoll::spawn(async move {
                let mut buf = [0; 1];
                while read_byte(&mut r, &mut buf).await.is_ok() {
                    if ack_tx.send(()).is_err() {
                        break;
                    }
                }
            }));
            drop(Netpoll::spawn(async move {
                loop {
                    go_task.wait().await;
                    if w.write_all(b"x").await.is_err() {
                        break;
                    }
                }
            }));
        });
        let start = Instant::now();
        let mut round = 0u64;
        while start.elapsed() < Duration::from_secs(20) {
            go.notify();
            if ack_rx.recv_timeout(Duration::from_secs(5)).is_err() {
                panic!("round {round}: the reader's readiness was never run (stranded)");
            }
            round += 1;
        }
    }
}

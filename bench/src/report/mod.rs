//! Turns samples into the summary: Markdown tables (medians with min–max, ratios to tokio, the
//! floor and Go), the targets with a verdict each, and the PNG chart.

pub mod chart;
pub mod env;

use std::fmt::Write as _;

use crate::micro::DeadlineCost;
use crate::run::{Plan, Sample};
use crate::scenario::{Kind, Scenario};
use crate::server::{Family, Variant};

pub use env::Environment;

/// A measured quantity of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Rps,
    P50,
    P99,
    P999,
    /// Server CPU time per request, µs.
    ServerCpu,
    /// Loader CPU use, % of one core.
    LoaderCpu,
    /// Open loop: mean delay of a send after its scheduled time, µs.
    SendLag,
    /// Responses of the least-served connection ÷ the mean, %.
    Slowest,
    /// CPU used by other processes on the machine during the window, % of one core: noise.
    Others,
    /// Idle memory per connection, KiB.
    MemPerConn,
    SyscallsPerReq,
    /// Of the system calls per request, those that wait for readiness (`epoll_wait`).
    WaitsPerReq,
}

impl Metric {
    pub fn of(self, s: &Sample) -> Option<f64> {
        let l = s.load.as_ref();
        match self {
            Metric::Rps => l.map(|l| l.rps),
            Metric::P50 => l.map(|l| l.p50_us),
            Metric::P99 => l.map(|l| l.p99_us),
            Metric::P999 => l.map(|l| l.p999_us),
            Metric::ServerCpu => l
                .filter(|l| l.server_cpu_s >= 0.0 && l.requests > 0)
                .map(|l| l.server_cpu_s * 1e6 / l.requests as f64),
            Metric::LoaderCpu => l.map(|l| l.loader_cpu_s * 100.0 / l.seconds),
            Metric::SendLag => l.map(|l| l.send_lag_us),
            Metric::Slowest => l.map(|l| l.slowest_conn * 100.0),
            Metric::Others => l.filter(|l| l.server_cpu_s >= 0.0).map(|l| {
                let others = l.machine_cpu_s - l.loader_cpu_s - l.server_cpu_s;
                others.max(0.0) * 100.0 / l.seconds
            }),
            Metric::MemPerConn => s.mem_per_conn.map(|b| b / 1024.0),
            Metric::SyscallsPerReq => s.syscalls_per_req,
            Metric::WaitsPerReq => s.waits_per_req,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Metric::Rps => "req/s",
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::ServerCpu => "server CPU/req",
            Metric::LoaderCpu => "loader CPU",
            Metric::SendLag => "send lag",
            Metric::Others => "other load",
            Metric::Slowest => "slowest conn",
            Metric::MemPerConn => "RSS/conn",
            Metric::SyscallsPerReq => "syscalls/req",
            Metric::WaitsPerReq => "of which epoll waits",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Metric::Rps => "req/s",
            Metric::P99 => "p99",
            Metric::ServerCpu => "CPU",
            Metric::MemPerConn => "RSS",
            Metric::SyscallsPerReq => "syscalls",
            _ => self.header(),
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Metric::Rps => {
                if v >= 1e6 {
                    format!("{:.2}M", v / 1e6)
                } else if v >= 1e3 {
                    format!("{:.1}k", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            }
            Metric::P50 | Metric::P99 | Metric::P999 | Metric::SendLag => format_us(v),
            Metric::ServerCpu => format!("{v:.2} µs"),
            Metric::LoaderCpu | Metric::Others | Metric::Slowest => format!("{v:.0}%"),
            Metric::MemPerConn => format!("{v:.2} KiB"),
            Metric::SyscallsPerReq | Metric::WaitsPerReq => format!("{v:.3}"),
        }
    }
}

fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn stat(values: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn cell(m: Metric, s: Option<Stat>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n == 1 || s.min == s.max => m.format(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            m.format(s.median),
            m.format(s.min),
            m.format(s.max)
        ),
    }
}

/// Everything a summary is made of.
pub struct Report<'a> {
    pub mode: &'a str,
    pub scenarios: &'a [Scenario],
    pub samples: &'a [Sample],
    pub plan: &'a Plan,
    pub env: &'a Environment,
    /// The deadline micro-benchmark, when the run included it (`full`).
    pub deadline_micro: Option<&'a DeadlineCost>,
}

/// A target of the issue and where it stands.
struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
    /// Missed at the medians, but the two servers' min–max ranges overlap: the run cannot
    /// tell them apart.
    overlap: bool,
    /// In how many of the interleaved rounds netpoll met the target against the run of the
    /// reference next to it, and of how many: a swing of the machine's speed between rounds
    /// moves both sides of a pair, so this is steadier than the medians on a noisy machine.
    rounds: Option<(usize, usize)>,
}

const NETPOLL: Variant = Variant::plain(Family::Netpoll);

impl Report<'_> {
    fn index(&self, id: &str) -> Option<usize> {
        self.scenarios.iter().position(|s| s.id == id)
    }

    fn samples_of(&self, si: usize, v: Variant) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.scenario == si && s.variant == v)
    }

    pub fn stat(&self, si: usize, v: Variant, m: Metric) -> Option<Stat> {
        let values: Vec<f64> = self.samples_of(si, v).filter_map(|s| m.of(s)).collect();
        stat(&values)
    }

    fn median(&self, id: &str, v: Variant, m: Metric) -> Option<f64> {
        self.stat(self.index(id)?, v, m).map(|s| s.median)
    }

    /// The variants that have samples in scenario `si`, in the plan's order.
    pub fn variants_in(&self, si: usize) -> Vec<Variant> {
        self.scenarios[si]
            .variants(&self.plan.families)
            .into_iter()
            .filter(|&v| self.samples_of(si, v).next().is_some())
            .collect()
    }

    fn has_errors(&self, si: usize, v: Variant) -> bool {
        self.samples_of(si, v)
            .any(|s| s.error.is_some() || s.load.as_ref().is_some_and(|l| l.errors > 0))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let e = self.env;
        let _ = writeln!(md, "# netpoll-bench `{}`\n", self.mode);
        let _ = writeln!(md, "- Date: {}", e.date);
        let _ = writeln!(
            md,
            "- Machine: {}, {} cores, Linux {}",
            e.cpu, e.cores, e.kernel
        );
        let _ = writeln!(md, "- Versions: {}", e.versions);
        let _ = writeln!(md, "- Command: `{}`", e.command);
        let reps = self.plan.repeats;
        let _ = writeln!(
            md,
            "- Method: servers interleaved (A B C A B C …), {reps} repeat{} per scenario \
             (deadline churn: {} paired), {} s warm-up then {} s measured per run, a fresh \
             server process per run; cells are medians with (min–max).",
            if reps == 1 { "" } else { "s" },
            crate::scenario::DEADLINE_REPEATS.max(reps),
            self.plan.warmup,
            self.plan.duration
        );
        let _ = writeln!(
            md,
            "- Placement: *pinned* = server on CPU 0 with 1 worker, loader (1 thread) on CPU 1; \
             *2 workers* = server with 2 workers, 2 loader threads, no pinning. The floor is \
             single-threaded in both. Server CPU is utime+stime from /proc/PID/stat over the \
             measured window; loader CPU is the loader's own (100% = one core busy); *other \
             load* is the CPU that the rest of the machine used meanwhile (from /proc/stat): \
             anything above a few % is noise in that run. *Slowest conn* is the responses of \
             the least-served connection ÷ the mean per connection (100% = perfectly fair).",
        );
        if let Some(t) = &self.plan.tracer {
            let _ = writeln!(md, "- System calls counted with `{}`.", t.name());
        }
        for note in &e.notes {
            let _ = writeln!(md, "- Note: {note}");
        }
        md.push('\n');
        self.targets_section(&mut md);
        self.table(
            &mut md,
            "Closed loop",
            |k| matches!(k, Kind::Closed { .. }),
            &[
                Metric::Rps,
                Metric::P50,
                Metric::P99,
                Metric::Slowest,
                Metric::ServerCpu,
                Metric::LoaderCpu,
                Metric::Others,
            ],
            &[
                (Metric::Rps, Family::Tokio),
                (Metric::Rps, Family::Floor),
                (Metric::Rps, Family::Go),
                (Metric::P99, Family::Tokio),
                (Metric::P99, Family::Floor),
            ],
        );
        self.table(
            &mut md,
            "Open loop (latency from the scheduled send time)",
            |k| matches!(k, Kind::Open { .. }),
            &[
                Metric::Rps,
                Metric::P50,
                Metric::P99,
                Metric::P999,
                Metric::ServerCpu,
                Metric::LoaderCpu,
                Metric::SendLag,
                Metric::Others,
            ],
            &[
                (Metric::ServerCpu, Family::Tokio),
                (Metric::ServerCpu, Family::Floor),
                (Metric::ServerCpu, Family::Go),
                (Metric::P99, Family::Tokio),
            ],
        );
        self.table(
            &mut md,
            "System calls per request (server, whole run)",
            |k| matches!(k, Kind::Syscalls { .. }),
            &[
                Metric::SyscallsPerReq,
                Metric::WaitsPerReq,
                Metric::Rps,
                Metric::Others,
            ],
            &[
                (Metric::SyscallsPerReq, Family::Tokio),
                (Metric::SyscallsPerReq, Family::Floor),
                (Metric::SyscallsPerReq, Family::Go),
            ],
        );
        self.table(
            &mut md,
            "Idle memory per connection (server RSS growth ÷ connections)",
            |k| matches!(k, Kind::IdleMemory { .. }),
            &[Metric::MemPerConn],
            &[
                (Metric::MemPerConn, Family::Tokio),
                (Metric::MemPerConn, Family::Floor),
                (Metric::MemPerConn, Family::Go),
            ],
        );
        self.deadline_section(&mut md);
        self.errors_section(&mut md);
        md
    }

    /// One table over the scenarios whose kind passes `filter`: a row per server.
    fn table(
        &self,
        md: &mut String,
        title: &str,
        filter: impl Fn(&Kind) -> bool,
        metrics: &[Metric],
        ratios: &[(Metric, Family)],
    ) {
        let rows: Vec<usize> = (0..self.scenarios.len())
            .filter(|&si| filter(&self.scenarios[si].kind) && !self.variants_in(si).is_empty())
            .collect();
        if rows.is_empty() {
            return;
        }
        // Ratio columns only for reference servers that took part.
        let ratios: Vec<(Metric, Family)> = ratios
            .iter()
            .copied()
            .filter(|&(_, f)| self.plan.families.contains(&f))
            .collect();
        let _ = writeln!(md, "## {title}\n");
        let mut header = vec!["scenario".to_string(), "server".to_string()];
        header.extend(metrics.iter().map(|m| m.header().to_string()));
        header.extend(
            ratios
                .iter()
                .map(|(m, f)| format!("{} ÷ {}", m.short(), f.name())),
        );
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for si in rows {
            for v in self.variants_in(si) {
                let mut row = vec![
                    self.scenarios[si].title.clone(),
                    if self.has_errors(si, v) {
                        format!("{v} ⚠")
                    } else {
                        v.to_string()
                    },
                ];
                row.extend(metrics.iter().map(|&m| cell(m, self.stat(si, v, m))));
                row.extend(ratios.iter().map(|&(m, f)| {
                    let mine = self.stat(si, v, m);
                    let theirs = self.stat(si, Variant::plain(f), m);
                    match (mine, theirs) {
                        (Some(a), Some(b)) if b.median > 0.0 => {
                            format!("{:.2}", a.median / b.median)
                        }
                        _ => "—".into(),
                    }
                }));
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
        }
        md.push('\n');
    }

    /// Deadline churn: server CPU per request with and without the deadline moved on every
    /// request, paired by repeat.
    fn deadline_section(&self, md: &mut String) {
        let Some(si) = (0..self.scenarios.len())
            .find(|&i| matches!(self.scenarios[i].kind, Kind::DeadlineChurn { .. }))
        else {
            return;
        };
        let families: Vec<Family> = self
            .variants_in(si)
            .into_iter()
            .filter(|v| !v.deadline)
            .map(|v| v.family)
            .collect();
        if families.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Deadline churn: {}\n", self.scenarios[si].title);
        let _ = writeln!(
            md,
            "Server CPU per request; the ratio is *with deadline ÷ without*, per interleaved \
             pair. Before every read netpoll calls `set_read_deadline_after(10 s)` and Go \
             `SetReadDeadline(time.Now().Add(10 * time.Second))`; tokio wraps every read in \
             `tokio::time::timeout(10 s, ...)`.\n"
        );
        let _ = writeln!(
            md,
            "| server | CPU/req without | CPU/req with deadline | paired ratio | added CPU/req | req/s without | req/s with |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for f in families {
            let plain = Variant::plain(f);
            let dl = Variant::with_deadline(f);
            let ratios = self.paired_ratios(si, plain, dl, Metric::ServerCpu);
            let (a, b) = (
                self.stat(si, plain, Metric::ServerCpu),
                self.stat(si, dl, Metric::ServerCpu),
            );
            let added = match (a, b) {
                (Some(a), Some(b)) => format!("{:+.3} µs", b.median - a.median),
                _ => "—".into(),
            };
            let ratio = match stat(&ratios) {
                Some(r) => format!("{:.3} ({:.3}–{:.3})", r.median, r.min, r.max),
                None => "—".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                f.name(),
                cell(Metric::ServerCpu, a),
                cell(Metric::ServerCpu, b),
                ratio,
                added,
                cell(Metric::Rps, self.stat(si, plain, Metric::Rps)),
                cell(Metric::Rps, self.stat(si, dl, Metric::Rps)),
            );
        }
        md.push('\n');
    }

    fn paired_ratios(&self, si: usize, base: Variant, other: Variant, m: Metric) -> Vec<f64> {
        self.samples_of(si, other)
            .filter_map(|o| {
                let b = self.samples_of(si, base).find(|b| b.repeat == o.repeat)?;
                Some(m.of(o)? / m.of(b)?)
            })
            .collect()
    }

    fn errors_section(&self, md: &mut String) {
        let failed: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.error.is_some() || s.load.as_ref().is_some_and(|l| l.errors > 0))
            .collect();
        if failed.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Failed runs (⚠)\n");
        for s in failed {
            let what = match (&s.error, &s.load) {
                (Some(e), _) => e.clone(),
                (None, Some(l)) => format!("{} connections failed", l.errors),
                (None, None) => "no result".into(),
            };
            let _ = writeln!(
                md,
                "- {} · {} · run {}: {}",
                self.scenarios[s.scenario].title,
                s.variant,
                s.repeat + 1,
                what
            );
        }
        md.push('\n');
    }

    fn targets_section(&self, md: &mut String) {
        let targets = self.targets();
        if targets.is_empty() {
            return;
        }
        let _ = writeln!(md, "## The issue's targets (netpoll)\n");
        let _ = writeln!(
            md,
            "A round is one run of each server, back to back. *Rounds met* compares netpoll's \
             run with the reference's run of the same round, which a swing of the machine's \
             speed between rounds does not tilt.\n"
        );
        let _ = writeln!(md, "| target | measured (medians) | verdict | rounds met |");
        let _ = writeln!(md, "|---|---|---|---|");
        for t in targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) if t.overlap => {
                    "**missed** at the medians; within noise (the min–max ranges overlap)"
                }
                Some(false) => "**missed**",
                None => "not measured",
            };
            let rounds = match t.rounds {
                Some((met, n)) if n > 1 => format!("{met} of {n}"),
                _ => "–".into(),
            };
            let _ = writeln!(md, "| {} | {} | {verdict} | {rounds} |", t.what, t.measured);
        }
        md.push('\n');
    }

    /// Compares netpoll's median with a reference: `netpoll <= factor × reference` (or `>=`
    /// when `at_least`).
    fn compare(
        &self,
        id: &str,
        m: Metric,
        reference: Family,
        factor: f64,
        at_least: bool,
    ) -> Target {
        let si = self.index(id);
        let ours = si.and_then(|si| self.stat(si, NETPOLL, m));
        let theirs = si.and_then(|si| self.stat(si, Variant::plain(reference), m));
        let scen = self
            .index(id)
            .map_or(id.to_string(), |i| self.scenarios[i].title.clone());
        let op = if at_least { "≥" } else { "≤" };
        let factor_txt = if factor == 1.0 {
            String::new()
        } else {
            format!("{factor} × ")
        };
        let what = format!(
            "{scen}: {} {op} {factor_txt}{}",
            m.short(),
            reference.name()
        );
        let meets = |ours: f64, theirs: f64| {
            if at_least {
                ours >= factor * theirs
            } else {
                ours <= factor * theirs
            }
        };
        let rounds = si.map(|si| {
            let pairs = self.paired_ratios(si, Variant::plain(reference), NETPOLL, m);
            (
                pairs.iter().filter(|&&r| meets(r, 1.0)).count(),
                pairs.len(),
            )
        });
        match (ours, theirs) {
            (Some(a), Some(b)) => Target {
                what,
                measured: format!(
                    "netpoll {} vs {} {} (÷ {:.2})",
                    m.format(a.median),
                    reference.name(),
                    m.format(b.median),
                    a.median / b.median
                ),
                met: Some(meets(a.median, b.median)),
                overlap: if at_least {
                    a.max >= factor * b.min
                } else {
                    a.min <= factor * b.max
                },
                rounds,
            },
            _ => Target {
                what,
                measured: "—".into(),
                met: None,
                overlap: false,
                rounds: None,
            },
        }
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let echo50 = "echo-64-c50-pinned";
        if self.index(echo50).is_some() {
            t.push(self.compare(echo50, Metric::Rps, Family::Tokio, 1.0, true));
            t.push(self.compare(echo50, Metric::Rps, Family::Floor, 0.97, true));
            t.push(self.compare(echo50, Metric::P99, Family::Tokio, 1.0, false));
        }
        for id in ["echo-64-c500-pinned", "echo-64-c5000-pinned"] {
            if self.index(id).is_some() {
                t.push(self.compare(id, Metric::P99, Family::Floor, 1.1, false));
            }
        }
        let open = "echo-open-40k-c50";
        if self.index(open).is_some() {
            t.push(self.compare(open, Metric::ServerCpu, Family::Tokio, 1.0, false));
            t.push(self.compare(open, Metric::ServerCpu, Family::Floor, 1.05, false));
            t.push(self.compare(open, Metric::P99, Family::Tokio, 1.0, false));
        }
        if let Some(si) = self.index("deadline-churn-c50") {
            t.extend(self.deadline_targets(si));
        }
        for id in ["http-c50-pinned", "http-c500-pinned"] {
            if self.index(id).is_some() {
                t.push(self.compare(id, Metric::Rps, Family::Tokio, 1.0, true));
            }
        }
        for id in ["hyper-c50-pinned", "hyper-c50-unpinned"] {
            if let Some(si) = self.index(id) {
                let mut target = self.compare(id, Metric::Rps, Family::Tokio, 1.0, true);
                target.what = format!(
                    "{}: hyper on netpoll ≥ 1.0× hyper on tokio (req/s)",
                    self.scenarios[si].title
                );
                t.push(target);
            }
        }
        for id in ["idle-memory-c10000", "idle-memory-c50000"] {
            if self.index(id).is_some() {
                t.push(self.compare(id, Metric::MemPerConn, Family::Tokio, 1.0, false));
            }
        }
        if self.index("syscalls-echo-c50").is_some() {
            let m = self.median("syscalls-echo-c50", NETPOLL, Metric::SyscallsPerReq);
            let waits = self.median("syscalls-echo-c50", NETPOLL, Metric::WaitsPerReq);
            t.push(Target {
                what: "system calls per echo round trip at 50 conns ≤ 2.05".into(),
                measured: match (m, waits) {
                    (None, _) => "—".into(),
                    (Some(m), None) => format!("netpoll {m:.3}"),
                    (Some(m), Some(w)) => format!(
                        "netpoll {m:.3}, of which {w:.3} `epoll_wait` (how often the server ran \
                         dry, which the loader's pace decides)"
                    ),
                },
                met: m.map(|m| m <= 2.05),
                overlap: false,
                rounds: None,
            });
        }
        t
    }

    /// "Within noise": the range of the paired ratios (with ÷ without) contains 1. And, when
    /// the run included it, the micro-benchmark's target: netpoll's added cost per bounded read
    /// at most half of tokio's, with no allocation.
    fn deadline_targets(&self, si: usize) -> Vec<Target> {
        let with = Variant::with_deadline(Family::Netpoll);
        let ratios = self.paired_ratios(si, NETPOLL, with, Metric::ServerCpu);
        let within = stat(&ratios).map(|r| (r, r.min <= 1.0 && 1.0 <= r.max));
        let mut t = vec![Target {
            what: format!(
                "{}: CPU/req with deadline within noise of without (paired ratio range holds 1)",
                self.scenarios[si].title
            ),
            measured: within.map_or("—".into(), |(r, _)| {
                format!(
                    "ratio {:.3} ({:.3}–{:.3}), {} pairs",
                    r.median, r.min, r.max, r.n
                )
            }),
            met: within.map(|(_, ok)| ok),
            overlap: false,
            rounds: None,
        }];
        if let Some(cost) = self.deadline_micro {
            let [(np, np_lo, np_hi), (tk, tk_lo, tk_hi)] = cost.added_ns;
            t.push(Target {
                what: "deadlines, in process (`micro`): netpoll's added cost of bounding a ready \
                       read ≤ ½ tokio's, with no allocation"
                    .into(),
                measured: format!(
                    "netpoll +{np:.1} ns ({np_lo:.1}–{np_hi:.1}) vs tokio +{tk:.1} ns \
                     ({tk_lo:.1}–{tk_hi:.1}) per read (÷ {:.2}); {:.2} allocations per read; \
                     {} interleaved repeats",
                    np / tk,
                    cost.netpoll_allocs,
                    cost.repeats
                ),
                met: Some(cost.met()),
                overlap: false,
                rounds: None,
            });
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts_and_range() {
        let s = stat(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(stat(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(stat(&[]).is_none());
        assert!(stat(&[f64::NAN]).is_none());
    }

    #[test]
    fn cells_show_the_range_only_when_there_is_one() {
        let one = stat(&[1500.0]);
        assert_eq!(cell(Metric::Rps, one), "1.5k");
        let many = stat(&[1000.0, 2000.0, 3000.0]);
        assert_eq!(cell(Metric::Rps, many), "2.0k (1.0k–3.0k)");
        assert_eq!(cell(Metric::P99, stat(&[12_345.0])), "12.3 ms");
        assert_eq!(cell(Metric::P99, None), "—");
    }

    #[test]
    fn a_target_missed_at_the_medians_is_within_noise_when_ranges_overlap_and_rounds_are_counted() {
        use crate::run::{Plan, Sample};
        use crate::scenario::table;
        let scenarios = table();
        let si = scenarios
            .iter()
            .position(|s| s.id == "idle-memory-c10000")
            .unwrap();
        let sample = |family, repeat, bytes| Sample {
            scenario: si,
            variant: Variant::plain(family),
            repeat,
            load: None,
            mem_per_conn: Some(bytes),
            syscalls_per_req: None,
            waits_per_req: None,
            error: None,
        };
        let plan = Plan {
            repeats: 3,
            warmup: 1.0,
            duration: 5.0,
            families: vec![Family::Netpoll, Family::Tokio],
            tracer: None,
            wait_quiet: 0.0,
        };
        let env = Environment {
            date: String::new(),
            cpu: String::new(),
            cores: 2,
            kernel: String::new(),
            versions: String::new(),
            command: String::new(),
            notes: Vec::new(),
        };
        let verdict = |ours: [f64; 3], tokio: [f64; 3]| {
            let mut samples = Vec::new();
            for r in 0..3 {
                samples.push(sample(Family::Netpoll, r, ours[r]));
                samples.push(sample(Family::Tokio, r, tokio[r]));
            }
            let report = Report {
                mode: "test",
                scenarios: &scenarios,
                samples: &samples,
                plan: &plan,
                env: &env,
                deadline_micro: None,
            };
            let t = report.compare(
                "idle-memory-c10000",
                Metric::MemPerConn,
                Family::Tokio,
                1.0,
                false,
            );
            (t.met, t.overlap, t.rounds)
        };
        // Lower is better here. Clearly better, clearly worse, worse at the medians only.
        assert_eq!(
            verdict([90.0, 91.0, 92.0], [100.0, 101.0, 102.0]),
            (Some(true), true, Some((3, 3)))
        );
        assert_eq!(
            verdict([110.0, 111.0, 112.0], [100.0, 101.0, 102.0]),
            (Some(false), false, Some((0, 3)))
        );
        assert_eq!(
            verdict([99.0, 103.0, 104.0], [100.0, 101.0, 102.0]),
            (Some(false), true, Some((1, 3)))
        );
        // Rounds pair each run with the reference's run of the same round: one disturbed run
        // decides the medians here, but not the other two rounds.
        assert_eq!(
            verdict([99.0, 103.0, 150.0], [100.0, 104.0, 102.0]),
            (Some(false), true, Some((2, 3)))
        );
    }
}

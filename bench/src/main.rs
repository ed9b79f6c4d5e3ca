//! netpoll-bench: netpoll side by side with tokio, Go and a runtime-free epoll loop (the
//! floor), on one machine in one run.
//!
//! ```text
//! cargo run --release -p netpoll-bench -- quick     # about a minute
//! cargo run --release -p netpoll-bench -- full      # every scenario, Go when installed
//! ```
//!
//! Layout: `server/` (one module per server family), `load/` (the load generators, run as
//! child processes of this binary), `scenario.rs` (the table of what runs), `run.rs` (the
//! interleaved runs), `report/` (tables, targets, chart).

mod load;
mod micro;
mod proto;
mod report;
mod run;
mod scenario;
mod server;
mod soak;
mod sys;

use std::io;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use report::{Environment, Report};
use run::Plan;
use server::{Binaries, Family, InProcess, Tracer};

#[derive(Parser)]
#[command(
    name = "netpoll-bench",
    about = "netpoll side by side with tokio, Go and a runtime-free epoll loop (the floor)",
    long_about = "netpoll side by side with tokio, Go and a runtime-free epoll loop (the floor).\n\n\
        `quick` builds netpoll's examples and compares netpoll, tokio and the floor on echo and \
        HTTP (about a minute). `full` runs every scenario: echo at 1/50/500/5000 connections \
        with 64 B and 4 KiB messages, pinned and with 2 workers; HTTP with pipelining; hyper on \
        netpoll vs hyper on tokio (50 connections, pinned and with 2 workers); an open loop at a fixed rate; system calls per request; deadline churn; idle memory at \
        10,000 and 50,000 connections (Go too when `go` is installed).\n\n\
        Results: a table on stdout, bench/results/<mode>.md and .png, the raw runs in \
        target/netpoll-bench/; `full` also updates docs/BENCHMARKS.md."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// netpoll vs tokio vs the floor: echo 64 B and HTTP, 50 connections, pinned (about a
    /// minute).
    Quick(RunArgs),
    /// Every scenario, Go included when installed (about 45 minutes).
    Full(RunArgs),
    /// Lists the scenarios (ids for --only).
    List,
    /// Runs one server until killed; ADDR, WORKERS and DEADLINE_MS come from the environment.
    Serve {
        #[arg(value_enum)]
        kind: InProcess,
    },
    /// Runs one load against a server and prints a RESULT line.
    Load(load::LoadArgs),
    /// In-process micro-benchmarks, netpoll vs tokio: spawn, wake-to-run, timers, deadlines
    /// (`micro --help` for its options).
    #[command(disable_help_flag = true)]
    Micro {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Churns connections with random faults and fails on a leak trend (`soak --help`).
    #[command(disable_help_flag = true)]
    Soak {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Interleaved repeats per scenario (deadline churn always does at least 8 pairs).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Seconds measured per run [default: 2.5 quick, 5 full].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of warm-up per run [default: 0.5 quick, 1 full].
    #[arg(long)]
    warmup: Option<f64>,
    /// Only the scenarios whose id contains one of these (repeatable; see `list`).
    #[arg(long)]
    only: Vec<String>,
    /// Servers to compare, comma-separated [default: netpoll,tokio,floor for quick; and go
    /// for full when installed].
    #[arg(long, value_delimiter = ',', value_enum)]
    servers: Option<Vec<FamilyArg>>,
    /// Use the servers already built instead of building them.
    #[arg(long)]
    no_build: bool,
    /// Where the summary goes [default: bench/results].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not update docs/BENCHMARKS.md (full only).
    #[arg(long)]
    no_docs: bool,
    /// Before each run, wait up to this many seconds for the rest of the machine to be quiet
    /// (under 10% of a core), for a shared machine. Runs go ahead anyway after that; the
    /// "other load" column shows what they met.
    #[arg(long, default_value_t = 0.0)]
    wait_quiet: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FamilyArg {
    Netpoll,
    Tokio,
    Go,
    Floor,
}

impl From<FamilyArg> for Family {
    fn from(f: FamilyArg) -> Family {
        match f {
            FamilyArg::Netpoll => Family::Netpoll,
            FamilyArg::Tokio => Family::Tokio,
            FamilyArg::Go => Family::Go,
            FamilyArg::Floor => Family::Floor,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Quick(args) => bench("quick", args),
        Cmd::Full(args) => bench("full", args),
        Cmd::List => {
            for s in scenario::table() {
                let quick = if s.in_quick { "  (quick)" } else { "" };
                println!("{:<24} {}{quick}", s.id, s.title);
            }
            Ok(())
        }
        Cmd::Serve { kind } => server::serve(kind),
        Cmd::Load(args) => load::main(&args),
        Cmd::Micro { args } => micro::run(&args),
        Cmd::Soak { args } => soak::run(&args),
    };
    if let Err(e) = res {
        eprintln!("netpoll-bench: {e}");
        std::process::exit(1);
    }
}

/// Interleaved repeats of the deadline micro-benchmark in `full` (as `micro`'s default).
const MICRO_REPEATS: usize = 5;

fn bench(mode: &str, args: RunArgs) -> io::Result<()> {
    let full = mode == "full";
    let mut notes = Vec::new();
    // The idle-memory scenario holds 50,000 connections on each side.
    let limit = sys::raise_nofile_limit(120_000)?;
    let scenarios: Vec<_> = scenario::table()
        .into_iter()
        .filter(|s| full || s.in_quick)
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| s.id.contains(o.as_str())))
        .filter(|s| {
            // The server holds one descriptor per connection: without the right to raise the
            // hard limit (CAP_SYS_RESOURCE), a scenario above it cannot run.
            let fits = s.fds_needed() <= limit;
            if !fits {
                let note = format!(
                    "{} skipped: it needs {} file descriptors per process and RLIMIT_NOFILE \
                     cannot be raised above {limit} here",
                    s.id,
                    s.fds_needed()
                );
                eprintln!("note: {note}");
                notes.push(note);
            }
            fits
        })
        .collect();
    if scenarios.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no scenario matches --only",
        ));
    }
    let mut families: Vec<Family> = match &args.servers {
        Some(list) => list.iter().map(|&f| f.into()).collect(),
        None if full => vec![Family::Netpoll, Family::Tokio, Family::Go, Family::Floor],
        None => vec![Family::Netpoll, Family::Tokio, Family::Floor],
    };
    let bins = Binaries::prepare(!args.no_build, families.contains(&Family::Go))?;
    if bins.go.is_none() && families.contains(&Family::Go) {
        families.retain(|&f| f != Family::Go);
        notes.push("Go is not installed: its servers were skipped".into());
    }
    let tracer = if scenarios
        .iter()
        .any(|s| matches!(s.kind, scenario::Kind::Syscalls { .. }))
    {
        let t = Tracer::detect();
        if t.is_none() {
            notes.push("neither perf nor strace works here: system calls not counted".into());
        }
        t
    } else {
        None
    };
    let plan = Plan {
        repeats: args.repeats.max(1),
        warmup: args.warmup.unwrap_or(if full { 1.0 } else { 0.5 }),
        duration: args.duration.unwrap_or(if full { 5.0 } else { 2.5 }),
        families,
        tracer,
        wait_quiet: args.wait_quiet,
    };
    if plan.repeats < 3 {
        notes.push(format!(
            "only {} repeat(s) per scenario: ranges are not meaningful",
            plan.repeats
        ));
    }
    let raw_dir = server::target_dir().join("netpoll-bench");
    std::fs::create_dir_all(&raw_dir)?;
    let raw_path = raw_dir.join(format!("raw-{}.tsv", summary_name(mode, &args)));
    let mut raw = io::BufWriter::new(std::fs::File::create(&raw_path)?);
    eprintln!("raw runs: {}", raw_path.display());
    let samples = run::run_all(&bins, &scenarios, &plan, &mut raw);
    // The deadline target is the in-process micro-benchmark's (loopback runs only show whether
    // moving a deadline is lost in the noise): `full` runs its deadline case too.
    let deadline_micro = if full && scenarios.iter().any(|s| s.id == "deadline-churn-c50") {
        eprintln!("micro-benchmark: deadline cost, {MICRO_REPEATS} interleaved repeats");
        match micro::deadline_cost(MICRO_REPEATS) {
            Ok(cost) => Some(cost),
            Err(e) => {
                eprintln!("note: the deadline micro-benchmark failed: {e}");
                None
            }
        }
    } else {
        None
    };
    let go_version = bins.go.as_ref().and_then(|_| server::go::version());
    let command = std::iter::once("netpoll-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let env = Environment::collect(command, go_version, notes);
    let report = Report {
        mode,
        scenarios: &scenarios,
        samples: &samples,
        plan: &plan,
        env: &env,
        deadline_micro: deadline_micro.as_ref(),
    };
    let md = report.markdown();
    println!("\n{md}");
    write_outputs(&report, &md, &args, full)
}

/// The file name of a run's outputs: a run restricted with --only does not replace the
/// committed summary of the whole set.
fn summary_name(mode: &str, args: &RunArgs) -> String {
    if args.only.is_empty() {
        mode.to_string()
    } else {
        format!("{mode}-partial")
    }
}

const DOCS_BEGIN: &str = "<!-- netpoll-bench:begin -->";
const DOCS_END: &str = "<!-- netpoll-bench:end -->";

fn write_outputs(report: &Report, md: &str, args: &RunArgs, full: bool) -> io::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| server::workspace_root().join("bench").join("results"));
    std::fs::create_dir_all(&out)?;
    let name = summary_name(report.mode, args);
    let md_path = out.join(format!("{name}.md"));
    std::fs::write(&md_path, md)?;
    eprintln!("summary: {}", md_path.display());
    let png = out.join(format!("{name}.png"));
    if report::chart::draw(report, &png)? {
        eprintln!("chart: {}", png.display());
    }
    if full && args.only.is_empty() && !args.no_docs {
        update_docs(md)?;
    }
    Ok(())
}

/// Replaces the generated section of docs/BENCHMARKS.md (between the markers) with `md`.
fn update_docs(md: &str) -> io::Result<()> {
    let path = server::workspace_root().join("docs").join("BENCHMARKS.md");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        eprintln!("note: {} not found: not updated", path.display());
        return Ok(());
    };
    let (Some(b), Some(e)) = (doc.find(DOCS_BEGIN), doc.find(DOCS_END)) else {
        eprintln!(
            "note: {} has no {DOCS_BEGIN} … {DOCS_END} markers: not updated",
            path.display()
        );
        return Ok(());
    };
    // The summary's own title would clash with the document's: demote every heading.
    let body = md
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let updated = format!("{}{DOCS_BEGIN}\n{body}\n{}", &doc[..b], &doc[e..]);
    std::fs::write(&path, updated)?;
    eprintln!("updated {}", path.display());
    Ok(())
}

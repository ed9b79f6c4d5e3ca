//! `netpoll-bench soak`: a long run of connection churn with random faults, watched for leaks.
//!
//! ```text
//! netpoll-bench soak [--secs N] [--conns C] [--server-workers W] [--client-workers W]
//!                    [--settle S] [--seed X]
//! ```
//!
//! One process runs a netpoll echo server (its own runtime, `--server-workers`, default 2)
//! and `--conns` client loops (default 64) on a second runtime (`--client-workers`, default
//! 1). Each client loop opens a connection, plays one scenario on it, and starts over: orderly
//! round trips, resets with a reply in flight (SO_LINGER 0), half-closes, requests dribbled in
//! within and past the server's 300 ms read deadline, a large reply never read (the server's
//! 300 ms write deadline drops it), client read deadlines expiring, reads cancelled midway,
//! closes under a pending read, idle pauses (`client.rs` lists them). Every request and reply
//! names its connection and its sequence number; payloads are checked byte for byte.
//!
//! Every second the soak prints open descriptors, RSS, live tasks on each runtime, registered
//! sockets, armed timers, scenarios completed, the server's read- and write-deadline drops,
//! drops due to lateness (a client, or the server, held up past the server's deadline by the
//! machine's load: `client.rs`, `server.rs`), and violations; the totals of every expected
//! fault come at the end. After `--secs` seconds (default 30) the clients finish their scenario and stop,
//! and the soak waits up to `--settle` seconds (default 10) for the process to come back to
//! its baseline.
//!
//! It fails (an `Err`, so a non-zero exit) on:
//! * any violation: wrong or torn data, a frame on the wrong connection, an undocumented error,
//!   a deadline firing early or on a socket without one (including the server dropping a
//!   client sooner than its deadline allows), a scenario hung for 10 s, a client task that
//!   panicked;
//! * a stall: no scenario completed for 5 seconds in a row while the load ran;
//! * a leak, by the rules in `probe.rs`: descriptors, live tasks, registered sockets or armed
//!   timers not back to their baseline after the settle time, or RSS growing through the second
//!   half of the load by more than max(4 MiB, 5 % of the RSS).

mod client;
mod probe;
mod server;

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use client::{Scenario, SCENARIOS};
use probe::{Levels, RssTrend};

/// Options of the soak (see the module docs).
#[derive(Clone, Debug)]
struct Options {
    secs: u64,
    conns: u32,
    server_workers: usize,
    client_workers: usize,
    settle: u64,
    seed: u64,
}

impl Options {
    fn parse(args: &[String]) -> io::Result<Options> {
        let mut o = Options {
            secs: 30,
            conns: 64,
            server_workers: 2,
            client_workers: 1,
            settle: 10,
            seed: 1,
        };
        // The subcommand's own name may come first.
        let mut it = args.iter().skip_while(|a| *a == "soak");
        while let Some(flag) = it.next() {
            let mut value = |name: &str| -> io::Result<u64> {
                let v = it
                    .next()
                    .ok_or_else(|| bad(format!("{name} needs a value")))?;
                v.parse()
                    .map_err(|_| bad(format!("{name}: not a number: {v:?}")))
            };
            match flag.as_str() {
                "--secs" => o.secs = value("--secs")?,
                "--conns" => o.conns = value("--conns")? as u32,
                "--server-workers" => o.server_workers = value("--server-workers")? as usize,
                "--client-workers" => o.client_workers = value("--client-workers")? as usize,
                "--settle" => o.settle = value("--settle")?,
                "--seed" => o.seed = value("--seed")?,
                "-h" | "--help" => return Err(bad(USAGE.to_string())),
                other => return Err(bad(format!("unknown option {other:?}\n{USAGE}"))),
            }
        }
        if o.secs == 0 || o.conns == 0 || o.conns >= 4096 {
            return Err(bad(format!(
                "--secs must be at least 1 and --conns between 1 and 4095\n{USAGE}"
            )));
        }
        Ok(o)
    }
}

const USAGE: &str = "usage: netpoll-bench soak [--secs N] [--conns C] [--server-workers W] \
                     [--client-workers W] [--settle S] [--seed X]";

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Counters shared by the server, the clients and the sampler.
#[derive(Default)]
pub(crate) struct Stats {
    server_conns: AtomicU64,
    client_conns: AtomicU64,
    round_trips: AtomicU64,
    scenarios: [AtomicU64; SCENARIOS],
    /// The server's read deadline dropped a client (slow or silent).
    server_read_timeout: AtomicU64,
    /// The server's write deadline dropped a client that did not read.
    server_write_timeout: AtomicU64,
    server_reset: AtomicU64,
    server_write_reset: AtomicU64,
    server_eof: AtomicU64,
    emfile: AtomicU64,
    client_timeout: AtomicU64,
    client_cancelled: AtomicU64,
    client_closed: AtomicU64,
    client_connect_limited: AtomicU64,
    /// The server dropped a client that was held up past its read deadline (`client.rs`,
    /// "Late clients").
    client_late: AtomicU64,
    /// The server's read timed out with bytes of the request already received (`server.rs`).
    server_late: AtomicU64,
    /// The peers (client addresses) of the connections counted in `server_late`, until their
    /// client has seen the drop.
    late_peers: Mutex<HashSet<SocketAddr>>,
    violations: AtomicU64,
    /// The first violations, for the report.
    first_violations: Mutex<Vec<String>>,
}

impl Stats {
    fn bump(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn scenario_done(&self, s: Scenario) {
        self.bump(&self.scenarios[s.index()]);
    }

    fn scenarios_done(&self) -> u64 {
        self.scenarios.iter().map(Stats::get).sum()
    }

    /// Whether the server dropped the client at `local` because the server was late; forgets
    /// it.
    fn server_was_late(&self, local: Option<SocketAddr>) -> bool {
        local.is_some_and(|a| self.late_peers.lock().unwrap().remove(&a))
    }

    fn violation(&self, what: String) {
        if self.violations.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("soak: violation: {what}");
            self.first_violations.lock().unwrap().push(what);
        }
    }
}

/// A small xorshift generator: reproducible choices (`--seed`) without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A frame: connection id, sequence number, and a check word derived from both, so a frame
/// read on the wrong connection, or torn, is caught.
const FRAME: usize = 16;
/// A request: a frame and the length of the reply's payload (u32, little endian).
const REQUEST: usize = FRAME + 4;

fn check_word(id: u32, seq: u32) -> u64 {
    (((id as u64) << 32) | seq as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5851_F42D_4C95_7F2D
}

fn frame(id: u32, seq: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..4].copy_from_slice(&id.to_le_bytes());
    f[4..8].copy_from_slice(&seq.to_le_bytes());
    f[8..].copy_from_slice(&check_word(id, seq).to_le_bytes());
    f
}

fn parse_frame(f: &[u8; FRAME]) -> Option<(u32, u32)> {
    let id = u32::from_le_bytes(f[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(f[4..8].try_into().unwrap());
    let check = u64::from_le_bytes(f[8..].try_into().unwrap());
    (check == check_word(id, seq)).then_some((id, seq))
}

fn request(id: u32, seq: u32, reply: usize) -> [u8; REQUEST] {
    let mut r = [0u8; REQUEST];
    r[..FRAME].copy_from_slice(&frame(id, seq));
    r[FRAME..].copy_from_slice(&(reply as u32).to_le_bytes());
    r
}

fn parse_request(r: &[u8; REQUEST]) -> Option<(u32, u32, usize)> {
    let (id, seq) = parse_frame(r[..FRAME].try_into().unwrap())?;
    let reply = u32::from_le_bytes(r[FRAME..].try_into().unwrap());
    Some((id, seq, reply as usize))
}

/// Byte `i` of every payload stream: period 251 (a prime), so a lost, repeated or misplaced
/// chunk shows.
fn payload_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The server's payload buffer: a whole number of periods (about 1 MiB), so that writing it
/// again and again continues the stream.
fn payload() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..251 * 4096).map(payload_byte).collect())
}

/// Whether `buf` is the payload stream from offset `from`.
fn is_payload(from: usize, buf: &[u8]) -> bool {
    buf.iter()
        .enumerate()
        .all(|(k, &b)| b == payload_byte(from + k))
}

/// One line of the report, every second.
struct Sample {
    /// Seconds since the load started.
    t: f64,
    rss_kib: u64,
    levels: Levels,
    done: u64,
}

/// Runs the soak with the command line `args` (after the subcommand's name; a leading "soak"
/// is skipped). Returns `Err` if it found a violation, a stall or a leak.
pub fn run(args: &[String]) -> io::Result<()> {
    let o = Options::parse(args)?;
    // Each client holds one connection, the server the other end, plus slack.
    raise_nofile_limit(2 * o.conns as u64 + 256)?;
    let stats = Arc::new(Stats::default());
    let server_rt = netpoll::Runtime::builder()
        .workers(o.server_workers)
        .thread_name("soak-server")
        .build()?;
    let client_rt = netpoll::Runtime::builder()
        .workers(o.client_workers)
        .thread_name("soak-client")
        .build()?;
    let (addr, listener) = {
        let stats = stats.clone();
        server_rt.block_on(async move { server::start(stats) })?
    };
    // Let the accept loop reach its first wait, then take the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let base = Levels::take(&server_rt, &client_rt)?;
    println!(
        "soak: {} s, {} client loops, server workers {}, client workers {}, seed {}, on {addr}",
        o.secs, o.conns, o.server_workers, o.client_workers, o.seed
    );
    println!(
        "soak: baseline: {} fds, {} server tasks, {} client tasks, {} sockets, {} timers, {} KiB RSS",
        base.fds,
        base.server_tasks,
        base.client_tasks,
        base.sockets,
        base.timers,
        probe::rss_kib()?
    );
    println!(
        "{:>6} {:>7} {:>6} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>5} {:>5}",
        "t(s)",
        "phase",
        "fds",
        "rss(KiB)",
        "s.tasks",
        "c.tasks",
        "sockets",
        "timers",
        "scen/s",
        "s.rdto",
        "s.wrto",
        "late",
        "viol"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..o.conns)
        .map(|k| client_rt.spawn(client::run(addr, k, o.seed, stats.clone(), stop.clone())))
        .collect();

    let mut samples = Vec::new();
    let mut last_done = 0;
    let mut quiet_secs = 0;
    let mut stalled = false;
    let load = Duration::from_secs(o.secs);
    for sec in 1..=o.secs {
        sleep_until(start + Duration::from_secs(sec));
        let s = sample(&server_rt, &client_rt, &stats, start)?;
        let rate = s.done - last_done;
        // A stall: nothing completed for 5 s while clients were running (the first 2 s are
        // start-up).
        quiet_secs = if rate == 0 && sec > 2 {
            quiet_secs + 1
        } else {
            0
        };
        stalled |= quiet_secs >= 5;
        print_sample("load", &s, rate, &stats);
        last_done = s.done;
        samples.push(s);
    }

    // Stop the load: each client finishes its scenario (each is bounded) and returns.
    stop.store(true, Ordering::Relaxed);
    let joined = client_rt.block_on(async {
        let mut problems = Vec::new();
        for (k, c) in clients.into_iter().enumerate() {
            match netpoll::time::timeout(Duration::from_secs(30), c).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("client {k} failed: {e:?}")),
                Err(_) => problems.push(format!("client {k} did not stop within 30 s")),
            }
        }
        problems
    });
    for p in joined {
        stats.violation(p);
    }

    // Settle: everything back to the baseline.
    let settle_end = Instant::now() + Duration::from_secs(o.settle);
    let mut next_print = Instant::now() + Duration::from_secs(1);
    let settled = loop {
        let now = Levels::take(&server_rt, &client_rt)?;
        if now == base {
            break None;
        }
        if Instant::now() >= settle_end {
            break Some(now);
        }
        if Instant::now() >= next_print {
            let s = sample(&server_rt, &client_rt, &stats, start)?;
            print_sample("settle", &s, 0, &stats);
            next_print += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let end = sample(&server_rt, &client_rt, &stats, start)?;
    print_sample("end", &end, 0, &stats);

    // The verdict.
    let mut failures = Vec::new();
    let violations = Stats::get(&stats.violations);
    if violations > 0 {
        failures.push(format!(
            "{violations} violations, first: {:?}",
            stats.first_violations.lock().unwrap()
        ));
    }
    if stalled {
        failures.push("stall: no scenario completed for 5 s in a row".into());
    }
    if let Some(now) = settled {
        failures.push(format!(
            "leak: not back to the baseline {} s after the load stopped: {}",
            o.settle,
            now.differences(&base).join(", ")
        ));
    }
    let rss: Vec<(f64, u64)> = samples.iter().map(|s| (s.t, s.rss_kib)).collect();
    let trend = probe::rss_trend(&rss, load.as_secs_f64());
    match &trend {
        RssTrend::Leak {
            growth_kib,
            allowance_kib,
        } => failures.push(format!(
            "leak: RSS grew {growth_kib:.0} KiB through the second half of the load \
             (allowed {allowance_kib:.0} KiB)"
        )),
        RssTrend::Steady {
            growth_kib,
            allowance_kib,
        } => println!(
            "soak: RSS trend over the second half: {growth_kib:+.0} KiB \
             (allowed {allowance_kib:.0} KiB)"
        ),
        RssTrend::Skipped { samples } => {
            println!("soak: RSS trend not judged: {samples} samples in the second half (5 needed)")
        }
    }
    report(&stats, load);

    listener.close()?;
    drop(client_rt);
    drop(server_rt);
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        for f in &failures {
            println!("soak: FAIL: {f}");
        }
        Err(io::Error::other(format!(
            "soak failed: {}",
            failures.join("; ")
        )))
    }
}

fn sample(
    server: &netpoll::Runtime,
    client: &netpoll::Runtime,
    stats: &Stats,
    start: Instant,
) -> io::Result<Sample> {
    Ok(Sample {
        t: start.elapsed().as_secs_f64(),
        rss_kib: probe::rss_kib()?,
        levels: Levels::take(server, client)?,
        done: stats.scenarios_done(),
    })
}

fn print_sample(phase: &str, s: &Sample, rate: u64, stats: &Stats) {
    println!(
        "{:>6.1} {:>7} {:>6} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>5} {:>5}",
        s.t,
        phase,
        s.levels.fds,
        s.rss_kib,
        s.levels.server_tasks,
        s.levels.client_tasks,
        s.levels.sockets,
        s.levels.timers,
        rate,
        Stats::get(&stats.server_read_timeout),
        Stats::get(&stats.server_write_timeout),
        Stats::get(&stats.client_late) + Stats::get(&stats.server_late),
        Stats::get(&stats.violations),
    );
}

/// The totals at the end.
fn report(stats: &Stats, load: Duration) {
    let g = Stats::get;
    let done = stats.scenarios_done();
    println!(
        "soak: {done} scenarios ({:.0}/s), {} client connections, {} round trips",
        done as f64 / load.as_secs_f64(),
        g(&stats.client_conns),
        g(&stats.round_trips)
    );
    let per: Vec<String> = Scenario::all()
        .map(|s| format!("{s:?} {}", g(&stats.scenarios[s.index()])))
        .collect();
    println!("soak: scenarios: {}", per.join(", "));
    println!(
        "soak: server: {} connections, {} read-deadline drops (and {} with the request already \
         received: server late), {} write-deadline drops, {} resets on read, {} resets/EPIPE \
         on write, {} EOFs, {} EMFILE",
        g(&stats.server_conns),
        g(&stats.server_read_timeout),
        g(&stats.server_late),
        g(&stats.server_write_timeout),
        g(&stats.server_reset),
        g(&stats.server_write_reset),
        g(&stats.server_eof),
        g(&stats.emfile),
    );
    println!(
        "soak: clients: {} deadline expiries, {} cancelled reads, {} reads ended by close, \
         {} connects refused by local limits, {} dropped for being late; {} violations",
        g(&stats.client_timeout),
        g(&stats.client_cancelled),
        g(&stats.client_closed),
        g(&stats.client_connect_limited),
        g(&stats.client_late),
        g(&stats.violations),
    );
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Raises the soft descriptor limit to at least `want` (up to the hard limit).
fn raise_nofile_limit(want: u64) -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: `lim` is a valid rlimit, with the soft limit at most the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse_with_or_without_the_subcommand_name() {
        let o = Options::parse(&args("soak --secs 5 --conns 8")).unwrap();
        assert_eq!((o.secs, o.conns, o.settle), (5, 8, 10));
        let o = Options::parse(&args("--secs 600")).unwrap();
        assert_eq!((o.secs, o.conns), (600, 64));
        assert!(Options::parse(&args("--secs")).is_err());
        assert!(Options::parse(&args("--secs ten")).is_err());
        assert!(Options::parse(&args("--conns 0")).is_err());
        assert!(Options::parse(&args("--frobnicate 1")).is_err());
    }

    #[test]
    fn frames_and_requests_round_trip_and_catch_tearing() {
        let r = request(7, 9, 4096);
        assert_eq!(parse_request(&r), Some((7, 9, 4096)));
        let mut torn = r;
        torn[5] ^= 1;
        assert_eq!(parse_request(&torn), None);
        let f = frame(1, 2);
        let mut other = frame(3, 2);
        other[8..].copy_from_slice(&f[8..]);
        assert_eq!(parse_frame(&other), None);
    }

    #[test]
    fn the_payload_buffer_continues_itself() {
        let p = payload();
        assert!(is_payload(0, p));
        assert!(
            is_payload(p.len(), p),
            "a repeated buffer continues the stream"
        );
        assert!(!is_payload(1, p));
    }
}

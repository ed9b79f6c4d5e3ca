//! The soak's clients: each loop opens a connection, plays one scenario on it — orderly, or
//! with a fault — checks every outcome, and starts over until told to stop.
//!
//! A scenario fails for anything the runtime's documented semantics do not allow (wrong data,
//! an undocumented error, a deadline that fired on a socket without one); the loop records it
//! as a violation. Expected faults are counted, not reported.
//!
//! # Late clients
//!
//! The server gives every request 300 ms. On a loaded machine a client task can be held up
//! longer than that, and the server then rightly drops it: that is the server's deadline
//! working, not a fault. So when a scenario that expected to be served finds itself dropped
//! (EOF, reset, broken pipe), the drop counts as *late* rather than a violation if, and only
//! if, the server's deadline could have expired. The server waits for request `j` from no
//! earlier than the start of request `j - 1` (or the connect), so some request must have been
//! written completely — or still be unsent — 300 ms or more after the start of the one before
//! it. A drop sooner than that is a deadline that fired early, and a violation, unless the
//! server reports that it was the one held up (`server.rs`).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;

use super::server::{READ_DEADLINE, WRITE_DEADLINE};
use super::{is_payload, parse_frame, request, Rng, Stats, FRAME};

/// The most a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(10);
/// How long a single wait that must end promptly may take.
const PROMPT: Duration = Duration::from_secs(5);

/// The scenarios, with their weights (out of 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scenario {
    /// Round trips with replies of up to 4 KiB, every byte checked; then close or drop.
    Orderly,
    /// Round trips, then a request and a reset (SO_LINGER 0) before its reply arrives.
    Reset,
    /// Pipelined requests, a half-close, every reply, then EOF from the server.
    HalfClose,
    /// A request dribbled in four pieces, well within the server's read deadline.
    SlowWithinDeadline,
    /// Part of a request, then silence past the server's read deadline: the server drops it.
    SlowPastDeadline,
    /// A large reply that the client does not read: the server's write deadline drops it.
    NeverReads,
    /// A client read deadline expires on a silent connection; cleared, the connection works.
    ClientDeadline,
    /// A reply's read cancelled midway (or not), then the connection dropped.
    Cancelled,
    /// A close while a clone has a read pending.
    CloseUnderRead,
    /// An idle pause within the server's deadline, then a round trip.
    Idle,
}

const WEIGHTS: [(Scenario, u64); 10] = [
    (Scenario::Orderly, 30),
    (Scenario::Reset, 10),
    (Scenario::HalfClose, 10),
    (Scenario::SlowWithinDeadline, 5),
    (Scenario::SlowPastDeadline, 4),
    (Scenario::NeverReads, 3),
    (Scenario::ClientDeadline, 13),
    (Scenario::Cancelled, 10),
    (Scenario::CloseUnderRead, 10),
    (Scenario::Idle, 5),
];

/// The number of scenarios (for per-scenario counters).
pub(super) const SCENARIOS: usize = WEIGHTS.len();

impl Scenario {
    fn pick(rng: &mut Rng) -> Scenario {
        let total: u64 = WEIGHTS.iter().map(|w| w.1).sum();
        let mut x = rng.below(total);
        for (s, w) in WEIGHTS {
            if x < w {
                return s;
            }
            x -= w;
        }
        unreachable!("the weights add up to `total`")
    }

    pub(super) fn index(self) -> usize {
        WEIGHTS.iter().position(|w| w.0 == self).unwrap()
    }

    pub(super) fn all() -> impl Iterator<Item = Scenario> {
        WEIGHTS.iter().map(|w| w.0)
    }
}

/// One client: scenarios back to back until `stop`.
pub(super) async fn run(
    addr: SocketAddr,
    k: u32,
    seed: u64,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // Unique among live connections: the client number (below 2^12) above the count of
        // its connections (wrapping at 2^20, hours of churn).
        let id = (k << 20) | (n & 0xF_FFFF);
        n = n.wrapping_add(1);
        let scenario = Scenario::pick(&mut rng);
        let pace = Pace::new();
        let conn = match TcpStream::connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                match e.raw_os_error() {
                    // The client side ran out of descriptors or of ephemeral ports: the
                    // environment's limits, not the runtime's fault. Back off.
                    Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL) => {
                        stats.bump(&stats.client_connect_limited)
                    }
                    _ => stats.violation(format!("connect: {e:?}")),
                }
                netpoll::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.bump(&stats.client_conns);
        let local = conn.local_addr().ok();
        let played = netpoll::time::timeout(
            SCENARIO_LIMIT,
            play(scenario, conn, id, &mut rng, &stats, &pace),
        )
        .await;
        // Whether the server reported dropping us for its own lateness (consumed either way, so
        // that no later connection from the same port inherits it).
        let server_late = stats.server_was_late(local);
        match played {
            Ok(Ok(())) => stats.scenario_done(scenario),
            Ok(Err(Failure::Io { err, .. })) if pace.dropped_late(&err) => {
                stats.bump(&stats.client_late)
            }
            // Counted by the server.
            Ok(Err(Failure::Io { err, .. })) if is_drop(&err) && server_late => {}
            Ok(Err(f)) => stats.violation(format!("{scenario:?} on connection {id}: {f}")),
            Err(_) => stats.violation(format!(
                "{scenario:?} on connection {id} hung for {SCENARIO_LIMIT:?}"
            )),
        }
    }
}

/// Why a scenario failed.
enum Failure {
    /// An I/O operation failed unexpectedly (a violation, unless the client was late).
    Io { what: &'static str, err: io::Error },
    /// Anything else: wrong data, a wrong result, a wait that did not end.
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Other(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Other(s.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io { what, err } => write!(f, "{what}: {err:?}"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

type Played = Result<(), Failure>;

/// Maps an unexpected I/O error to a [`Failure`].
fn fail<T>(what: &'static str) -> impl FnOnce(io::Error) -> Result<T, Failure> {
    move |err| Err(Failure::Io { what, err })
}

/// When the client began to connect, and when it started and finished writing each request
/// (module docs, "Late clients").
struct Pace {
    origin: Instant,
    requests: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            origin: Instant::now(),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Writes request `seq` (asking for `reply` bytes), noting when it started and ended.
    async fn send(&self, c: &TcpStream, id: u32, seq: u32, reply: usize) -> Played {
        self.started();
        c.write_all(&request(id, seq, reply))
            .await
            .or_else(fail("write a request"))?;
        self.written();
        Ok(())
    }

    fn started(&self) {
        self.requests.lock().unwrap().push((Instant::now(), None));
    }

    fn written(&self) {
        if let Some(last) = self.requests.lock().unwrap().last_mut() {
            last.1 = Some(Instant::now());
        }
    }

    /// Whether `err` is the server dropping the connection when its read deadline may have
    /// expired: the server waits for request `j` from no earlier than the start of request
    /// `j - 1` (or the connect), so some request must have been completed — or still be
    /// unsent — 300 ms or more after the start of the one before it.
    fn dropped_late(&self, err: &io::Error) -> bool {
        if !is_drop(err) {
            return false;
        }
        let now = Instant::now();
        let mut clock = self.origin;
        for &(start, end) in self.requests.lock().unwrap().iter() {
            if end.unwrap_or(now).saturating_duration_since(clock) >= READ_DEADLINE {
                return true;
            }
            clock = start;
        }
        now.saturating_duration_since(clock) >= READ_DEADLINE
    }
}

/// Whether `err` is how a client sees the server drop its connection.
fn is_drop(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Awaits `fut` for at most [`PROMPT`].
async fn prompt<F: std::future::Future>(what: &str, fut: F) -> Result<F::Output, String> {
    netpoll::time::timeout(PROMPT, fut)
        .await
        .map_err(|_| format!("{what}: still waiting after {PROMPT:?}"))
}

/// One round trip: request `seq` asking for `reply` bytes; the echoed frame and the payload are
/// checked.
async fn round_trip(
    c: &TcpStream,
    id: u32,
    seq: u32,
    reply: usize,
    stats: &Stats,
    pace: &Pace,
) -> Played {
    pace.send(c, id, seq, reply).await?;
    read_reply(c, id, seq, reply).await?;
    stats.bump(&stats.round_trips);
    Ok(())
}

async fn read_reply(c: &TcpStream, id: u32, seq: u32, reply: usize) -> Played {
    let mut f = [0u8; FRAME];
    c.read_exact(&mut f).await.or_else(fail("read a reply"))?;
    if parse_frame(&f) != Some((id, seq)) {
        return Err(format!("the reply to {seq} was {:?}", parse_frame(&f)).into());
    }
    let mut buf = vec![0u8; reply];
    c.read_exact(&mut buf)
        .await
        .or_else(fail("read a payload"))?;
    if !is_payload(0, &buf) {
        return Err(format!("a corrupt payload in the reply to {seq}").into());
    }
    Ok(())
}

/// Reads until EOF or a reset, checking the payload from stream offset `from`; returns the
/// bytes read.
async fn drain(c: &TcpStream, from: usize) -> Result<usize, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match c.read(&mut buf).await {
            Ok(0) => return Ok(total),
            Ok(n) => {
                if !is_payload(from + total, &buf[..n]) {
                    return Err(format!("corrupt data at offset {}", from + total));
                }
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(total),
            Err(e) => return Err(format!("drain: {e:?}")),
        }
    }
}

async fn play(
    scenario: Scenario,
    c: TcpStream,
    id: u32,
    rng: &mut Rng,
    stats: &Stats,
    pace: &Pace,
) -> Played {
    match scenario {
        Scenario::Orderly => {
            for seq in 0..1 + rng.below(20) as u32 {
                round_trip(&c, id, seq, rng.below(4097) as usize, stats, pace).await?;
            }
            if rng.below(2) == 0 {
                c.close().or_else(fail("close"))?;
            }
        }
        Scenario::Reset => {
            let k = rng.below(4) as u32;
            for seq in 0..k {
                round_trip(&c, id, seq, rng.below(1024) as usize, stats, pace).await?;
            }
            pace.send(&c, id, k, 64 * 1024).await?;
            c.set_linger(Some(Duration::ZERO))
                .or_else(fail("set_linger"))?;
            c.close().or_else(fail("close"))?;
        }
        Scenario::HalfClose => {
            let k = 1 + rng.below(8) as u32;
            let sizes: Vec<usize> = (0..k).map(|_| rng.below(2048) as usize).collect();
            for (seq, &size) in sizes.iter().enumerate() {
                pace.send(&c, id, seq as u32, size).await?;
            }
            c.shutdown(Shutdown::Write).or_else(fail("shutdown"))?;
            for (seq, &size) in sizes.iter().enumerate() {
                prompt(
                    "a reply after the half-close",
                    read_reply(&c, id, seq as u32, size),
                )
                .await??;
            }
            match prompt("EOF after the replies", c.read(&mut [0u8; 1])).await? {
                Ok(0) => {}
                other => return Err(format!("after the last reply: {other:?}").into()),
            }
            c.close().or_else(fail("close"))?;
        }
        Scenario::SlowWithinDeadline => {
            let req = request(id, 0, 512);
            pace.started();
            for piece in req.chunks(req.len().div_ceil(4)) {
                c.write_all(piece).await.or_else(fail("write a piece"))?;
                netpoll::time::sleep(READ_DEADLINE / 20).await;
            }
            pace.written();
            read_reply(&c, id, 0, 512).await?;
            stats.bump(&stats.round_trips);
        }
        Scenario::SlowPastDeadline => {
            let req = request(id, 0, 16);
            c.write_all(&req[..5])
                .await
                .or_else(fail("write a piece"))?;
            netpoll::time::sleep(READ_DEADLINE + Duration::from_millis(100)).await;
            // The server has given up on us: EOF (it closed with nothing of ours unread).
            match prompt("the server's drop", c.read(&mut [0u8; 1])).await? {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => return Err(format!("after the server's read deadline: {other:?}").into()),
            }
        }
        Scenario::NeverReads => {
            const HUGE: usize = 32 << 20;
            pace.send(&c, id, 0, HUGE).await?;
            netpoll::time::sleep(WRITE_DEADLINE + Duration::from_millis(200)).await;
            // The server's write timed out and it closed: what it wrote arrives intact, and
            // ends short of the whole reply.
            let mut f = [0u8; FRAME];
            c.read_exact(&mut f).await.or_else(fail("read the frame"))?;
            if parse_frame(&f) != Some((id, 0)) {
                return Err("wrong frame".into());
            }
            let got = prompt("the server's drop", drain(&c, 0)).await??;
            if got >= HUGE {
                return Err(
                    format!("the whole {HUGE}-byte reply arrived: no write deadline").into(),
                );
            }
        }
        Scenario::ClientDeadline => {
            let deadline = Instant::now() + Duration::from_micros(rng.below(5000));
            c.set_read_deadline(Some(deadline))
                .or_else(fail("set_read_deadline"))?;
            match prompt("a read with a deadline", c.read(&mut [0u8; 8])).await? {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    if Instant::now() < deadline {
                        return Err("a read timed out before its deadline".into());
                    }
                    stats.bump(&stats.client_timeout);
                }
                // The server dropped us first: a client held up past the server's deadline
                // before its own timer ran (late, if the server's deadline could have passed).
                Ok(0) => {
                    return fail("a read with a deadline")(io::ErrorKind::UnexpectedEof.into())
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return fail("a read with a deadline")(e)
                }
                other => return Err(format!("a read on a silent connection: {other:?}").into()),
            }
            c.set_read_deadline(None)
                .or_else(fail("clear the deadline"))?;
            round_trip(&c, id, 0, 64, stats, pace).await?;
        }
        Scenario::Cancelled => {
            let size = rng.below(64 * 1024) as usize;
            pace.send(&c, id, 0, size).await?;
            let wait = Duration::from_micros(rng.below(2000));
            match netpoll::time::timeout(wait, read_reply(&c, id, 0, size)).await {
                Ok(r) => r?,
                Err(_) => stats.bump(&stats.client_cancelled),
            }
        }
        Scenario::CloseUnderRead => {
            let reader = {
                let c = c.clone();
                netpoll::spawn(async move { c.read(&mut [0u8; 8]).await })
            };
            netpoll::time::sleep(Duration::from_micros(rng.below(1000))).await;
            c.close().or_else(fail("close"))?;
            match prompt("a read after close", reader).await? {
                Ok(Err(e)) if netpoll::net::is_closed(&e) => stats.bump(&stats.client_closed),
                // The server dropped us first (late, if its deadline could have passed).
                Ok(Ok(0)) => {
                    return fail("a read pending at close")(io::ErrorKind::UnexpectedEof.into())
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return fail("a read pending at close")(e)
                }
                other => return Err(format!("a read pending at close: {other:?}").into()),
            }
        }
        Scenario::Idle => {
            netpoll::time::sleep(READ_DEADLINE / 3).await;
            round_trip(&c, id, 0, 128, stats, pace).await?;
        }
    }
    Ok(())
}

//! One loader connection: the protocol it speaks, its output buffer, and the send times of its
//! outstanding requests. Shared by the closed-loop and open-loop drivers.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::proto::{self, PATTERN_LEN};
use crate::sys::{self, Epoll};

/// The largest echo message the loaders send.
pub const MAX_MESSAGE: usize = 64 * 1024;

static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| proto::pattern(MAX_MESSAGE));

/// A request/response protocol as the loader sees it.
pub trait Protocol: Send + 'static {
    /// Appends one request to `out`.
    fn push_request(&mut self, out: &mut Vec<u8>);
    /// Checks the bytes that arrived (`input` starts where the last call stopped consuming):
    /// returns how many responses were completed and how many bytes were consumed. The rest
    /// is an incomplete response, offered again with more bytes. Wrong bytes are an
    /// `InvalidData` error.
    fn take_responses(&mut self, input: &[u8]) -> io::Result<(usize, usize)>;
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Echo: messages of `size` bytes cut from the connection's pattern stream; every echoed byte
/// is compared with what was sent at that offset.
pub struct Echo {
    size: usize,
    /// Where this connection's stream starts in the pattern.
    seed: usize,
    sent: u64,
    received: u64,
}

impl Echo {
    pub fn new(size: usize, conn_index: usize) -> Echo {
        assert!(
            (1..=MAX_MESSAGE).contains(&size),
            "message size out of range"
        );
        Echo {
            size,
            seed: conn_index.wrapping_mul(7919) % PATTERN_LEN,
            sent: 0,
            received: 0,
        }
    }

    fn offset(&self, stream_pos: u64) -> usize {
        ((self.seed as u64 + stream_pos) % PATTERN_LEN as u64) as usize
    }
}

impl Protocol for Echo {
    fn push_request(&mut self, out: &mut Vec<u8>) {
        let off = self.offset(self.sent);
        out.extend_from_slice(&PATTERN[off..off + self.size]);
        self.sent += self.size as u64;
    }

    fn take_responses(&mut self, input: &[u8]) -> io::Result<(usize, usize)> {
        if self.received + input.len() as u64 > self.sent {
            return Err(invalid(format!(
                "echo returned {} bytes more than were sent",
                self.received + input.len() as u64 - self.sent
            )));
        }
        let mut pos = 0;
        while pos < input.len() {
            let off = self.offset(self.received + pos as u64);
            let chunk = (input.len() - pos).min(PATTERN_LEN - off);
            if input[pos..pos + chunk] != PATTERN[off..off + chunk] {
                return Err(invalid(format!(
                    "echoed bytes differ from the sent ones at stream offset {}",
                    self.received + pos as u64
                )));
            }
            pos += chunk;
        }
        let size = self.size as u64;
        let before = self.received / size;
        self.received += input.len() as u64;
        Ok(((self.received / size - before) as usize, input.len()))
    }
}

/// HTTP/1.1 plaintext: every response must be byte for byte the servers' one response.
pub struct Http;

impl Protocol for Http {
    fn push_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(proto::HTTP_REQUEST);
    }

    fn take_responses(&mut self, input: &[u8]) -> io::Result<(usize, usize)> {
        let expected = proto::HTTP_RESPONSE;
        let whole = input.len() / expected.len();
        let used = whole * expected.len();
        let rest = &input[used..];
        let bad = input[..used].chunks(expected.len()).any(|r| r != expected)
            || rest != &expected[..rest.len()];
        if bad {
            let shown = String::from_utf8_lossy(&input[..input.len().min(200)]).into_owned();
            return Err(invalid(format!("unexpected HTTP response: {shown:?}")));
        }
        Ok((whole, used))
    }
}

/// HTTP/1.1 plaintext, each response parsed: for servers whose responses are not byte for
/// byte [`proto::HTTP_RESPONSE`] (hyper's carry a `date` header that changes every second).
/// Every response must be `200 OK` with `Hello, World!` as its body (see
/// [`proto::parse_response`]); pipelined responses may arrive in any pieces.
pub struct ParsedHttp;

impl Protocol for ParsedHttp {
    fn push_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(proto::HTTP_REQUEST);
    }

    fn take_responses(&mut self, input: &[u8]) -> io::Result<(usize, usize)> {
        let (mut count, mut used) = (0, 0);
        loop {
            match proto::parse_response(&input[used..]) {
                Ok(Some(len)) => {
                    count += 1;
                    used += len;
                }
                Ok(None) => return Ok((count, used)),
                Err(what) => {
                    let rest = &input[used..];
                    let shown = String::from_utf8_lossy(&rest[..rest.len().min(200)]);
                    return Err(invalid(format!(
                        "unexpected HTTP response ({what}): {shown:?}"
                    )));
                }
            }
        }
    }
}

/// What a loader thread measured.
pub struct Stats {
    /// Latency of the responses completed inside the measured window, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Responses completed inside the window.
    pub window: u64,
    /// Responses completed, warm-up included.
    pub total: u64,
    /// Connections that failed (reset, closed by the server).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Open loop: how late requests were written after their scheduled time (sum, count).
    pub lag_sum: Duration,
    pub lag_count: u64,
    /// Responses in the window per connection (fairness: did any connection starve?).
    pub per_conn: Vec<u64>,
    /// Every response of the window, when a latency log was asked for (`--latency-log`).
    pub log: Option<LatencyLog>,
}

/// One response in the latency log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    /// When it arrived, in nanoseconds after the measured window began.
    pub at_ns: u64,
    pub latency_ns: u64,
    /// The connection's index among all the loader's connections.
    pub conn: u32,
}

/// Every response of the measured window, in the order each loader thread saw them. Kept in
/// fixed-size chunks: growing one `Vec` would copy megabytes mid-run, and such a copy stalls
/// the loader for as long as the stalls the log is meant to find.
#[derive(Debug, Default)]
pub struct LatencyLog {
    chunks: Vec<Vec<Sample>>,
}

impl LatencyLog {
    /// Samples per chunk: 1.5 MiB.
    const CHUNK: usize = 64 * 1024;

    fn push(&mut self, sample: Sample) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk.push(sample),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(sample);
                self.chunks.push(chunk);
            }
        }
    }

    /// Every sample, ordered by arrival time (across loader threads too).
    pub fn into_sorted(self) -> Vec<Sample> {
        let mut all: Vec<Sample> = self.chunks.into_iter().flatten().collect();
        all.sort_unstable();
        all
    }
}

impl Stats {
    /// `log`: also keep every response of the window in a [`LatencyLog`].
    pub fn new(log: bool) -> Stats {
        Stats {
            // 1 ns .. 100 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
            window: 0,
            total: 0,
            errors: 0,
            first_error: None,
            lag_sum: Duration::ZERO,
            lag_count: 0,
            per_conn: Vec::new(),
            log: log.then(LatencyLog::default),
        }
    }

    /// A response on connection `conn` to the request sent (or scheduled) at `sent` arrived
    /// at `now`; returns whether it falls in the measured window.
    fn record(&mut self, conn: u32, sent: Instant, now: Instant, window: &Window) -> bool {
        self.total += 1;
        if now < window.measure_from {
            return false;
        }
        self.window += 1;
        let latency_ns = now.saturating_duration_since(sent).as_nanos() as u64;
        self.hist.saturating_record(latency_ns);
        if let Some(log) = &mut self.log {
            log.push(Sample {
                at_ns: (now - window.measure_from).as_nanos() as u64,
                latency_ns,
                conn,
            });
        }
        true
    }

    pub fn merge(&mut self, other: Stats) {
        self.hist.add(&other.hist).expect("same bounds");
        self.window += other.window;
        self.total += other.total;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.lag_sum += other.lag_sum;
        self.lag_count += other.lag_count;
        self.per_conn.extend(other.per_conn);
        if let (Some(log), Some(other)) = (&mut self.log, other.log) {
            log.chunks.extend(other.chunks);
        }
    }
}

/// The run's time line, the same for every loader thread.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    /// End of warm-up: responses from here on are measured.
    pub measure_from: Instant,
    pub end: Instant,
}

pub struct Conn<P> {
    /// Index among all the loader's connections.
    id: u32,
    stream: TcpStream,
    proto: P,
    out: Vec<u8>,
    written: usize,
    /// The start of an incomplete response.
    carry: Vec<u8>,
    /// When each outstanding request was sent (closed loop) or scheduled (open loop).
    outstanding: VecDeque<Instant>,
    /// Responses completed in the measured window.
    window_done: u64,
    dead: bool,
}

impl<P: Protocol> Conn<P> {
    pub fn new(id: usize, stream: TcpStream, proto: P) -> Conn<P> {
        Conn {
            id: id as u32,
            stream,
            proto,
            out: Vec::new(),
            written: 0,
            carry: Vec::new(),
            outstanding: VecDeque::new(),
            window_done: 0,
            dead: false,
        }
    }

    /// Queues one request, timed from `at`; [`Conn::flush`] writes it.
    pub fn queue(&mut self, at: Instant) {
        self.proto.push_request(&mut self.out);
        self.outstanding.push_back(at);
    }

    /// Writes what the socket takes; the rest waits for the next EPOLLOUT.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match (&self.stream).write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads everything that arrived and records each completed response; returns how many
    /// completed. With edge-triggered epoll, a short read means the socket is drained.
    fn read_responses(
        &mut self,
        scratch: &mut [u8],
        stats: &mut Stats,
        window: &Window,
    ) -> io::Result<usize> {
        let mut done = 0;
        loop {
            let n = match (&self.stream).read(scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let count = if self.carry.is_empty() {
                let (count, used) = self.proto.take_responses(&scratch[..n])?;
                self.carry.extend_from_slice(&scratch[used..n]);
                count
            } else {
                self.carry.extend_from_slice(&scratch[..n]);
                let (count, used) = self.proto.take_responses(&self.carry)?;
                self.carry.drain(..used);
                count
            };
            let now = Instant::now();
            for _ in 0..count {
                let sent = self
                    .outstanding
                    .pop_front()
                    .ok_or_else(|| invalid("a response to no request".into()))?;
                if stats.record(self.id, sent, now, window) {
                    self.window_done += 1;
                }
            }
            done += count;
            if n < scratch.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// The connections of one loader thread, registered with its epoll instance.
pub struct ConnSet<P> {
    pub conns: Vec<Conn<P>>,
    epoll: Epoll,
    events: Vec<libc::epoll_event>,
    scratch: Vec<u8>,
    pub stats: Stats,
    pub window: Window,
}

impl<P: Protocol> ConnSet<P> {
    /// `log`: keep every response of the window (see [`LatencyLog`]).
    pub fn new(conns: Vec<Conn<P>>, window: Window, log: bool) -> io::Result<ConnSet<P>> {
        let epoll = Epoll::new()?;
        let bits = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        for (i, c) in conns.iter().enumerate() {
            epoll.add(c.stream.as_raw_fd(), i as u64, bits)?;
        }
        Ok(ConnSet {
            conns,
            epoll,
            events: Vec::with_capacity(1024),
            scratch: vec![0; 64 * 1024],
            stats: Stats::new(log),
            window,
        })
    }

    /// Queues a request on connection `i`, timed from `at`, and writes it.
    pub fn send(&mut self, i: usize, at: Instant) -> io::Result<()> {
        let conn = &mut self.conns[i];
        if conn.dead {
            return Ok(());
        }
        conn.queue(at);
        let res = conn.flush();
        self.check(i, res)
    }

    /// Waits up to `timeout` for events and handles them: responses are recorded, and
    /// `on_done(conn, n)` is told how many completed on a connection (the closed loop sends as
    /// many new requests). Returns Err only for wrong bytes, which ends the run.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut on_done: impl FnMut(&mut Conn<P>, usize),
    ) -> io::Result<()> {
        self.epoll.wait(&mut self.events, Some(timeout))?;
        for k in 0..self.events.len() {
            let (token, bits) = sys::event_parts(&self.events[k]);
            let i = token as usize;
            let conn = &mut self.conns[i];
            if conn.dead {
                continue;
            }
            let readable =
                (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let res = if bits & readable != 0 {
                conn.read_responses(&mut self.scratch, &mut self.stats, &self.window)
                    .map(|n| on_done(conn, n))
            } else {
                Ok(())
            };
            let res = res.and_then(|()| conn.flush());
            self.check(i, res)?;
        }
        Ok(())
    }

    /// The statistics, with the per-connection counts filled in.
    pub fn finish(mut self) -> Stats {
        self.stats.per_conn = self.conns.iter().map(|c| c.window_done).collect();
        self.stats
    }

    /// A failed connection is counted and dropped from the run; wrong bytes end the run.
    fn check(&mut self, i: usize, res: io::Result<()>) -> io::Result<()> {
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(e),
            Err(e) => {
                let conn = &mut self.conns[i];
                conn.dead = true;
                let _ = self.epoll.delete(conn.stream.as_raw_fd());
                self.stats.errors += 1;
                self.stats.first_error.get_or_insert_with(|| e.to_string());
                Ok(())
            }
        }
    }
}

/// Connects `n` connections (TCP_NODELAY, non-blocking), one after the other so that the
/// server's accept queue never overflows.
pub fn connect_all(addr: std::net::SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            // Close with a reset: a run leaves no TIME_WAIT sockets behind for the next.
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            Ok(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_log_keeps_every_window_sample_in_arrival_order_across_chunks_and_threads() {
        let t0 = Instant::now();
        let window = Window {
            start: t0,
            measure_from: t0 + Duration::from_millis(1),
            end: t0 + Duration::from_secs(10),
        };
        let n = LatencyLog::CHUNK + 10; // more than one chunk
        let mut a = Stats::new(true);
        let mut b = Stats::new(true);
        // Warm-up responses are counted but neither measured nor logged.
        assert!(!a.record(9, t0, t0, &window));
        for k in 0..n as u64 {
            let stats = if k % 2 == 0 { &mut a } else { &mut b };
            let now = window.measure_from + Duration::from_nanos(1000 * (k + 1));
            assert!(stats.record(k as u32, now - Duration::from_nanos(500 + k), now, &window));
        }
        a.merge(b);
        assert_eq!((a.total, a.window), (n as u64 + 1, n as u64));
        let log = a.log.take().unwrap().into_sorted();
        assert_eq!(log.len(), n);
        for (k, s) in log.iter().enumerate() {
            let k = k as u64;
            assert_eq!(
                s,
                &Sample {
                    at_ns: 1000 * (k + 1),
                    latency_ns: 500 + k,
                    conn: k as u32
                }
            );
        }
        assert!(Stats::new(false).log.is_none());
    }

    #[test]
    fn echo_counts_whole_messages_across_split_reads() {
        let mut p = Echo::new(64, 3);
        let mut sent = Vec::new();
        p.push_request(&mut sent);
        p.push_request(&mut sent);
        assert_eq!(p.take_responses(&sent[..50]).unwrap(), (0, 50));
        assert_eq!(p.take_responses(&sent[50..100]).unwrap(), (1, 50));
        assert_eq!(p.take_responses(&sent[100..]).unwrap(), (1, 28));
    }

    #[test]
    fn echo_rejects_a_changed_byte_and_bytes_never_sent() {
        let mut p = Echo::new(64, 0);
        let mut sent = Vec::new();
        p.push_request(&mut sent);
        sent[10] ^= 1;
        let e = p.take_responses(&sent).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut p = Echo::new(64, 0);
        let e = p.take_responses(&[0; 1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn echo_streams_wrap_around_the_pattern() {
        let mut p = Echo::new(MAX_MESSAGE, 1);
        let mut sent = Vec::new();
        for _ in 0..3 {
            p.push_request(&mut sent);
        }
        assert_eq!(p.take_responses(&sent).unwrap(), (3, sent.len()));
    }

    #[test]
    fn http_accepts_pipelined_responses_and_keeps_a_partial_one() {
        let mut input = proto::HTTP_RESPONSE.repeat(2);
        input.extend_from_slice(&proto::HTTP_RESPONSE[..7]);
        let r = proto::HTTP_RESPONSE.len();
        assert_eq!(Http.take_responses(&input).unwrap(), (2, 2 * r));
        let mut wrong = proto::HTTP_RESPONSE.to_vec();
        wrong[9] = b'5';
        let e = Http.take_responses(&wrong).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    /// A response as hyper writes it: lower-case headers, a `date`.
    fn hyper_response(date: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: {date}\r\n\r\nHello, World!")
            .into_bytes()
    }

    /// Feeds `input` to `p` in pieces cut at `cuts`, carrying the unconsumed tail over as the
    /// loader does; returns the responses counted.
    fn feed(p: &mut ParsedHttp, input: &[u8], cuts: &[usize]) -> io::Result<usize> {
        let (mut carry, mut total, mut from) = (Vec::new(), 0, 0);
        for &to in cuts.iter().chain([&input.len()]) {
            carry.extend_from_slice(&input[from..to]);
            from = to;
            let (count, used) = p.take_responses(&carry)?;
            carry.drain(..used);
            total += count;
        }
        assert!(carry.is_empty(), "a response left incomplete");
        Ok(total)
    }

    #[test]
    fn parsed_http_counts_pipelined_responses_whatever_their_date() {
        let mut input = hyper_response("Mon, 01 Jan 2024 00:00:00 GMT");
        input.extend(hyper_response("Mon, 01 Jan 2024 00:00:01 GMT"));
        // The servers' fixed response parses too.
        input.extend_from_slice(proto::HTTP_RESPONSE);
        assert_eq!(ParsedHttp.take_responses(&input).unwrap(), (3, input.len()));
    }

    #[test]
    fn parsed_http_keeps_a_response_split_in_its_head_or_body() {
        let one = hyper_response("Mon, 01 Jan 2024 00:00:00 GMT");
        let r = one.len();
        let input = one.repeat(3);
        // Nothing is consumed of an incomplete response.
        assert_eq!(ParsedHttp.take_responses(&input[..r + 20]).unwrap(), (1, r));
        assert_eq!(ParsedHttp.take_responses(&input[..r - 5]).unwrap(), (0, 0));
        // Every possible split, in the status line, the headers and the body.
        for cut in 1..r {
            assert_eq!(
                feed(&mut ParsedHttp, &input, &[cut]).unwrap(),
                3,
                "cut {cut}"
            );
            assert_eq!(feed(&mut ParsedHttp, &input, &[r + cut]).unwrap(), 3);
        }
        // One byte at a time.
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed(&mut ParsedHttp, &input, &bytes).unwrap(), 3);
    }

    #[test]
    fn parsed_http_rejects_a_wrong_body_even_before_it_is_whole() {
        let mut wrong = hyper_response("Mon, 01 Jan 2024 00:00:00 GMT");
        let n = wrong.len();
        wrong[n - 1] = b'?';
        let e = ParsedHttp.take_responses(&wrong).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("body"), "{e}");
        wrong[n - 6] = b'w';
        let e = ParsedHttp.take_responses(&wrong[..n - 3]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A longer body with the right start is refused by its length.
        let long = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\nHello, World!!";
        let e = ParsedHttp.take_responses(long).unwrap_err();
        assert!(e.to_string().contains("Content-Length 14"), "{e}");
    }

    #[test]
    fn parsed_http_rejects_a_wrong_status_and_a_malformed_head() {
        let mut input = hyper_response("Mon, 01 Jan 2024 00:00:00 GMT");
        input.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
        let e = ParsedHttp.take_responses(&input).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("status line"), "{e}");
        // Already from its first differing byte.
        let e = ParsedHttp.take_responses(b"HTTP/1.1 4").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\nHello, World!"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 13\ndate: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            let e = ParsedHttp.take_responses(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        // A head that never ends is refused once it is over the limit.
        let mut endless = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        endless.resize(proto::HTTP_MAX_BUFFER + 1, b'a');
        assert!(ParsedHttp.take_responses(&endless).is_err());
    }
}

//! The cases, each written once against [`Rt`] and run on both runtimes. Each runs inside a
//! spawned task (on a worker) and returns its metrics; costs are per operation.

use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::alloc;
use super::rt::{Conn, Rt};
use super::signal::Signal;

fn ns_per(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// Spawns `n` trivial tasks, `batch` at a time, and awaits each batch: ns per task.
pub(super) async fn spawn_join<R: Rt>(n: usize, batch: usize) -> f64 {
    let mut tasks = Vec::with_capacity(batch);
    let start = Instant::now();
    for _ in 0..n / batch {
        tasks.extend((0..batch).map(|i| R::spawn(async move { black_box(i) })));
        for t in tasks.drain(..) {
            black_box(t.await);
        }
    }
    ns_per(start.elapsed(), n / batch * batch)
}

/// Two tasks bounce a token `n` times through [`Signal`]s: ns per round trip.
pub(super) async fn ping_pong<R: Rt>(n: usize) -> f64 {
    let pair = Arc::new((Signal::default(), Signal::default()));
    let peer = pair.clone();
    let start = Instant::now();
    let echo = R::spawn(async move {
        for _ in 0..n {
            peer.0.wait().await;
            peer.1.notify();
        }
    });
    for _ in 0..n {
        pair.0.notify();
        pair.1.wait().await;
    }
    echo.await;
    ns_per(start.elapsed(), n)
}

/// The bare read, through one `async fn` like the bounded reads (`Conn::read_within` and
/// `Conn::read_until` are `async fn`s), so that the difference between them is the deadline or
/// the timeout alone. Without it the bounded reads also paid for the extra layer, which costs
/// tokio (whose layer holds the `Timeout` future) ~25 ns and netpoll ~15 ns: the "added cost"
/// read 83 ns for tokio against 61 through the same shape.
async fn bare_read<C: Conn>(conn: &mut C, buf: &mut [u8]) -> io::Result<usize> {
    conn.read(buf).await
}

pub(super) async fn read_byte(conn: &mut impl Conn, buf: &mut [u8; 1]) -> io::Result<()> {
    match conn.read(buf).await? {
        1 => Ok(()),
        _ => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Two tasks bounce one byte `n` times over a loopback TCP pair: ns per round trip.
pub(super) async fn tcp_ping_pong<R: Rt>(n: usize) -> io::Result<f64> {
    let (mut a, mut b) = R::pair().await?;
    let start = Instant::now();
    let echo = R::spawn(async move {
        let mut buf = [0; 1];
        for _ in 0..n {
            read_byte(&mut b, &mut buf).await?;
            b.write_all(&buf).await?;
        }
        io::Result::Ok(b)
    });
    let mut buf = [7; 1];
    for _ in 0..n {
        a.write_all(&buf).await?;
        read_byte(&mut a, &mut buf).await?;
    }
    echo.await?;
    Ok(ns_per(start.elapsed(), n))
}

/// Polls `f` once with the task's waker.
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// Creates a sleep an hour away, polls it once (so it is in the timer structure) and drops it:
/// ns per timer.
pub(super) async fn timer_cancel<R: Rt>(n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let sleep = pin!(R::sleep(Duration::from_secs(3600)));
        assert!(poll_once(sleep).await.is_pending());
    }
    ns_per(start.elapsed(), n)
}

/// Process CPU time (all threads).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Arms `batch` one-millisecond sleeps at once and waits for all of them, `n / batch` times:
/// process CPU ns per timer (the wall time is mostly the millisecond of sleeping).
pub(super) async fn timer_fire<R: Rt>(n: usize, batch: usize) -> f64 {
    let start = cpu_time();
    for _ in 0..n / batch {
        let mut sleeps: Vec<_> = (0..batch)
            .map(|_| Box::pin(R::sleep(Duration::from_millis(1))))
            .collect();
        poll_fn(|cx| {
            sleeps.retain_mut(|s| s.as_mut().poll(cx).is_pending());
            if sleeps.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    ns_per(cpu_time() - start, n / batch * batch)
}

/// The deadline case's metrics, each the median over its rounds (robust to a round that was
/// preempted on a busy machine).
pub(super) struct Deadline {
    /// ns per ready 1-byte read.
    pub bare: f64,
    /// ns per ready 1-byte read bounded to 10 s from now ([`Conn::read_within`]).
    pub bounded: f64,
    /// ns that bounding adds to a read, within the same round.
    pub added: f64,
    /// ns that bounding by an instant already at hand adds ([`Conn::read_until`]): the
    /// runtime's own machinery, without the clock read.
    pub added_at: f64,
    /// ns that the runtime's own `time::timeout` adds ([`Conn::read_timeout`]).
    pub added_timeout: f64,
    /// ns per `Instant::now() + limit`: the precise clock read that tokio's `timeout` makes
    /// in [`Conn::read_within`] (netpoll's `set_read_deadline_after` reads the coarse clock).
    pub clock: f64,
    /// Allocations per bounded read (`None` when counting is compiled out).
    pub allocs: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How a timed read in [`deadline`] is bounded.
#[derive(Clone, Copy)]
enum Bound {
    None,
    Within,
    Until,
    Timeout,
}

/// Ready reads on a loopback connection, bare and bounded each way (`Bound`), in `rounds` rounds of
/// `batch` one-byte reads of each kind (the order of the kinds rotates from round to round);
/// before each run of reads the peer writes `batch` bytes and the first one is read, untimed,
/// so every timed read finds data ready.
pub(super) async fn deadline<R: Rt>(rounds: usize, batch: usize) -> io::Result<Deadline> {
    let (mut conn, mut peer) = R::pair().await?;
    let fill = vec![7; batch];
    let limit = Duration::from_secs(10);
    // `count`: count allocations during the timed reads (read with `alloc::stop`).
    let mut reads = async |conn: &mut R::Conn, bound: Bound, count: bool| {
        let mut buf = [0; 1];
        peer.write_all(&fill).await?;
        read_byte(conn, &mut buf).await?;
        if count {
            alloc::start();
        }
        let at = Instant::now() + limit;
        let start = Instant::now();
        for _ in 1..batch {
            let n = match bound {
                Bound::None => bare_read(conn, &mut buf).await?,
                Bound::Within => conn.read_within(&mut buf, limit).await?,
                Bound::Until => conn.read_until(&mut buf, at).await?,
                Bound::Timeout => conn.read_timeout(&mut buf, limit).await?,
            };
            if n != 1 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        io::Result::Ok(ns_per(start.elapsed(), batch - 1))
    };
    let kinds = [Bound::None, Bound::Within, Bound::Until, Bound::Timeout];
    let (mut bare, mut bounded, mut added, mut added_at, mut added_timeout, mut clock) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for round in 0..rounds {
        let mut ns = [0.0; 4];
        for k in 0..kinds.len() {
            let k = (k + round) % kinds.len();
            ns[k] = reads(&mut conn, kinds[k], false).await?;
        }
        bare.push(ns[0]);
        bounded.push(ns[1]);
        added.push(ns[1] - ns[0]);
        added_at.push(ns[2] - ns[0]);
        added_timeout.push(ns[3] - ns[0]);
        let start = Instant::now();
        for _ in 1..batch {
            black_box(Instant::now() + black_box(limit));
        }
        clock.push(ns_per(start.elapsed(), batch - 1));
    }

    let counted = reads(&mut conn, Bound::Within, true).await;
    let allocs = alloc::stop().map(|n| n as f64 / (batch - 1) as f64);
    counted?;

    Ok(Deadline {
        bare: median(bare),
        bounded: median(bounded),
        added: median(added),
        added_at: median(added_at),
        added_timeout: median(added_timeout),
        clock: median(clock),
        allocs,
    })
}

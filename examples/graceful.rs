//! An echo server that stops cleanly on SIGINT (Ctrl-C) or SIGTERM.
//!
//! ```text
//! cargo run --example graceful            # ADDR=127.0.0.1:7001 GRACE_MS=5000 by default
//! ```
//!
//! How it stops:
//!
//! 1. SIGINT and SIGTERM are blocked in the main thread *before* the runtime is built, so every
//!    thread the runtime starts inherits the mask and no worker is ever interrupted by them;
//! 2. a dedicated thread waits for them with `sigwait` and, on the first, closes the listener:
//!    the pending `accept` fails with the closed error and the accept loop returns;
//! 3. `Runtime::shutdown_timeout` lets the open connections go on for the grace period
//!    (`GRACE_MS`), then cancels those still running.
//!
//! A second signal during the grace period exits at once.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::{TcpListener, TcpStream};

/// Connection counters, shared by the accept loop and the connection tasks.
#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    finished: AtomicUsize,
}

impl Stats {
    fn open(&self) -> usize {
        self.accepted.load(Ordering::SeqCst) - self.finished.load(Ordering::SeqCst)
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later),
/// returning the set for `sigwait`.
fn block_stop_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: `sigset_t` is plain data; `sigemptyset` initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed `sigset_t`; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (which must be blocked in every thread).
fn wait_for_signal(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `sig` is valid for writes.
    let r = unsafe { libc::sigwait(set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

async fn echo(conn: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf).await? {
            0 => return Ok(()),
            n => conn.write_all(&buf[..n]).await?,
        }
    }
}

/// Accepts until the listener is closed.
async fn accept_loop(ln: TcpListener, stats: Arc<Stats>) -> io::Result<()> {
    loop {
        let (conn, peer) = match ln.accept().await {
            Ok(c) => c,
            Err(e) if netpoll::net::is_closed(&e) => return Ok(()),
            Err(e) => {
                // Out of descriptors, for instance: the listener itself still works.
                eprintln!("accept: {e}");
                netpoll::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let stats = stats.clone();
        netpoll::spawn(async move {
            if let Err(e) = echo(conn).await {
                eprintln!("{peer}: {e}");
            }
            stats.finished.fetch_add(1, Ordering::SeqCst);
        });
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> io::Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: bad value {v:?}"),
            )
        }),
    }
}

fn main() -> io::Result<()> {
    let addr = env_or("ADDR", "127.0.0.1:7001".to_string())?;
    let grace = Duration::from_millis(env_or("GRACE_MS", 5000)?);

    // Before any other thread exists.
    let signals = block_stop_signals()?;
    let rt = netpoll::Runtime::new()?;
    let ln = {
        let _ctx = rt.enter();
        TcpListener::bind(addr.as_str())?
    };
    println!(
        "echo server on {} (pid {}); SIGINT or SIGTERM stops it",
        ln.local_addr()?,
        std::process::id()
    );

    let stats = Arc::new(Stats::default());
    {
        let (ln, stats) = (ln.clone(), stats.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || -> io::Result<()> {
                let sig = wait_for_signal(&signals)?;
                println!(
                    "{}: closing the listener; {} connection(s) open",
                    signal_name(sig),
                    stats.open()
                );
                ln.close()?;
                let sig = wait_for_signal(&signals)?;
                println!("{} again: exiting now", signal_name(sig));
                std::process::exit(130);
            })?;
    }

    rt.block_on(accept_loop(ln, stats.clone()))?;
    let open = stats.open();
    println!(
        "stopped accepting after {} connection(s); giving {open} open connection(s) up to {grace:?}",
        stats.accepted.load(Ordering::SeqCst)
    );
    let start = Instant::now();
    rt.shutdown_timeout(grace);
    let left = stats.open();
    println!(
        "shut down in {:?}: {} connection(s) finished during the grace period, {left} cancelled",
        start.elapsed(),
        open - left
    );
    Ok(())
}

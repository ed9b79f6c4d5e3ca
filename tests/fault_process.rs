//! Faults that need process-wide state, each in a child process (this test binary, re-run with
//! one test selected and a role in the environment): a reset in the middle of a large write
//! with `SIGPIPE` at its default disposition (death), and a storm of connections against a
//! server whose descriptor limit is far too low for it.
//!
//! The single-accept `EMFILE` sequence and the `SIGPIPE` control child (showing that a plain
//! `write(2)` does kill) are in `tcp_faults.rs`.

mod util_fault;
mod util_proc;
mod util_tcp;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::TcpStream;
use util_fault::*;
use util_tcp::{
    child_role, listener, nofile_limit, open_fds, pair, run, run_in_child, set_nofile_soft, within,
};

const LIMIT: Duration = Duration::from_secs(30);
const CHILD_LIMIT: Duration = Duration::from_secs(60);
const PROMPT: Duration = Duration::from_secs(5);

/// Whether this process's SIGPIPE disposition is the default (terminate).
fn sigpipe_is_default() -> bool {
    // SAFETY: queries the current action (null new action) into a zeroed, valid sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction == libc::SIG_DFL
    }
}

fn is_reset_or_pipe(e: &io::Error) -> bool {
    matches!(outcome(e), Ok(Outcome::Reset | Outcome::BrokenPipe))
}

// The peer reads the first megabyte of a 32 MiB write and resets the connection (SO_LINGER 0):
// the writer — in `write_all`, in a `write` loop, or queued behind another writer on a clone —
// fails with ConnectionReset or BrokenPipe promptly, without SIGPIPE (the child runs with the
// default disposition, so a signal would kill it) and without a hang; what the peer received
// was intact; later writes fail the same way, reads do not block, and close works.
#[test]
fn a_reset_in_the_middle_of_a_large_write_fails_the_writer_without_sigpipe() {
    const NAME: &str = "a_reset_in_the_middle_of_a_large_write_fails_the_writer_without_sigpipe";
    if child_role(NAME).is_some() {
        return large_write_reset_child();
    }
    let (status, out) = run_in_child(NAME, "child", CHILD_LIMIT);
    assert!(status.success(), "child failed ({status}):\n{out}");
    assert!(out.contains("writers failed without SIGPIPE"), "{out}");
}

fn large_write_reset_child() {
    // SAFETY: sets SIGPIPE to its default disposition, no handler involved; this process is a
    // child that runs this one test alone.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert!(sigpipe_is_default());
    const BIG: usize = 32 << 20;
    const READ_FIRST: usize = 1 << 20;
    let big = Arc::new(pattern(0, BIG));
    run(2, LIMIT, async move {
        for variant in ["write_all", "write loop", "queued writers"] {
            let (c, s) = pair().await;
            let writer = {
                let (c, big) = (c.clone(), big.clone());
                netpoll::spawn(async move {
                    if variant == "write loop" {
                        let mut done = 0;
                        while done < BIG {
                            match c.write(&big[done..]).await {
                                Ok(n) => done += n,
                                Err(e) => return (e, done),
                            }
                        }
                        panic!("{variant}: all of it was written");
                    }
                    let e = c.write_all(&big).await.unwrap_err();
                    (e, 0)
                })
            };
            // The peer reads the start of the stream, checks it, and resets.
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            let mut queued = None;
            while got < READ_FIRST {
                let n = s.read(&mut buf).await.unwrap();
                assert!(
                    n > 0 && is_pattern(got, &buf[..n]),
                    "{variant}: corrupt stream"
                );
                got += n;
                if variant == "queued writers" && queued.is_none() {
                    // The first writer holds the write side (its bytes are arriving, and it
                    // cannot be done yet): a second one queues behind it.
                    let c = c.clone();
                    queued = Some(netpoll::spawn(async move { c.write_all(b"queued").await }));
                }
            }
            s.set_linger(Some(Duration::ZERO)).unwrap();
            s.close().unwrap();
            let (e, written) = within(PROMPT, "the writer after the reset", writer)
                .await
                .unwrap();
            assert!(is_reset_or_pipe(&e), "{variant}: {e:?}");
            if variant == "write loop" {
                assert!(written >= got, "{variant}: wrote {written} < read {got}");
            }
            if let Some(q) = queued {
                let e = within(PROMPT, "the queued writer", q)
                    .await
                    .unwrap()
                    .unwrap_err();
                assert!(is_reset_or_pipe(&e), "{variant}: queued: {e:?}");
            }
            let e = c.write(b"after").await.unwrap_err();
            assert!(is_reset_or_pipe(&e), "{variant}: later write: {e:?}");
            match within(PROMPT, "a read after the reset", c.read(&mut buf)).await {
                Ok(0) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                other => panic!("{variant}: read after the reset: {other:?}"),
            }
            c.close().unwrap();
        }
    });
    assert!(sigpipe_is_default());
    println!("writers failed without SIGPIPE");
}

/// Connections in the storm. Well under the accept backlog (somaxconn), so that every
/// connect completes in the kernel while the server cannot take it.
const STORM: u32 = 300;
/// Descriptor numbers left free for the server's connections.
const HEADROOM: usize = 16;
/// How long the server holds each connection: long enough for the storm to pile up.
const HOLD: Duration = Duration::from_millis(20);

// An EMFILE storm: a server whose descriptor limit leaves room for 16 connections faces 300
// clients at once. Its accept loop sees EMFILE, backs off 5 ms and retries (Go's http.Server);
// every client is served as handlers finish and free descriptors, a client after the storm is
// served at once, and the server's descriptors return to their count before the storm.
#[test]
fn a_server_out_of_descriptors_keeps_serving_through_a_connection_storm() {
    const NAME: &str = "a_server_out_of_descriptors_keeps_serving_through_a_connection_storm";
    if role(NAME).is_some() {
        return storm_server_child();
    }
    let mut child = Conversation::start(NAME, "server", |_| {});
    let addr: std::net::SocketAddr = child.expect("addr", PROMPT * 2).parse().unwrap();
    child.expect("ready", PROMPT);
    run(2, LIMIT, async move {
        let clients: Vec<_> = (0..STORM)
            .map(|id| netpoll::spawn(async move { one_request(addr, id).await }))
            .collect();
        for c in clients {
            within(LIMIT / 2, "a client of the storm", c)
                .await
                .unwrap()
                .unwrap();
        }
        // After the storm: served at once.
        within(PROMPT, "a client after the storm", one_request(addr, STORM))
            .await
            .unwrap();
    });
    child.send("check");
    let served: u32 = child.expect("served", PROMPT * 2).parse().unwrap();
    let emfile: u64 = child.expect("emfile", PROMPT).parse().unwrap();
    let fds = child.expect("fds", PROMPT);
    assert_eq!(served, STORM + 1, "{:?}", child.transcript);
    assert!(
        emfile > 0,
        "the storm never exhausted the server's descriptors"
    );
    assert_eq!(fds, "back to the count before the storm");
    child.finish(PROMPT);
}

/// One request: the client's id in a frame; the server answers with the next sequence number.
async fn one_request(addr: std::net::SocketAddr, id: u32) -> io::Result<()> {
    let c = TcpStream::connect(addr).await?;
    c.write_all(&frame(id, 0)).await?;
    let mut got = [0u8; FRAME];
    c.read_exact(&mut got).await?;
    assert_eq!(
        parse_frame(&got),
        Some((id, 1)),
        "a reply for another client"
    );
    Ok(())
}

fn storm_server_child() {
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let _dog = util_tcp::Watchdog::new(CHILD_LIMIT);
    let served = Arc::new(AtomicUsize::new(0));
    let emfile = Arc::new(AtomicUsize::new(0));
    let (s2, e2) = (served.clone(), emfile.clone());
    rt.block_on(async move {
        let (ln, addr) = listener();
        netpoll::spawn(async move {
            loop {
                match ln.accept().await {
                    Ok((c, _)) => {
                        let served = s2.clone();
                        netpoll::spawn(async move {
                            c.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
                            let mut req = [0u8; FRAME];
                            c.read_exact(&mut req).await.unwrap();
                            let (id, seq) = parse_frame(&req).expect("a torn request");
                            netpoll::time::sleep(HOLD).await;
                            c.write_all(&frame(id, seq + 1)).await.unwrap();
                            served.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                        e2.fetch_add(1, Ordering::SeqCst);
                        netpoll::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => panic!("accept: {e:?}"),
                }
            }
        });
        say("addr", addr);
    });
    let before = open_fds();
    let (soft, _) = nofile_limit();
    set_nofile_soft(limit_leaving_free(HEADROOM)).unwrap();
    say("ready", "");
    assert_eq!(hear().as_deref(), Some("check"));
    // The handlers are done once every client has its answer; their descriptors go with them.
    let end = Instant::now() + PROMPT;
    while open_fds() != before && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let now = open_fds();
    set_nofile_soft(soft).unwrap();
    say("served", served.load(Ordering::SeqCst));
    say("emfile", emfile.load(Ordering::SeqCst));
    if now == before {
        say("fds", "back to the count before the storm");
    } else {
        say(
            "fds",
            format!("{now} open, {before} before: {:?}", fd_list()),
        );
    }
    assert_eq!(hear(), None);
    drop(rt);
}

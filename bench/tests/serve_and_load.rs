//! End to end through the binary: `netpoll-bench serve` runs a server, `netpoll-bench load`
//! drives it and verifies every byte. Checks behaviour only (responses arrive, nothing fails),
//! never speed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netpoll-bench");

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(kind: &str, deadline_ms: Option<u64>) -> Server {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", kind])
        .env("ADDR", addr.to_string())
        .env("WORKERS", "1")
        .stdout(Stdio::null());
    if let Some(ms) = deadline_ms {
        cmd.env("DEADLINE_MS", ms.to_string());
    }
    let server = Server {
        child: cmd.spawn().unwrap(),
        addr,
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < give_up, "{kind} did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    server
}

/// Runs the loader with `args`, failing the test if it outlives `limit`.
fn load(server: &Server, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .arg("load")
        .arg(format!("--addr={}", server.addr))
        .arg(format!("--server-pid={}", server.child.id()))
        .args(["--duration=0.5", "--warmup=0.2", "--threads=1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("the loader hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The fields of the RESULT line.
fn result(out: &Output) -> Vec<(String, f64)> {
    assert!(
        out.status.success(),
        "loader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .expect("a RESULT line");
    line["RESULT ".len()..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn field(r: &[(String, f64)], key: &str) -> f64 {
    r.iter().find(|(k, _)| k == key).unwrap().1
}

fn assert_served(r: &[(String, f64)]) {
    assert!(field(r, "requests") > 0.0, "no response measured: {r:?}");
    assert_eq!(field(r, "errors"), 0.0, "failed connections: {r:?}");
    assert!(
        field(r, "server_cpu_s") >= 0.0,
        "server CPU not read: {r:?}"
    );
}

#[test]
fn every_in_process_server_answers_the_closed_loop_loader_with_the_right_bytes() {
    for (kind, app, extra) in [
        ("floor-echo", "echo", "--size=4096"),
        ("floor-http", "http", "--inflight=16"),
        ("tokio-echo", "echo", "--size=64"),
        ("tokio-http", "http", "--inflight=16"),
        // hyper's responses are parsed, not compared byte for byte.
        ("tokio-hyper", "hyper", "--inflight=16"),
    ] {
        let server = serve(kind, None);
        let out = load(
            &server,
            &[&format!("--app={app}"), "--conns=20", extra],
            Duration::from_secs(30),
        );
        assert_served(&result(&out));
    }
}

#[test]
fn open_loop_loader_never_sends_ahead_of_its_schedule() {
    let server = serve("floor-echo", None);
    let out = load(
        &server,
        &["--conns=10", "--rate=2000"],
        Duration::from_secs(30),
    );
    let r = result(&out);
    assert_served(&r);
    // 2000/s over 0.2 s of warm-up and 0.5 s measured schedules 1400 requests. A late loader
    // catches up, but nothing may leave before its time: a closed loop against the floor
    // would answer many times more.
    assert!(field(&r, "total") <= 1401.0, "{r:?}");
}

#[test]
fn tokio_echo_with_a_deadline_per_read_still_echoes() {
    let server = serve("tokio-echo", Some(10_000));
    let out = load(&server, &["--conns=5"], Duration::from_secs(30));
    assert_served(&result(&out));
}

#[test]
fn loader_reports_a_server_that_closes_connections() {
    // A server that accepts and closes at once: every connection fails, and the loader says
    // so instead of reporting a result.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let out = Command::new(BIN)
        .args(["load", &format!("--addr={addr}"), "--conns=3"])
        .args(["--duration=0.2", "--warmup=0", "--threads=1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no response"));
}

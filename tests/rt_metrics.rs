//! `Runtime::metrics` and `NETPOLL_SCHEDTRACE`.

use std::time::Duration;

#[test]
fn metrics_count_spawned_tasks_polls_and_sockets() {
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let before = rt.metrics();
    assert_eq!(before.workers, 2);
    rt.block_on(async {
        let handles: Vec<_> = (0..100).map(|i| netpoll::spawn(async move { i })).collect();
        for h in handles {
            h.await.unwrap();
        }
        let ln = netpoll::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let m = rt.metrics();
        assert!(m.sockets >= 1, "the listener is registered: {m:?}");
        drop(ln);
    });
    let after = rt.metrics();
    assert!(after.tasks_spawned >= 100, "{after:?}");
    assert!(after.polls >= 100, "{after:?}");
    assert_eq!(after.sockets, 0, "the listener was deregistered: {after:?}");
    assert!(after.threads >= 2, "{after:?}");
}

#[test]
fn schedtrace_prints_lines_to_stderr() {
    // Re-run this test binary as a child with the variable set, and read its stderr.
    if std::env::var_os("NETPOLL_SCHEDTRACE_CHILD").is_some() {
        let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(netpoll::time::sleep(Duration::from_millis(120)));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "schedtrace_prints_lines_to_stderr",
            "--nocapture",
        ])
        .env("NETPOLL_SCHEDTRACE_CHILD", "1")
        .env("NETPOLL_SCHEDTRACE", "20")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr.lines().filter(|l| l.starts_with("NETPOLL ")).count();
    assert!(lines >= 2, "expected trace lines, got:\n{stderr}");
    assert!(stderr.contains("workers=1"), "{stderr}");
}

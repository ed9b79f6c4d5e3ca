//! `Runtime::metrics`, `NETPOLL_SCHEDTRACE` and graceful `Runtime::shutdown_timeout`.

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

#[test]
fn shutdown_timeout_lets_tasks_finish_then_cancels_the_rest() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicBool::new(false));
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let f = finished.clone();
    rt.spawn(async move {
        netpoll::time::sleep(Duration::from_millis(30)).await;
        f.store(true, Ordering::SeqCst);
    });
    let guard = OnDrop(cancelled.clone());
    rt.spawn(async move {
        let _guard = guard;
        netpoll::time::sleep(Duration::from_secs(3600)).await;
    });
    let start = std::time::Instant::now();
    rt.shutdown_timeout(Duration::from_millis(300));
    assert!(
        finished.load(Ordering::SeqCst),
        "the short task ran to completion"
    );
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the endless task was dropped"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(30));
}

use std::time::{Duration, Instant};

#[test]
fn block_on_runs_a_spawned_task() {
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    let v = rt.block_on(async { netpoll::spawn(async { 40 + 2 }).await.unwrap() });
    assert_eq!(v, 42);
}

#[test]
fn sleep_does_not_return_early() {
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let start = Instant::now();
        netpoll::time::sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn tcp_echo_round_trip() {
    let rt = netpoll::Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let ln = netpoll::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ln.local_addr().unwrap();
        netpoll::spawn(async move {
            let (c, _) = ln.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = c.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                c.write_all(&buf[..n]).await.unwrap();
            }
        });
        let c = netpoll::net::TcpStream::connect(addr).await.unwrap();
        for i in 0..100u32 {
            let msg = i.to_le_bytes();
            c.write_all(&msg).await.unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }
    });
}

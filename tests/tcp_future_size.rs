//! The futures of the hot stream operations (TCP and Unix) stay small. A connection's task
//! holds its read or write future for as long as the connection lives, so every byte here is
//! paid once per idle connection (the benchmark's idle-memory scenario: 4.95 KiB per
//! connection with the earlier `async fn` versions, whose futures were 240 bytes each, and
//! 4.81 KiB with these).

mod util_proc;
mod util_tcp;

use std::io;
use std::time::Duration;

use netpoll::net::TcpStream;
use util_tcp::*;

/// A connection handler of the usual shape: read, then write back what was read.
async fn serve(conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

#[test]
fn tcp_and_unix_read_write_and_a_connection_handler_futures_stay_small() {
    run(1, Duration::from_secs(10), async {
        let (c, s) = pair().await;
        let mut buf = [0u8; 16];
        // Four words of state plus the borrowed buffer, not nested `async fn` frames.
        let read = std::mem::size_of_val(&c.read(&mut buf));
        let write = std::mem::size_of_val(&c.write(&buf));
        let write_all = std::mem::size_of_val(&c.write_all(&buf));
        assert!(read <= 96, "read future: {read} bytes");
        assert!(write <= 96, "write future: {write} bytes");
        assert!(write_all <= 96, "write_all future: {write_all} bytes");
        let read_exact = std::mem::size_of_val(&c.read_exact(&mut buf));
        let peek = std::mem::size_of_val(&c.peek(&mut buf));
        assert!(read_exact <= 128, "read_exact future: {read_exact} bytes");
        assert!(peek <= 128, "peek future: {peek} bytes");
        let handler = std::mem::size_of_val(&serve(s));
        assert!(handler <= 192, "connection handler future: {handler} bytes");

        let (u, _peer) = netpoll::net::UnixStream::pair().unwrap();
        let unix_read = std::mem::size_of_val(&u.read(&mut buf));
        let unix_write_all = std::mem::size_of_val(&u.write_all(&buf));
        assert!(unix_read <= 96, "Unix read future: {unix_read} bytes");
        assert!(
            unix_write_all <= 96,
            "Unix write_all future: {unix_write_all} bytes"
        );
    });
}

//! The two runtimes behind one small trait, so that every case is written once.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a case needs from a runtime.
pub(super) trait Rt: Sized + 'static {
    const NAME: &'static str;
    type Conn: Conn;

    fn start(workers: usize) -> io::Result<Self>;

    fn block_on<F: Future>(&self, f: F) -> F::Output;

    /// Spawns `f` at once (inside the runtime); the returned future awaits the task's output.
    fn spawn<F>(f: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    fn sleep(d: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// A connected loopback TCP pair, `TCP_NODELAY` on both ends.
    fn pair() -> impl Future<Output = io::Result<(Self::Conn, Self::Conn)>> + Send;
}

/// What a case needs from a connection.
pub(super) trait Conn: Send + 'static {
    fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;

    /// The same read, bounded to `limit` from now the way each runtime is meant to be used:
    /// netpoll moves the read deadline `limit` ahead (`set_read_deadline_after`: Go's
    /// `SetReadDeadline(time.Now().Add(limit))`, which for a limit of a second or more reads
    /// the coarse clock), tokio wraps the read in `tokio::time::timeout` (one precise read).
    fn read_within<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// The same read bounded by an instant the caller already has, so that no clock is read:
    /// netpoll's `set_read_deadline(Some(at))`, tokio's `time::timeout_at(at, ...)`. What is
    /// left is each runtime's own machinery.
    fn read_until<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        at: Instant,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// The same read inside the runtime's own `time::timeout(limit, ...)`: what code written
    /// in tokio's style pays on either runtime (for tokio, [`Conn::read_within`] again).
    fn read_timeout<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
}

pub(super) struct Netpoll(netpoll::Runtime);

impl Rt for Netpoll {
    const NAME: &'static str = "netpoll";
    type Conn = netpoll::net::TcpStream;

    fn start(workers: usize) -> io::Result<Self> {
        netpoll::Runtime::builder()
            .workers(workers)
            .build()
            .map(Netpoll)
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }

    fn spawn<F>(f: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = netpoll::spawn(f);
        async move { task.await.expect("benchmark task failed") }
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> + Send + 'static {
        netpoll::time::sleep(d)
    }

    async fn pair() -> io::Result<(Self::Conn, Self::Conn)> {
        let ln = netpoll::net::TcpListener::bind("127.0.0.1:0")?;
        let client = netpoll::net::TcpStream::connect(ln.local_addr()?).await?;
        let (server, _) = ln.accept().await?;
        // netpoll sets TCP_NODELAY on every connection, as Go does.
        Ok((client, server))
    }
}

impl Conn for netpoll::net::TcpStream {
    fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        netpoll::net::TcpStream::read(self, buf)
    }

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        netpoll::net::TcpStream::write_all(self, buf)
    }

    async fn read_within<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> io::Result<usize> {
        self.set_read_deadline_after(limit)?;
        netpoll::net::TcpStream::read(self, buf).await
    }

    async fn read_until<'a>(&'a mut self, buf: &'a mut [u8], at: Instant) -> io::Result<usize> {
        self.set_read_deadline(Some(at))?;
        netpoll::net::TcpStream::read(self, buf).await
    }

    async fn read_timeout<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> io::Result<usize> {
        match netpoll::time::timeout(limit, netpoll::net::TcpStream::read(self, buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

pub(super) struct Tokio(tokio::runtime::Runtime);

impl Rt for Tokio {
    const NAME: &'static str = "tokio";
    type Conn = tokio::net::TcpStream;

    fn start(workers: usize) -> io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .map(Tokio)
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }

    fn spawn<F>(f: F) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = tokio::spawn(f);
        async move { task.await.expect("benchmark task failed") }
    }

    fn sleep(d: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(d)
    }

    async fn pair() -> io::Result<(Self::Conn, Self::Conn)> {
        let ln = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let client = tokio::net::TcpStream::connect(ln.local_addr()?).await?;
        let (server, _) = ln.accept().await?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        Ok((client, server))
    }
}

impl Conn for tokio::net::TcpStream {
    fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        AsyncReadExt::read(self, buf)
    }

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        AsyncWriteExt::write_all(self, buf)
    }

    async fn read_within<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> io::Result<usize> {
        match tokio::time::timeout(limit, AsyncReadExt::read(self, buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    async fn read_until<'a>(&'a mut self, buf: &'a mut [u8], at: Instant) -> io::Result<usize> {
        let at = tokio::time::Instant::from_std(at);
        match tokio::time::timeout_at(at, AsyncReadExt::read(self, buf)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    async fn read_timeout<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        limit: Duration,
    ) -> io::Result<usize> {
        self.read_within(buf, limit).await
    }
}

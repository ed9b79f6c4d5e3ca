//! hyper 1.x on netpoll (feature `hyper`): an [`Executor`] that spawns netpoll tasks, a
//! [`Timer`] on netpoll's timers, and [`Io`], which gives the stream types hyper's
//! `Read`/`Write`.
//!
//! ```
//! use std::convert::Infallible;
//! use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
//! use netpoll::compat::hyper::{Io, Timer};
//! use netpoll::net::{TcpListener, TcpStream};
//!
//! # let rt = netpoll::Runtime::builder().workers(2).build()?;
//! # rt.block_on(async {
//! let ln = TcpListener::bind("127.0.0.1:0")?;
//! let addr = ln.local_addr()?;
//! netpoll::spawn(async move {
//!     while let Ok((conn, _)) = ln.accept().await {
//!         netpoll::spawn(async move {
//!             let hello = service_fn(|_req: Request<Incoming>| async {
//!                 Ok::<_, Infallible>(Response::new(String::from("Hello, World!")))
//!             });
//!             let _ = http1::Builder::new()
//!                 .timer(Timer)
//!                 .serve_connection(Io::new(conn), hello)
//!                 .await;
//!         });
//!     }
//! });
//!
//! // A client on netpoll too.
//! let conn = TcpStream::connect(addr).await?;
//! let (mut sender, connection) = hyper::client::conn::http1::handshake(Io::new(conn))
//!     .await
//!     .map_err(std::io::Error::other)?;
//! netpoll::spawn(connection);
//! let req = Request::get("/").header("host", "localhost").body(String::new()).unwrap();
//! let res = sender.send_request(req).await.map_err(std::io::Error::other)?;
//! assert_eq!(res.status(), 200);
//! # Ok::<(), std::io::Error>(())
//! # })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use ::hyper::rt::{self, ReadBufCursor};

use crate::net::{TcpStream, UnixStream};
use crate::time;

/// hyper's executor on netpoll: runs each future hyper hands it (HTTP/2 streams, a client's
/// connection) as a netpoll task.
///
/// # Panics
///
/// `execute` panics outside a runtime context (it runs inside hyper's connection futures, so
/// in a task or `block_on`, where it works).
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        // Detached: hyper watches the outcome through its own channels.
        drop(crate::spawn(fut));
    }
}

/// hyper's timer on netpoll's timer wheel (header read timeouts, keep-alive timers): its
/// sleeps are [`netpoll::time::Sleep`](crate::time::Sleep)s, and `reset` moves one in place.
///
/// The sleeps find their runtime when first polled, so the timer may be created anywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl rt::Sleep for time::Sleep {}

impl rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(time::sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn rt::Sleep>> {
        Box::pin(time::sleep_until(deadline))
    }

    /// Moves a sleep made by this timer in place (no new allocation); any other sleep is
    /// replaced.
    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<time::Sleep>() {
            // `Sleep` is `Unpin`: it may be moved out of the pin.
            Some(s) => Pin::into_inner(s).reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// Gives a stream hyper's `Read` and `Write`: `Io<TcpStream>`, `Io<UnixStream>`, or
/// `Io<&TcpStream>`/`Io<&UnixStream>` to serve a borrowed stream.
///
/// Reads go straight into hyper's buffer (no zeroing, no copy). The socket's deadlines and
/// `close` apply to hyper's I/O as to any other: a read deadline makes hyper's read fail with
/// `TimedOut`, `close` from another clone ends the connection. `poll_shutdown` half-closes
/// (`shutdown(Write)`); see the [module docs](super).
pub struct Io<T> {
    inner: T,
}

impl<T> Io<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> Io<T> {
        Io { inner }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Io").field(&self.inner).finish()
    }
}

macro_rules! hyper_io_impls {
    ($(impl $([$lt:lifetime])? for $ty:ty;)*) => {$(
        impl $(<$lt>)? rt::Read for Io<$ty> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `poll_recv` only hands the slice to `recv(2)`, which stores
                // initialised bytes: nothing already initialised is de-initialised.
                let unfilled = unsafe { buf.as_mut() };
                let n = ready!(self.inner.fd().poll_recv(cx, unfilled))?;
                // SAFETY: `poll_recv` returned `n`: the kernel wrote (initialised) the first
                // `n` bytes of the unfilled part, and `n` is at most its length.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }

        impl $(<$lt>)? rt::Write for Io<$ty> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.inner.fd().poll_send(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.inner.fd().poll_send_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(self.inner.shutdown(Shutdown::Write))
            }
        }
    )*};
}

hyper_io_impls! {
    impl for TcpStream;
    impl ['a] for &'a TcpStream;
    impl for UnixStream;
    impl ['a] for &'a UnixStream;
}

//! Compile-time checks of the API contract: public types are `Debug`, runtime, handles and
//! sockets are `Send + Sync`, and the futures returned by I/O methods are `Send`.

use std::fmt::Debug;
use std::future::Future;

use netpoll::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};

fn send_sync_debug<T: Send + Sync + Debug>() {}
fn send_future<F: Future + Send>(_: &F) {}

#[test]
fn public_types_are_send_sync_and_debug() {
    send_sync_debug::<netpoll::Runtime>();
    send_sync_debug::<netpoll::Builder>();
    send_sync_debug::<netpoll::JoinHandle<u32>>();
    send_sync_debug::<netpoll::JoinError>();
    send_sync_debug::<netpoll::RuntimeMetrics>();
    send_sync_debug::<netpoll::time::Sleep>();
    send_sync_debug::<netpoll::time::Interval>();
    send_sync_debug::<netpoll::time::Elapsed>();
    send_sync_debug::<TcpListener>();
    send_sync_debug::<TcpStream>();
    send_sync_debug::<UdpSocket>();
    send_sync_debug::<UnixListener>();
    send_sync_debug::<UnixStream>();
    send_sync_debug::<UnixDatagram>();
}

#[test]
fn io_futures_are_send() {
    let rt = netpoll::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let ln = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ln.local_addr().unwrap();
        let connect = TcpStream::connect(addr);
        send_future(&connect);
        let c = connect.await.unwrap();
        let mut buf = [0u8; 4];
        send_future(&ln.accept());
        send_future(&c.read(&mut buf));
        send_future(&c.write(b"x"));
        send_future(&c.read_exact(&mut buf));
        send_future(&c.write_all(b"x"));
        send_future(&c.peek(&mut buf));
        send_future(&netpoll::time::sleep(std::time::Duration::ZERO));
        send_future(&netpoll::time::timeout(std::time::Duration::ZERO, async {}));
        send_future(&netpoll::yield_now());
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_future(&u.recv_from(&mut buf));
        send_future(&u.send_to(b"x", addr));
    });
}

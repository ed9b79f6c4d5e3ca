//! Faults that change process-wide state run in a child process (this test binary, re-run with
//! one test selected and a role in the environment): descriptor exhaustion (`EMFILE`) and
//! `SIGPIPE`. Peer resets in the same process are in `tcp_close.rs`.

mod util_proc;
mod util_tcp;

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use util_tcp::*;

const LIMIT: Duration = Duration::from_secs(20);
const CHILD_LIMIT: Duration = Duration::from_secs(60);
const PROMPT: Duration = Duration::from_secs(3);

/// The highest open descriptor number of this process.
fn max_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .max()
        .unwrap()
}

fn is_emfile(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMFILE)
}

// Go §5.1: EMFILE from accept goes to the caller, and the listener keeps working once
// descriptors are free again (Go's http.Server backs off and retries on exactly this error).
#[test]
fn emfile_does_not_kill_the_accept_loop() {
    const NAME: &str = "emfile_does_not_kill_the_accept_loop";
    if child_role(NAME).is_some() {
        return emfile_child();
    }
    let (status, out) = run_in_child(NAME, "child", CHILD_LIMIT);
    assert!(status.success(), "child failed ({status}):\n{out}");
    assert!(out.contains("accept saw EMFILE"), "{out}");
}

fn emfile_child() {
    run(1, LIMIT, async {
        let (ln, addr) = listener();
        // Leave a few descriptor numbers free under the limit, then take them all with client
        // connections (they complete in the kernel's accept queue, unaccepted).
        let (soft, _) = nofile_limit();
        set_nofile_soft(max_fd() as u64 + 1 + 8).unwrap();
        let mut clients = Vec::new();
        loop {
            match std::net::TcpStream::connect(addr) {
                Ok(c) => clients.push(c),
                Err(e) if is_emfile(&e) => break,
                Err(e) => panic!("connect: {e}"),
            }
        }
        assert!(clients.len() >= 6, "only {} clients fit", clients.len());

        // The table is full: accept fails with EMFILE although connections are queued — and
        // fails again, cleanly, on retry.
        for _ in 0..2 {
            let e = ln.accept().await.map(drop).unwrap_err();
            assert!(is_emfile(&e), "{e:?}");
        }
        println!("accept saw EMFILE");

        // Free one descriptor: the next accept succeeds, and takes it.
        let total = clients.len();
        let dropped = clients.remove(0).local_addr().unwrap();
        let (first, peer) = within(PROMPT, "accept", ln.accept()).await.unwrap();
        assert_eq!(peer, dropped, "the accept queue is FIFO");
        let e = ln.accept().await.map(drop).unwrap_err();
        assert!(is_emfile(&e), "{e:?}");
        // The client just dropped: EOF.
        assert_eq!(first.read(&mut [0u8; 1]).await.unwrap(), 0);

        // Free four: as many accepts succeed, then EMFILE again.
        drop(first);
        clients.drain(..3);
        let mut accepted = Vec::new();
        for _ in 0..4 {
            accepted.push(within(PROMPT, "accept", ln.accept()).await.unwrap());
        }
        let e = ln.accept().await.map(drop).unwrap_err();
        assert!(is_emfile(&e), "{e:?}");

        // Restore the limit: the rest of the queue is accepted, and every connection whose
        // client is still open works.
        set_nofile_soft(soft).unwrap();
        while accepted.len() < total - 1 {
            accepted.push(within(PROMPT, "accept", ln.accept()).await.unwrap());
        }
        use std::io::{Read, Write};
        for cl in &mut clients {
            let me = cl.local_addr().unwrap();
            let (c, _) = accepted.iter().find(|(_, peer)| *peer == me).unwrap();
            cl.write_all(b"ping").unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"ping");
            c.write_all(b"pong").await.unwrap();
            cl.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"pong");
        }
    });
}

/// Whether this process's SIGPIPE disposition is the default (terminate).
fn sigpipe_is_default() -> bool {
    // SAFETY: querying the current action (null new action) into a zeroed, valid sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction == libc::SIG_DFL
    }
}

fn restore_default_sigpipe() {
    // SAFETY: setting SIGPIPE to its default disposition; no handler is involved. This process
    // is a child that runs this one test alone.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert!(sigpipe_is_default());
}

/// Go §5 / DESIGN §3: writes never raise SIGPIPE. Rust's runtime ignores SIGPIPE before
/// `main`, which would hide the signal, so the child restores the default disposition (death)
/// first; a control child shows that a plain `write(2)` does kill it.
#[test]
fn writes_to_a_reset_or_shut_down_peer_fail_without_sigpipe() {
    const NAME: &str = "writes_to_a_reset_or_shut_down_peer_fail_without_sigpipe";
    match child_role(NAME).as_deref() {
        Some("netpoll") => return sigpipe_child(),
        Some("control") => return sigpipe_control_child(),
        _ => {}
    }
    let (status, out) = run_in_child(NAME, "control", CHILD_LIMIT);
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "the control child should die of SIGPIPE ({status}):\n{out}"
    );
    let (status, out) = run_in_child(NAME, "netpoll", CHILD_LIMIT);
    assert!(status.success(), "child failed ({status}):\n{out}");
}

fn sigpipe_control_child() {
    restore_default_sigpipe();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid buffer of 1 byte, written to an fd we own.
    unsafe { libc::write(a.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    // Not reached: SIGPIPE kills the process.
}

fn is_pipe_or_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

fn sigpipe_child() {
    restore_default_sigpipe();
    run(2, LIMIT, async {
        // Our own shutdown(Write), then every kind of write: EPIPE.
        let (c, _s) = pair().await;
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            c.write(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert_eq!(
            c.write_all(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        let e = c.write_vectored(&[IoSlice::new(b"x")]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);

        // The peer resets: the first write may still be accepted by the kernel; later ones fail
        // with ECONNRESET and then EPIPE, never a signal.
        let (c, s) = pair().await;
        s.set_linger(Some(Duration::ZERO)).unwrap();
        s.close().unwrap();
        netpoll::time::sleep(Duration::from_millis(10)).await;
        let mut errors = 0;
        for _ in 0..10 {
            match c.write_all(&[1u8; 1024]).await {
                Ok(()) => {}
                Err(e) => {
                    assert!(is_pipe_or_reset(&e), "{e:?}");
                    errors += 1;
                }
            }
            if let Err(e) = c
                .write_vectored(&[IoSlice::new(b"a"), IoSlice::new(b"b")])
                .await
            {
                assert!(is_pipe_or_reset(&e), "{e:?}");
                errors += 1;
            }
        }
        assert!(errors >= 18, "writes to a reset peer kept succeeding");

        // A writer blocked on a full buffer when the reset arrives.
        let (c, s) = pair().await;
        let c2 = c.clone();
        let writer = netpoll::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = c2.write(&chunk).await {
                    return e;
                }
            }
        });
        netpoll::time::sleep(Duration::from_millis(50)).await;
        s.set_linger(Some(Duration::ZERO)).unwrap();
        s.close().unwrap();
        let e = within(Duration::from_secs(5), "blocked writer after reset", writer)
            .await
            .unwrap();
        assert!(is_pipe_or_reset(&e), "{e:?}");
        drop(c);
        println!("no SIGPIPE");
    });
    assert!(sigpipe_is_default());
}

/// Runs test `name` in a child process with its own user and network namespace, in which it
/// may bring up loopback and change the namespace's sysctls; skips with a note where namespaces
/// cannot be created (the child itself prints "skipped:" if it cannot configure them).
fn run_in_namespaces(name: &str) {
    use std::os::unix::process::CommandExt;
    // Map this process's user to root in the new user namespace, so that the child may write
    // its namespace's sysctls. Built before the fork: the child must not allocate.
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1\0").into_bytes();
    let gid_map = format!("0 {gid} 1\0").into_bytes();
    let started = try_run_in_child(name, "netns", CHILD_LIMIT, |cmd| {
        // SAFETY: runs in the forked child before exec, using only system calls (open, write,
        // close, unshare: async-signal-safe, no allocation) on buffers built before the fork;
        // the child is single-threaded, as unshare(CLONE_NEWUSER) requires.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                for (path, data) in [
                    (&b"/proc/self/setgroups\0"[..], &b"deny"[..]),
                    (&b"/proc/self/uid_map\0"[..], &uid_map[..uid_map.len() - 1]),
                    (&b"/proc/self/gid_map\0"[..], &gid_map[..gid_map.len() - 1]),
                ] {
                    let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let n = libc::write(fd, data.as_ptr().cast(), data.len());
                    libc::close(fd);
                    if n != data.len() as isize {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    });
    match started {
        Err(e) => println!("skipped: cannot create a user and network namespace here ({e})"),
        Ok((status, out)) => {
            assert!(status.success(), "child failed ({status}):\n{out}");
            if let Some(line) = out.lines().find(|l| l.contains("skipped:")) {
                println!("{line}");
            }
        }
    }
}

/// Brings the loopback interface up (a new network namespace starts with it down).
fn loopback_up() -> io::Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero ifreq is valid; the name is NUL-terminated within IFNAMSIZ, and the
    // ioctls read and write only the ifreq passed to them.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_ephemeral_ports(low: u16, high: u16) -> io::Result<()> {
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{low} {high}"),
    )
}

// Go's selfConnect retry (doDialTCPProto, issue 2690): when the kernel picks the port being
// dialled as the local port and nobody listens, TCP's simultaneous open connects the socket to
// itself. Go closes such a connection and dials again (twice at most), as it does on a
// spurious EADDRNOTAVAIL. The child runs in its own network namespace, where it can narrow the
// ephemeral port range to force the kernel's choice.
#[test]
fn connect_does_not_return_a_connection_to_itself() {
    const NAME: &str = "connect_does_not_return_a_connection_to_itself";
    if child_role(NAME).is_some() {
        return self_connect_child();
    }
    run_in_namespaces(NAME);
}

fn self_connect_child() {
    if let Err(e) = loopback_up().and_then(|()| set_ephemeral_ports(40000, 40000)) {
        println!("skipped: cannot configure the namespace ({e})");
        return;
    }
    run(1, LIMIT, async {
        // The only ephemeral port is the one dialled: every attempt connects to itself or finds
        // the port still held (TIME_WAIT), so after the retries the dial fails.
        let target: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        match netpoll::net::TcpStream::connect(target).await {
            Ok(c) => panic!(
                "connected to itself: {:?} -> {:?}",
                c.local_addr(),
                c.peer_addr()
            ),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e:?}"),
        }
        // With a second port to fall back on, the retry reaches the truth: nobody listens.
        set_ephemeral_ports(40010, 40011).unwrap();
        let target: std::net::SocketAddr = "127.0.0.1:40010".parse().unwrap();
        match netpoll::net::TcpStream::connect(target).await {
            Ok(c) => panic!(
                "connected to itself: {:?} -> {:?}",
                c.local_addr(),
                c.peer_addr()
            ),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e:?}"),
        }
    });
}

// Go's setDefaultSockopts: IPv6 sockets get IPV6_V6ONLY set explicitly (off for "tcp"), so a
// listener on [::] takes IPv4 connections whatever the system default (`bindv6only`) is. The
// child turns that default on in its own network namespace.
#[test]
fn wildcard_ipv6_listener_is_dual_stack_whatever_the_system_default() {
    const NAME: &str = "wildcard_ipv6_listener_is_dual_stack_whatever_the_system_default";
    if child_role(NAME).is_some() {
        return dual_stack_child();
    }
    run_in_namespaces(NAME);
}

fn dual_stack_child() {
    let configured =
        loopback_up().and_then(|()| std::fs::write("/proc/sys/net/ipv6/bindv6only", "1"));
    if let Err(e) = configured {
        println!("skipped: cannot configure the namespace ({e})");
        return;
    }
    run(1, LIMIT, async {
        let ln = match netpoll::net::TcpListener::bind("[::]:0") {
            Ok(ln) => ln,
            Err(e) => {
                println!("skipped: no IPv6 here ({e})");
                return;
            }
        };
        assert_eq!(sockopt_int(&ln, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 0);
        let port = ln.local_addr().unwrap().port();
        let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let c = within(
            PROMPT,
            "connect over IPv4",
            netpoll::net::TcpStream::connect(v4),
        )
        .await
        .expect("an IPv4 connection to a [::] listener");
        let (s, peer) = within(PROMPT, "accept", ln.accept()).await.unwrap();
        match peer {
            std::net::SocketAddr::V6(a) => {
                assert_eq!(a.ip().to_ipv4_mapped(), Some([127, 0, 0, 1].into()))
            }
            other => panic!("unexpected peer {other}"),
        }
        c.write_all(b"v4").await.unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"v4");
    });
}

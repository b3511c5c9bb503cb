//! The live page's API and stream against hostile clients, on the real
//! binary (no browser): 500 stream requests (beyond the cap of 32: 503,
//! while `/healthz` and the API still answer and the study trains to its
//! end), `since=` garbage (400 naming it), a huge `since` (200, empty),
//! writes (405), and a stream client that never reads (dropped, its
//! connection closed, the server unaffected).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::live::{get_json, request, spawn_with_endpoint, stop};
use common::*;

/// Opens a stream request; the status code and the open connection.
fn open_stream(addr: SocketAddr) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, s)
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn streams(addr: SocketAddr) -> u64 {
    get_json(addr, "/api/v1/status")["streams"]
        .as_u64()
        .unwrap()
}

#[test]
fn five_hundred_streams_and_bad_queries_leave_training_and_the_server_alone() {
    let w = workspace(2000, 300);
    let state = w.root.join("state");
    let mut args = one_quick_trial("run", s(&w.data), s(&state), "fast");
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "3";
    args.extend(["--metrics-addr", "127.0.0.1:0"]);
    let mut cmd = trainerd(&args);
    cmd.env("TRAINERD_FAULT_DELAY_MS", "20")
        .env("TRAINERD_HEARTBEAT_MS", "200");
    let log = w.root.join("trainerd.log");
    let (mut child, addr) = spawn_with_endpoint(&mut cmd, &log);
    wait_until("a healthy heartbeat", Duration::from_secs(60), || {
        request(addr, "GET", "/healthz").0 == 200
    });

    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..500 {
        match open_stream(addr) {
            (200, s) => open.push(s),
            (503, _) => refused += 1,
            (code, _) => panic!("a stream request answered {code}"),
        }
    }
    assert_eq!((open.len(), refused), (32, 468), "the cap of open streams");
    let (code, head, body) = request(addr, "GET", "/api/v1/stream");
    assert_eq!(code, 503, "{head}");
    assert!(body.contains("32 streams are open"), "{body}");
    assert_eq!(
        request(addr, "GET", "/healthz").0,
        200,
        "{}",
        read_log(&log)
    );
    assert_eq!(streams(addr), 32);

    // The page and its assets: the policy on each, under 300 KB in all.
    let mut bytes = 0;
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let (code, head, body) = request(addr, "GET", path);
        assert_eq!(code, 200, "{path}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(
                "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self';"
            ) && head.contains("frame-ancestors 'none'")
                && head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
        bytes += body.len();
    }
    assert!(bytes < 300 * 1024, "the page transfers {bytes} bytes");

    // Bad queries: clear 4xx naming the parameter; a huge since is no error.
    let (code, _, body) = request(addr, "GET", "/api/v1/events?since=garbage");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("since: expected a whole number"), "{body}");
    let huge = format!("/api/v1/events?since={}", "9".repeat(400));
    let v = get_json(addr, &huge);
    assert_eq!(v["events"], serde_json::json!([]), "{v}");
    assert_eq!(request(addr, "GET", "/api/v1/events?limit=-3").0, 400);
    assert_eq!(request(addr, "GET", "/api/v1/studies/..%2f..%2fetc").0, 400);
    assert_eq!(request(addr, "GET", "/api/v1/nothing").0, 404);
    for path in [
        "/api/v1/status",
        "/api/v1/events",
        "/api/v1/stream",
        "/api/v1/anything",
    ] {
        let (code, head, _) = request(addr, "POST", path);
        assert_eq!(code, 405, "POST {path}: {head}");
    }

    // The study trains to its end with every stream slot taken.
    wait_until("the study's end", Duration::from_secs(180), || {
        get_json(addr, "/api/v1/status")["study"]["state"] == "target_reached"
    });
    let champion = get_json(addr, "/api/v1/champion");
    assert_eq!(champion["champion"]["version"], 1, "{champion}");
    drop(open);
    wait_until("the streams closed", Duration::from_secs(30), || {
        streams(addr) == 0
    });
    assert_eq!(open_stream(addr).0, 200, "a slot is free again");
    assert_eq!(stop(&mut child).code(), Some(143), "{}", read_log(&log));
}

/// A loopback connection with a receive buffer as small as the kernel allows.
fn tiny_window(addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor made here, handed to TcpStream once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let n: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&n as *const libc::c_int).cast(),
            len,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_stream_client_that_never_reads_is_dropped() {
    let w = workspace(600, 100);
    let state = w.root.join("state");
    let mut args = one_quick_trial("run", s(&w.data), s(&state), "linear");
    args.extend(["--metrics-addr", "127.0.0.1:0"]);
    let mut cmd = trainerd(&args);
    cmd.env("TRAINERD_DASHBOARD_TICK_MS", "10")
        .env("TRAINERD_HEARTBEAT_MS", "200");
    let log = w.root.join("trainerd.log");
    let (mut child, addr) = spawn_with_endpoint(&mut cmd, &log);
    wait_until("the study's end", Duration::from_secs(120), || {
        get_json(addr, "/api/v1/status")["study"]["state"] == "target_reached"
    });

    let mut lazy = tiny_window(addr);
    write!(lazy, "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_until("the stream open", Duration::from_secs(30), || {
        streams(addr) == 1
    });
    // Every new event line changes the status: the stream has to send it.
    // (The daemon is idle: nothing else appends to the log now.)
    let mut events = std::fs::OpenOptions::new()
        .append(true)
        .open(state.join("events.jsonl"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = 0;
    while streams(addr) > 0 {
        assert!(
            Instant::now() < deadline,
            "a client that never reads kept its stream ({lines} changes sent)"
        );
        for _ in 0..20 {
            lines += 1;
            writeln!(
                events,
                "{{\"kind\":\"note\",\"study\":\"x\",\"message\":\"change {lines}\"}}"
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(12));
        }
    }
    // Its connection was closed: reading what was buffered ends, at EOF or a reset.
    lazy.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        match lazy.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the dropped stream's connection is still open: {e}"),
        }
        assert!(
            total < 64 << 20,
            "the server kept sending after dropping the stream"
        );
    }
    assert!(
        read_log(&log).contains("does not read"),
        "no log line about the dropped stream"
    );
    assert_eq!(request(addr, "GET", "/healthz").0, 200);
    assert_eq!(
        get_json(addr, "/api/v1/events?limit=1")["events"][0]["kind"],
        "note"
    );
    assert_eq!(stop(&mut child).code(), Some(143), "{}", read_log(&log));
}

//! Hostile clients against `trainerd serve`: a slowloris sending a header
//! byte a second, 1,000 idle connections, a 100 MB body, bytes that are not
//! HTTP, an idle kept-alive connection. Each gets a 4xx or a closed connection; the server does not crash
//! and `/v2/health/live` still answers.

mod common;

use common::serve::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn live(addr: std::net::SocketAddr) {
    let (status, body) = call(addr, "GET", "/v2/health/live", b"");
    assert_eq!(status, 200, "{body}");
}

/// What the server sent back before closing (empty if nothing).
fn answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn hostile_clients_get_4xx_or_a_closed_connection() {
    let t = trained();
    let mut srv = Serve::ready(&t.state, &t.root.join("serve-hostile.log"), &[]);
    let a = srv.addr;

    // Slowloris: the server answers others meanwhile, and closes it (head timeout).
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for &byte in head.iter().cycle() {
            if s.write_all(&[byte]).is_err() {
                return true;
            }
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => return String::from_utf8_lossy(&buf).contains(" 408 "),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        false
    });
    std::thread::sleep(Duration::from_secs(2));
    live(a);

    // A kept-alive connection left idle after a request.
    let mut kept = Client::connect(a);
    assert_eq!(kept.call("GET", "/v2/health/live", b"").unwrap().0, 200);

    // 1,000 idle connections (the cap is 1,024): others are still answered.
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(a).unwrap()).collect();
    live(a);

    // 100 MB declared: refused before the body (413), or the connection closed.
    let mut big = TcpStream::connect(a).unwrap();
    let head =
        "POST /v2/models/trainerd/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
    big.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'['; 1 << 20];
    for _ in 0..100 {
        if big.write_all(&chunk).is_err() {
            break;
        }
    }
    let resp = answer(&mut big);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 413"),
        "{resp:.200}"
    );
    // The same, chunked (no declared length): the cap applies while reading.
    let mut chunked = TcpStream::connect(a).unwrap();
    let head =
        "POST /v2/models/trainerd/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    chunked.write_all(head.as_bytes()).unwrap();
    for _ in 0..100 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if chunked.write_all(&piece).is_err() {
            break;
        }
    }
    let resp = answer(&mut chunked);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 413"),
        "{resp:.200}"
    );
    live(a);

    // Not HTTP at all.
    let mut junk = TcpStream::connect(a).unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n")
        .unwrap();
    let resp = answer(&mut junk);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp:.200}"
    );
    // A huge header.
    let mut headers = TcpStream::connect(a).unwrap();
    let long = format!(
        "GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = headers.write_all(long.as_bytes());
    let resp = answer(&mut headers);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 4"),
        "{resp:.200}"
    );

    drop(idle);
    live(a);
    assert!(
        slow.join().unwrap(),
        "the slowloris connection was never closed"
    );
    live(a);
    assert!(srv.alive(), "the server exited: {}", read_log(&srv.log));
}

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

/// One request with Triton's binary header: the status line, the headers
/// (lower-cased) and the body's bytes; the connection is closed after it.
fn binary_call(addr: std::net::SocketAddr, header_len: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v2/models/trainerd/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Inference-Header-Content-Length: {header_len}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&resp[..end]).to_lowercase();
    (head, resp[end + 4..].to_vec())
}

/// A binary request: the JSON header (one input `pixels` of `shape` and
/// `datatype` declaring `size` bytes, outputs asked for as binary), then `tail`.
fn binary_body(shape: &[i64], datatype: &str, size: i64, tail: &[u8]) -> (String, Vec<u8>) {
    let head = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "pixels", "shape": shape, "datatype": datatype,
                    "parameters": {"binary_data_size": size}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}],
    }))
    .unwrap();
    let len = head.len().to_string();
    let mut body = head;
    body.extend_from_slice(tail);
    (len, body)
}

#[test]
fn binary_tensors_are_checked_against_what_they_declare() {
    let t = trained();
    let mut srv = Serve::ready(&t.state, &t.root.join("serve-binary.log"), &[]);
    let a = srv.addr;
    let (pixels, n, idx) = test_images(&t.data);
    let want = predict_labels(&t.state, &idx);

    // A well-formed UINT8 request: labels as predict's, 8 bytes each, after
    // a JSON header whose length the answer's header gives.
    let (len, body) = binary_body(&[n as i64, 784], "UINT8", pixels.len() as i64, &pixels);
    let (head, resp) = binary_call(a, &len, &body);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let json_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("inference-header-content-length: "))
        .expect("the answer's header length")
        .trim()
        .parse()
        .unwrap();
    let meta = json(std::str::from_utf8(&resp[..json_len]).unwrap());
    assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], n * 8);
    let labels: Vec<i64> = resp[json_len..]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels, want);

    let one = &pixels[..784];
    let fp32: Vec<u8> = one
        .iter()
        .flat_map(|&p| (p as f32 / 255.0).to_le_bytes())
        .collect();
    let (ok_len, ok_body) = binary_body(&[1, 784], "FP32", 3136, &fp32);
    let case = |(len, body): (String, Vec<u8>), want: &'static str| (len, body, want);
    let bad = [
        // The header's length beyond the body, negative, not a number.
        case(
            (format!("{}", ok_body.len() + 1), ok_body.clone()),
            "exceeds the body",
        ),
        case(("-5".into(), ok_body.clone()), "not a byte count"),
        case(("12abc".into(), ok_body.clone()), "not a byte count"),
        // A size the shape and datatype disagree with, or beyond the body.
        case(
            binary_body(&[1, 784], "FP32", 784, &fp32[..784]),
            "disagrees with shape",
        ),
        case(
            binary_body(&[1, 784], "FP32", 1 << 30, &fp32),
            "exceeds the",
        ),
        // A datatype the model does not take.
        case(
            binary_body(&[1, 784], "FP64", 6272, &[0; 6272]),
            r#"datatype \"FP64\""#,
        ),
        // More bytes than the inputs declare.
        case(
            (ok_len.clone(), [&ok_body[..], &[0; 16]].concat()),
            "add up to",
        ),
        // Not a finite number.
        case(
            binary_body(&[1, 1, 28, 28], "FP32", 3136, &[0xff; 3136]),
            "NaN",
        ),
    ];
    for (len, body, want) in &bad {
        let (head, resp) = binary_call(a, len, body);
        let text = String::from_utf8_lossy(&resp);
        assert!(head.starts_with("http/1.1 400"), "{want}: {head}\n{text}");
        assert!(text.contains(want), "want {want:?} in {text}");
        live(a);
    }
    // And a good one still succeeds afterwards.
    let (head, _) = binary_call(a, &ok_len, &ok_body);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(srv.alive(), "the server exited: {}", read_log(&srv.log));
}

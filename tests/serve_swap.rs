//! Hot swap under load: clients on 127.0.0.1 send requests without pause
//! while five champions are promoted (renamed into place exactly as
//! `promote()` does) and one damaged one is: no request fails, every answer
//! names a promoted version, and one client never sees versions go back.
//! `trainerd run --serve-addr` serves the champion its own study promotes.

mod common;

use common::serve::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Seen {
    versions: Vec<u64>,
    failures: Vec<String>,
}

/// Sends single-image requests until `stop`; `fresh`: a new connection each time.
fn client(
    addr: std::net::SocketAddr,
    body: Vec<u8>,
    latest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    fresh: bool,
) -> Seen {
    let mut seen = Seen {
        versions: vec![],
        failures: vec![],
    };
    let mut conn = Client::connect(addr);
    while !stop.load(Ordering::Relaxed) {
        if fresh {
            conn = Client::connect(addr);
        }
        match conn.call("POST", "/v2/models/trainerd/infer", &body) {
            Ok((200, resp)) => {
                let (_, v) = labels_of(&resp);
                latest.store(v, Ordering::Relaxed);
                seen.versions.push(v);
            }
            Ok((status, resp)) => seen.failures.push(format!("{status}: {resp}")),
            Err(e) => {
                seen.failures.push(e.to_string());
                conn = Client::connect(addr);
            }
        }
    }
    seen
}

fn wait_for_version(latest: &AtomicU64, v: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while latest.load(Ordering::Relaxed) != v {
        assert!(Instant::now() < deadline, "version {v} never served");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn five_promotions_under_load_fail_no_request() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let source = t.state.join("best");
    champion_copy(&source, &state.join("best"), 1);
    let srv = Serve::start(&state, &tmp.path().join("serve.log"), &[]);
    wait_ready(srv.addr);
    let (pixels, _, _) = test_images(&t.data);
    let stop = Arc::new(AtomicBool::new(false));
    let latest = Arc::new(AtomicU64::new(0));
    let spawn = |fresh: bool, latest: Arc<AtomicU64>| {
        let (addr, body, stop) = (
            srv.addr,
            infer_body(&pixels[..784], 1, "UINT8", true),
            stop.clone(),
        );
        std::thread::spawn(move || client(addr, body, latest, stop, fresh))
    };
    let kept = spawn(false, latest.clone());
    let fresh = spawn(true, Arc::new(AtomicU64::new(0)));
    wait_for_version(&latest, 1);
    for v in 2..=6u64 {
        let staged = tmp.path().join(format!("staged-{v}"));
        champion_copy(&source, &staged, v);
        promote_dir(&state, &staged);
        wait_for_version(&latest, v);
        if v == 4 {
            // A damaged champion is refused; version 4 keeps serving.
            let bad = tmp.path().join("staged-bad");
            champion_copy(&source, &bad, 99);
            let w = bad.join("model.safetensors");
            let mut bytes = std::fs::read(&w).unwrap();
            bytes[100] ^= 0xff;
            std::fs::write(&w, bytes).unwrap();
            promote_dir(&state, &bad);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !read_log(&srv.log).contains("cannot load the champion") {
                assert!(Instant::now() < deadline, "{}", read_log(&srv.log));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let kept = kept.join().unwrap();
    let fresh = fresh.join().unwrap();
    for (name, seen) in [("kept-alive", &kept), ("fresh", &fresh)] {
        assert!(seen.failures.is_empty(), "{name}: {:?}", seen.failures);
        assert!(
            seen.versions.iter().all(|v| (1..=6).contains(v)),
            "{name}: {:?}",
            seen.versions
        );
        assert!(
            seen.versions.windows(2).all(|w| w[0] <= w[1]),
            "{name}: versions went back"
        );
    }
    assert!(kept.versions.contains(&6) && !kept.versions.is_empty());
    let (_, metrics) = call(srv.addr, "GET", "/metrics", b"");
    assert!(
        metrics.contains("trainerd_serve_swaps_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trainerd_serve_model_version 6"),
        "{metrics}"
    );
}

#[test]
fn the_daemon_serves_what_it_promotes() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut args = one_quick_trial("run", s(&t.data), s(&state), "linear");
    args.extend(["--serve-addr", "127.0.0.1:0"]);
    let srv = Serve::spawn(&args, &tmp.path().join("run.log"));
    wait_ready(srv.addr);
    let (pixels, _, _) = test_images(&t.data);
    let (status, resp) = call(
        srv.addr,
        "POST",
        "/v2/models/trainerd/infer",
        &infer_body(&pixels[..784 * 4], 4, "UINT8", false),
    );
    assert_eq!(status, 200, "{resp}");
    let (labels, version) = labels_of(&resp);
    assert_eq!((labels.len(), version), (4, 1));
}

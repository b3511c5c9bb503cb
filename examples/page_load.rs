//! Open live pages without a browser, for bench/page.sh: each of PAGES
//! threads follows `/api/v1/stream` and, as the page's app.js does, asks
//! again for the study, the events or the champion only when a status
//! names a new revision of it. Runs until the server goes away, then
//! prints one JSON line: statuses received, fetches made, bytes read in
//! all, and the bytes of one page's first load (its assets and the
//! first status, study, events and champion).
//!
//!   page_load ADDR PAGES

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Counts {
    statuses: AtomicU64,
    /// Bytes read by the time the first page had loaded everything once.
    first_load: AtomicU64,
    fetches: AtomicU64,
    bytes: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(pages)) = (args.get(1), args.get(2).and_then(|p| p.parse().ok())) else {
        eprintln!("usage: page_load ADDR PAGES");
        std::process::exit(64);
    };
    let counts = Arc::new(Counts::default());
    let threads: Vec<_> = (0..pages)
        .map(|_| {
            let (addr, counts) = (addr.clone(), counts.clone());
            std::thread::spawn(move || follow(&addr, &counts))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "{{\"pages\":{pages},\"first_load_bytes\":{},\"statuses\":{},\"fetches\":{},\"bytes\":{}}}",
        n(&counts.first_load),
        n(&counts.statuses),
        n(&counts.fetches),
        n(&counts.bytes)
    );
}

/// What one page has seen: the study and the revisions of its parts.
#[derive(Default)]
struct Seen {
    study: Option<String>,
    journal: u64,
    curve: u64,
    events: u64,
    champion: String,
    /// The events' `next` (app.js's `lastEvent`).
    next_event: u64,
}

/// One page: the first status by GET, then the stream until it ends.
fn follow(addr: &str, counts: &Counts) {
    let mut seen = Seen::default();
    let local = Counts::default();
    for asset in ["/", "/assets/app.js", "/assets/app.css"] {
        get(addr, asset, &local);
    }
    if let Some(body) = get(addr, "/api/v1/status", &local) {
        on_status(addr, &body, &mut seen, &local, true);
    }
    let loaded = local.bytes.load(Ordering::Relaxed);
    let _ = counts
        .first_load
        .compare_exchange(0, loaded, Ordering::Relaxed, Ordering::Relaxed);
    counts.bytes.fetch_add(loaded, Ordering::Relaxed);
    counts
        .fetches
        .fetch_add(local.fetches.load(Ordering::Relaxed), Ordering::Relaxed);
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let req =
        format!("GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    // Each message comes as one chunk, so its `data:` line is whole; the
    // chunk-size lines around it are not `data:` lines and are skipped.
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        counts
            .bytes
            .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        if let Some(data) = line.strip_prefix("data: ") {
            counts.statuses.fetch_add(1, Ordering::Relaxed);
            on_status(addr, data, &mut seen, counts, false);
        }
    }
}

/// Fetches what the status says changed, as app.js's `onStatus` does.
fn on_status(addr: &str, data: &str, seen: &mut Seen, counts: &Counts, first: bool) {
    let Ok(s) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    let rev = &s["rev"];
    let now = Seen {
        study: s["study"]["id"].as_str().map(str::to_string),
        journal: rev["journal"].as_u64().unwrap_or(0),
        curve: rev["curve"].as_u64().unwrap_or(0),
        events: rev["events"].as_u64().unwrap_or(0),
        champion: rev["champion"].to_string(),
        next_event: seen.next_event,
    };
    let study_changed =
        now.study != seen.study || now.journal != seen.journal || now.curve != seen.curve;
    if first || study_changed {
        if let Some(id) = &now.study {
            get(addr, &format!("/api/v1/studies/{id}"), counts);
        }
    }
    let events_changed = first || now.events != seen.events;
    if first || now.champion != seen.champion {
        get(addr, "/api/v1/champion", counts);
    }
    *seen = now;
    if events_changed {
        let path = format!("/api/v1/events?since={}&limit=100", seen.next_event);
        let next = get(addr, &path, counts)
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["next"].as_u64());
        seen.next_event = next.unwrap_or(seen.next_event);
    }
}

/// The body of `GET path` on a connection of its own.
fn get(addr: &str, path: &str, counts: &Counts) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    counts.fetches.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&raw);
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

//! Load generator for bench/serve.sh, and the raw forward pass to compare with.
//!
//!   serve_bench load ADDR CLIENTS IMAGES_PER_REQUEST SECONDS [json|binary|grpc]
//!     CLIENTS threads, each on its own kept-alive connection, send UINT8
//!     requests without pause, as JSON `data` (the default) or as Triton's
//!     binary tensor data (the label back in binary too), or CLIENTS gRPC
//!     clients (ADDR: the `--grpc-addr`) send `raw_input_contents`
//!     ([`grpc`]); prints requests/s, images/s, p50/p99 latency.
//!   serve_bench raw STATE_DIR BATCH SECONDS
//!     the champion's forward pass on batches of BATCH in a loop, as the
//!     serve batcher runs it: libtorch as one model of `THREADS` threads,
//!     then onnxruntime as `THREADS` single-threaded instances, each looping
//!     on its own thread; images/s, and p50/p99 latency of single-image
//!     passes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod grpc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match arg(1).as_str() {
        "load" => {
            let form = args.get(6).map_or("json", String::as_str);
            load(&arg(2), num(&arg(3)), num(&arg(4)), num(&arg(5)), form)
        }
        "raw" => raw(&arg(2), num(&arg(3)), num(&arg(4))),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: serve_bench load ADDR CLIENTS IMAGES SECONDS [json|binary|grpc] | raw STATE_DIR BATCH SECONDS");
    std::process::exit(64)
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| usage())
}

fn body(images: usize) -> Vec<u8> {
    let data: Vec<u32> = (0..images * 784).map(|i| (i * 7 % 256) as u32).collect();
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "pixels", "shape": [images, 784], "datatype": "UINT8", "data": data}],
        "outputs": [{"name": "label"}],
    }))
    .expect("request body")
}

/// The same request in Triton's binary form: the JSON header's length, and
/// the body (header, then the raw pixels).
fn binary_body(images: usize) -> (usize, Vec<u8>) {
    let pixels: Vec<u8> = (0..images * 784).map(|i| (i * 7 % 256) as u8).collect();
    let mut body = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "pixels", "shape": [images, 784], "datatype": "UINT8",
                    "parameters": {"binary_data_size": pixels.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}],
    }))
    .expect("request header");
    let header = body.len();
    body.extend_from_slice(&pixels);
    (header, body)
}

/// One request on a kept-alive connection; false on anything but a 200.
fn request(r: &mut BufReader<TcpStream>, head: &[u8], body: &[u8]) -> bool {
    let s = r.get_mut();
    if s.write_all(head).and_then(|_| s.write_all(body)).is_err() {
        return false;
    }
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return false;
    }
    let ok = line.split_whitespace().nth(1) == Some("200");
    let mut len = 0;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut buf = vec![0; len];
    ok && r.read_exact(&mut buf).is_ok()
}

fn load(addr: &str, clients: usize, images: usize, seconds: usize, form: &str) {
    let server = std::env::var("SERVER_PID").ok();
    let before = (cpu_seconds("self"), server.as_deref().map(cpu_seconds));
    let (lat, failed) = match form {
        "grpc" => grpc::load(addr, clients, images, seconds),
        _ => load_http(addr, clients, images, seconds, form),
    };
    let served = (lat.len() * images) as f64;
    report(lat, failed, form, clients, images, seconds);
    let client = cpu_seconds("self") - before.0;
    let server_cpu = server
        .as_deref()
        .map(cpu_seconds)
        .zip(before.1)
        .map(|(a, b)| a - b);
    match server_cpu {
        Some(s) => println!(
            "       cpu seconds: client {client:.2}, server {s:.2}; images per server cpu-second {:.0}",
            served / s.max(1e-9)
        ),
        None => println!("       cpu seconds: client {client:.2}"),
    }
}

/// User plus system CPU seconds of process `pid` ("self": this one) so
/// far, from /proc (0 where it cannot be read).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state field.
    let ticks = f.get(10).unwrap_or(&0.0) + f.get(11).unwrap_or(&0.0);
    ticks / 100.0
}

/// Each request's latency over HTTP/1.1 until `seconds` pass, and the failures.
fn load_http(
    addr: &str,
    clients: usize,
    images: usize,
    seconds: usize,
    form: &str,
) -> (Vec<Duration>, usize) {
    let (extra, body) = match form {
        "json" => (String::new(), body(images)),
        "binary" => {
            let (header, body) = binary_body(images);
            (
                format!("Inference-Header-Content-Length: {header}\r\n"),
                body,
            )
        }
        _ => usage(),
    };
    let head = format!(
        "POST /v2/models/trainerd/infer HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let end = Instant::now() + Duration::from_secs(seconds as u64);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, head, body) = (addr.to_string(), head.clone(), body.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(TcpStream::connect(&addr).expect("connect"));
                let _ = r.get_ref().set_nodelay(true);
                let (mut lat, mut failed) = (Vec::new(), 0usize);
                while Instant::now() < end {
                    let t = Instant::now();
                    if request(&mut r, head.as_bytes(), &body) {
                        lat.push(t.elapsed());
                    } else {
                        failed += 1;
                        r = BufReader::new(TcpStream::connect(&addr).expect("connect"));
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    let (mut lat, mut failed) = (Vec::new(), 0);
    for t in threads {
        let (l, f) = t.join().expect("client thread");
        lat.extend(l);
        failed += f;
    }
    (lat, failed)
}

fn report(
    mut lat: Vec<Duration>,
    failed: usize,
    form: &str,
    clients: usize,
    images: usize,
    seconds: usize,
) {
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let rps = lat.len() as f64 / seconds as f64;
    println!(
        "{form:<6} clients={clients:<3} images/request={images:<3} requests/s={rps:9.1} images/s={:9.1} \
         p50_ms={:7.3} p99_ms={:7.3} failed={failed}",
        rps * images as f64,
        ms(pct(0.50)),
        ms(pct(0.99)),
    );
}

fn raw(state: &str, batch: usize, seconds: usize) {
    use trainerd::serve::engine::{EngineSetup, Served};
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads as i32);
    let state = std::path::Path::new(state);
    let ort = trainerd::onnxruntime::runtime()
        .map_err(|e| eprintln!("raw: no onnxruntime: {e}"))
        .ok();
    // libtorch (one model, `threads` threads), then onnxruntime when its
    // library loads (as the server runs it: one single-threaded instance per
    // thread, each driven by its own thread).
    for runtime in std::iter::once(None).chain(ort.map(Some)) {
        let champion = trainerd::predict::load_champion(state).expect("champion");
        let instances = if runtime.is_some() { threads } else { 1 };
        let setup = EngineSetup {
            runtime,
            threads: threads / instances,
            instances,
            memory_budget: u64::MAX,
        };
        let served = Served::new(champion, &state.join("best"), setup);
        let [c, h, w] = served.card.input_shape;
        let per_image = (c * h * w) as usize;
        let pixels: Vec<f32> = (0..batch * per_image)
            .map(|i| (i % 256) as f32 / 255.0)
            .collect();
        let rate = throughput(&served, instances, &pixels, batch, seconds);
        let mut lat = Vec::new();
        let end = Instant::now() + Duration::from_secs(seconds as u64);
        while Instant::now() < end {
            let t = Instant::now();
            served
                .logits01(0, &pixels[..per_image], 1)
                .expect("forward pass");
            lat.push(t.elapsed());
        }
        lat.sort();
        let ms = |p: f64| {
            let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "raw forward pass: engine={:<17} instances x threads={instances}x{} batch={batch} images/s={rate:9.1}  \
             batch=1 p50_ms={:7.3} p99_ms={:7.3}",
            served.platform(),
            threads / instances,
            ms(0.50),
            ms(0.99),
        );
    }
}

/// Images/s of `instances` threads, each running batches of `batch` on its
/// own instance for `seconds`.
fn throughput(
    served: &trainerd::serve::engine::Served,
    instances: usize,
    pixels: &[f32],
    batch: usize,
    seconds: usize,
) -> f64 {
    let end = Instant::now() + Duration::from_secs(seconds as u64);
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let lanes: Vec<_> = (0..instances)
            .map(|lane| {
                s.spawn(move || {
                    let mut done = 0;
                    while Instant::now() < end {
                        served.logits01(lane, pixels, batch).expect("forward pass");
                        done += batch;
                    }
                    done
                })
            })
            .collect();
        lanes.into_iter().map(|l| l.join().expect("lane")).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

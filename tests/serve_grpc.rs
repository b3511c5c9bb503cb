//! `trainerd serve --grpc-addr` (and `run --grpc-addr`): Triton's own gRPC
//! client against it (tests/interop/check_triton_grpc.py), hot swap under
//! gRPC load with no failed call, and hostile HTTP/2 clients: a message
//! declaring 1 GiB, streams opened and never finished, silent sockets and
//! garbage, 576 MiB of messages arriving at once (memory stays within the
//! byte budget). After each, the server answers and other clients' calls succeed.

mod common;

use common::serve::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trainerd::serve::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use trainerd::serve::grpc::pb::{ModelInferRequest, ServerLiveRequest};

type Client = GrpcInferenceServiceClient<tonic::transport::Channel>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(addr: SocketAddr) -> Client {
    GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// The model version that answered, or the failure.
async fn infer_version(client: &mut Client, req: ModelInferRequest) -> Result<u64, String> {
    let resp = client.model_infer(req).await.map_err(|s| s.to_string())?;
    resp.into_inner()
        .model_version
        .parse()
        .map_err(|e| format!("{e}"))
}

async fn wait_ready(client: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client
            .server_ready(trainerd::serve::grpc::pb::ServerReadyRequest {})
            .await
            .is_ok_and(|r| r.into_inner().ready);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "never ready over gRPC");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn tritonclient_grpc_talks_to_it() {
    let t = trained();
    let log = t.root.join("serve-grpc-triton.log");
    let srv = Serve::ready(&t.state, &log, &["--grpc-addr", "127.0.0.1:0"]);
    let grpc = grpc_addr_of(&srv.log);
    let (_, n, idx) = test_images(&t.data);
    let want = predict_labels(&t.state, &idx);
    let labels = t.root.join("predict-labels-grpc.json");
    std::fs::write(&labels, serde_json::to_vec(&want).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let check = Command::new(&python)
        .arg(root.join("tests/interop/check_triton_grpc.py"))
        .arg(grpc.to_string())
        .arg(&idx)
        .arg(&labels)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", python.display()));
    assert!(
        check.status.success(),
        "tritonclient.grpc check failed (scripts/setup-interop.sh installs tritonclient[grpc]):\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains(&format!("{n} images agree")), "{out}");
    let (_, metrics) = call(srv.addr, "GET", "/metrics", b"");
    assert!(
        metrics.contains("trainerd_serve_grpc_requests_total{code=\"OK\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("code=\"ResourceExhausted\"")
            && metrics.contains("code=\"InvalidArgument\""),
        "{metrics}"
    );
}

/// Calls without pause until `stop`; every answer's version, every failure.
async fn keep_calling(
    addr: SocketAddr,
    pixels: Vec<u8>,
    latest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Vec<u64>, Vec<String>) {
    let mut client = connect(addr).await;
    let (mut versions, mut failures) = (vec![], vec![]);
    while !stop.load(Ordering::Relaxed) {
        match infer_version(&mut client, one_image(&pixels)).await {
            Ok(v) => {
                latest.store(v, Ordering::Relaxed);
                versions.push(v);
            }
            Err(e) => failures.push(e),
        }
    }
    (versions, failures)
}

#[test]
fn five_promotions_under_grpc_load_fail_no_call() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let source = t.state.join("best");
    champion_copy(&source, &state.join("best"), 1);
    let srv = Serve::start(
        &state,
        &tmp.path().join("serve.log"),
        &["--grpc-addr", "127.0.0.1:0"],
    );
    let addr = grpc_addr_of(&srv.log);
    let (pixels, _, _) = test_images(&t.data);
    let rt = runtime();
    rt.block_on(async { wait_ready(&mut connect(addr).await).await });
    let stop = Arc::new(AtomicBool::new(false));
    let latest = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            rt.spawn(keep_calling(
                addr,
                pixels.clone(),
                latest.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for v in 1..=6u64 {
        if v > 1 {
            let staged = tmp.path().join(format!("staged-{v}"));
            champion_copy(&source, &staged, v);
            promote_dir(&state, &staged);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while latest.load(Ordering::Relaxed) != v {
            assert!(
                Instant::now() < deadline,
                "version {v} never served over gRPC"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let (versions, failures) = rt.block_on(c).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        assert!(!versions.is_empty() && versions.iter().all(|v| (1..=6).contains(v)));
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "versions went back"
        );
    }
}

/// A raw HTTP/2 connection, for what a well-behaved client never sends.
async fn raw_h2(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

fn infer_head(addr: SocketAddr) -> http::Request<()> {
    http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ModelInfer"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap()
}

async fn alive_and_answering(addr: SocketAddr, pixels: &[u8]) {
    let mut client = connect(addr).await;
    let live = client.server_live(ServerLiveRequest {}).await.unwrap();
    assert!(live.into_inner().live);
    infer_version(&mut client, one_image(pixels)).await.unwrap();
}

/// `trainerd serve --grpc-addr` on the shared champion: its temp dir, the
/// server, its gRPC address, and test images' pixels.
fn grpc_server() -> (tempfile::TempDir, Serve, SocketAddr, Vec<u8>) {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let srv = Serve::ready(
        &t.state,
        &tmp.path().join("serve.log"),
        &["--grpc-addr", "127.0.0.1:0"],
    );
    let addr = grpc_addr_of(&srv.log);
    let (pixels, _, _) = test_images(&t.data);
    (tmp, srv, addr, pixels)
}

#[test]
fn hostile_grpc_clients_leave_it_answering() {
    let (_tmp, _srv, addr, pixels) = grpc_server();
    runtime().block_on(async {
        // A message declaring 1 GiB: refused from its length prefix alone.
        let mut h2c = raw_h2(addr).await;
        let (resp, mut body) = h2c.send_request(infer_head(addr), false).unwrap();
        let mut frame = vec![0u8, 0x40, 0, 0, 0];
        frame.extend([7u8; 1024]);
        body.send_data(frame.into(), false).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), resp)
            .await
            .expect("no answer to a 1 GiB declaration")
            .unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).expect("trailers-only status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("limit"), "{status:?}");

        // 100 streams opened and never finished, 50 silent sockets, garbage.
        let mut open = raw_h2(addr).await;
        let mut held = vec![];
        for _ in 0..100 {
            let (r, mut b) = open.send_request(infer_head(addr), false).unwrap();
            b.send_data(vec![0u8, 0, 0, 1, 0].into(), false).unwrap();
            held.push((r, b));
        }
        let silent: Vec<_> = (0..50)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        {
            use std::io::Write;
            let mut junk = std::net::TcpStream::connect(addr).unwrap();
            junk.write_all(b"GET / HTTP/1.1\r\n\r\n not http/2 at all")
                .unwrap();
        }
        alive_and_answering(addr, &pixels).await;
        drop((held, silent, open));
        alive_and_answering(addr, &pixels).await;
    });
}

#[test]
fn messages_arriving_at_once_stay_within_the_byte_budget() {
    let (_tmp, srv, addr, pixels) = grpc_server();
    let rt = runtime();
    rt.block_on(alive_and_answering(addr, &pixels));
    let before = srv.rss_mib();
    // 48 calls each declaring a 12 MiB message (under the 16 MiB cap) and
    // sending all of it but its last byte: 576 MiB offered at once, while
    // the budget (256 MiB, shared with REST) lets about 21 be read.
    const MESSAGE: usize = 12 << 20;
    let peak = rt.block_on(async {
        let (mut held, mut conns) = (vec![], vec![]);
        for _ in 0..3 {
            let mut conn = raw_h2(addr).await;
            for _ in 0..16 {
                let (r, mut b) = conn.send_request(infer_head(addr), false).unwrap();
                let mut msg = vec![0u8];
                msg.extend((MESSAGE as u32).to_be_bytes());
                msg.resize(5 + MESSAGE - 1, 1);
                b.send_data(msg.into(), false).unwrap();
                held.push((r, b));
            }
            conns.push(conn);
        }
        // Long enough for every byte the server accepts to arrive.
        let mut peak = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(srv.rss_mib());
        }
        drop((held, conns));
        peak
    });
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 400,
        "the server grew by {grew} MiB ({before} -> {peak}) with 576 MiB of messages arriving"
    );
    rt.block_on(alive_and_answering(addr, &pixels));
}

#[test]
fn the_daemon_serves_grpc_alone() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut args = one_quick_trial("run", s(&t.data), s(&state), "linear");
    args.extend(["--grpc-addr", "127.0.0.1:0"]);
    let log = tmp.path().join("run.log");
    let mut child = common::spawn_logged(&mut common::trainerd(&args), &log);
    let addr = grpc_addr_of(&log);
    let (pixels, _, _) = test_images(&t.data);
    let served = runtime().block_on(async {
        let mut client = connect(addr).await;
        wait_ready(&mut client).await;
        infer_version(&mut client, one_image(&pixels)).await
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(served, Ok(1), "{}", read_log(&log));
    assert!(
        !read_log(&log).contains("serving /v2"),
        "REST was not asked for"
    );
}

//! Kept versions served on request: `/v2/models/trainerd/versions/N/...`
//! and gRPC's `model_version` answer with version N from `versions/N/`
//! (loaded on first use into a cache of two, verified first), the champion
//! stays the default, and a version that never existed, is not a number or
//! is damaged gets a clear 404 / 503 while the server keeps answering.

mod common;

use common::serve::*;
use std::path::Path;

use trainerd::serve::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;

fn keep(source: &Path, state: &Path, n: u64) {
    champion_copy(source, &state.join(format!("versions/{n}")), n);
}

fn infer_on(addr: std::net::SocketAddr, version: u64, body: &[u8]) -> (u16, String) {
    let path = format!("/v2/models/trainerd/versions/{version}/infer");
    call(addr, "POST", &path, body)
}

fn loads_of(log: &Path, n: u64) -> usize {
    read_log(log)
        .lines()
        .filter(|l| l.contains("serving kept version on request"))
        .filter(|l| json(l)["version"].as_u64() == Some(n))
        .count()
}

#[test]
fn kept_versions_answer_by_number() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let source = t.state.join("best");
    for n in [1, 2, 4, 5, 6] {
        keep(&source, &state, n);
    }
    champion_copy(&source, &state.join("best"), 5);
    let weights = state.join("versions/6/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let log = tmp.path().join("serve.log");
    let srv = Serve::ready(&state, &log, &["--grpc-addr", "127.0.0.1:0"]);
    let (pixels, _, _) = test_images(&t.data);
    let body = infer_body(&pixels[..784 * 4], 4, "UINT8", true);

    let (status, champion) = call(srv.addr, "POST", "/v2/models/trainerd/infer", &body);
    assert_eq!(status, 200, "{champion}");
    let (want, v) = labels_of(&champion);
    assert_eq!(v, 5);
    for n in [1, 2, 5] {
        let (status, resp) = infer_on(srv.addr, n, &body);
        assert_eq!(status, 200, "version {n}: {resp}");
        assert_eq!(labels_of(&resp), (want.clone(), n), "version {n}");
    }
    let (status, meta) = call(srv.addr, "GET", "/v2/models/trainerd/versions/2", b"");
    assert_eq!(
        (status, json(&meta)["versions"][0].as_str()),
        (200, Some("2")),
        "{meta}"
    );
    let (status, ready) = call(srv.addr, "GET", "/v2/models/trainerd/versions/1/ready", b"");
    assert_eq!(status, 200, "{ready}");

    // Used last: 1 (ready), then 2 before it. A third kept version evicts
    // the least recently used (2); 1 is still loaded, 2 loads again.
    assert_eq!(infer_on(srv.addr, 4, &body).0, 200);
    assert_eq!(infer_on(srv.addr, 1, &body).0, 200);
    assert_eq!(infer_on(srv.addr, 2, &body).0, 200);
    assert_eq!(
        (loads_of(&log, 1), loads_of(&log, 2)),
        (1, 2),
        "{}",
        read_log(&log)
    );

    for (version, code, says) in [
        ("9", 404, "never existed"),
        ("abc", 404, "no version"),
        ("6", 503, "model.safetensors"),
    ] {
        let path = format!("/v2/models/trainerd/versions/{version}/infer");
        let (status, resp) = call(srv.addr, "POST", &path, &body);
        assert_eq!(status, code, "version {version}: {resp}");
        assert!(resp.contains(says), "version {version}: {resp}");
    }
    assert_eq!(call(srv.addr, "GET", "/v2/health/live", b"").0, 200);

    // gRPC: the same versions through model_version.
    let grpc = grpc_addr_of(&srv.log);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answered = rt.block_on(async {
        let mut c = GrpcInferenceServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        let mut out = vec![];
        for version in ["1", "", "9"] {
            let mut req = one_image(&pixels);
            req.model_version = version.into();
            out.push(match c.model_infer(req).await {
                Ok(r) => r.into_inner().model_version,
                Err(s) => format!("{:?}", s.code()),
            });
        }
        out
    });
    assert_eq!(answered, ["1", "5", "NotFound"]);
}

//! `trainerd serve`, the real binary on a champion trained on generated
//! data: the Open Inference Protocol's health, metadata and inference
//! routes; labels equal `trainerd predict`'s; bad requests answered with a
//! 400 / 404 / 413 and a JSON error; readiness follows the champion; the
//! real `tritonclient[http]` (tests/interop/check_triton.py) agrees;
//! `serve --probe` answers for container health checks.

mod common;

use common::serve::*;
use std::path::Path;
use std::process::Command;

#[test]
fn health_metadata_and_inference_agree_with_predict() {
    let t = trained();
    let srv = Serve::ready(&t.state, &t.root.join("serve-api.log"), &[]);
    let a = srv.addr;
    assert_eq!(call(a, "GET", "/v2/health/live", b"").0, 200);
    assert_eq!(call(a, "GET", "/v2/health/ready", b"").0, 200);
    let (status, body) = call(a, "GET", "/v2", b"");
    assert_eq!(
        (status, json(&body)["name"].as_str()),
        (200, Some("trainerd"))
    );
    let (status, body) = call(a, "GET", "/v2/models/trainerd", b"");
    assert_eq!(status, 200, "{body}");
    let meta = json(&body);
    assert_eq!(meta["inputs"][0]["name"], "pixels");
    assert_eq!(
        meta["inputs"][0]["shape"],
        serde_json::json!([-1, 1, 28, 28])
    );
    assert_eq!(meta["outputs"][0]["shape"], serde_json::json!([-1, 10]));
    assert_eq!(meta["versions"], serde_json::json!(["1"]));
    let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(
        meta["parameters"]["class_names"],
        serde_json::to_string(&names).unwrap(),
        "the card's class names, as a JSON string parameter"
    );
    assert_eq!(call(a, "GET", "/v2/models/trainerd/ready", b"").0, 200);

    let (pixels, n, idx) = test_images(&t.data);
    let want = predict_labels(&t.state, &idx);
    assert_eq!(want.len(), n);
    let mut client = Client::connect(a);
    for (datatype, flat) in [
        ("FP32", false),
        ("FP32", true),
        ("UINT8", false),
        ("UINT8", true),
    ] {
        let body = infer_body(&pixels, n, datatype, flat);
        let (status, resp) = client
            .call("POST", "/v2/models/trainerd/infer", &body)
            .unwrap();
        assert_eq!(status, 200, "{datatype} flat={flat}: {resp}");
        let (labels, version) = labels_of(&resp);
        assert_eq!(
            (labels, version),
            (want.clone(), 1),
            "{datatype} flat={flat}"
        );
        let v = json(&resp);
        assert_eq!(v["id"], "t");
        assert_eq!(v["outputs"][0]["name"], "logits");
        assert_eq!(v["outputs"][0]["shape"], serde_json::json!([n, 10]));
    }
    // Single images, one request each, on one kept-alive connection.
    for i in 0..20 {
        let body = infer_body(&pixels[i * 784..(i + 1) * 784], 1, "UINT8", true);
        let (status, resp) = client
            .call("POST", "/v2/models/trainerd/versions/1/infer", &body)
            .unwrap();
        assert_eq!(status, 200, "{resp}");
        assert_eq!(labels_of(&resp).0, vec![want[i]]);
    }
    let probs = serde_json::json!({
        "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": vec![0.0; 784]}],
        "outputs": [{"name": "probabilities"}],
    });
    let (status, resp) = call(
        a,
        "POST",
        "/v2/models/trainerd/infer",
        probs.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{resp}");
    let p = &json(&resp)["outputs"][0];
    assert_eq!(p["name"], "probabilities");
    let sum: f64 = p["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");

    let (status, metrics) = call(a, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    for want in [
        "trainerd_serve_requests_total{code=\"200\"}",
        "trainerd_serve_model_version 1",
        "trainerd_serve_batch_images_bucket",
        "trainerd_serve_request_duration_seconds_count",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
}

#[test]
fn bad_requests_are_answered_with_what_was_expected() {
    let t = trained();
    let srv = Serve::ready(&t.state, &t.root.join("serve-bad.log"), &[]);
    let a = srv.addr;
    let tensor = |name: &str, shape: serde_json::Value, datatype: &str, len: usize| {
        serde_json::json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": vec![0; len]}]})
            .to_string()
    };
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"inputs\": [".into(), 400, "not an inference request"),
        ("not json at all".into(), 400, "not an inference request"),
        (
            tensor("pixels", serde_json::json!([1, 28, 28]), "FP32", 784),
            400,
            "[N, 1, 28, 28] or [N, 784]",
        ),
        (
            tensor("pixels", serde_json::json!([1, 3, 28, 28]), "FP32", 2352),
            400,
            "shape",
        ),
        (
            tensor("pixels", serde_json::json!([2, 784]), "FP32", 784),
            400,
            "needs 1568 values",
        ),
        (
            tensor("pixels", serde_json::json!([1, 784]), "INT32", 784),
            400,
            "datatype",
        ),
        (
            tensor("image", serde_json::json!([1, 784]), "FP32", 784),
            400,
            "unknown input \"image\"",
        ),
    ];
    let mut client = Client::connect(a);
    for (body, code, want) in &cases {
        let (status, resp) = client
            .call("POST", "/v2/models/trainerd/infer", body.as_bytes())
            .unwrap();
        assert_eq!(status, *code, "{body:.80}: {resp}");
        let err = json(&resp)["error"].as_str().unwrap().to_string();
        assert!(err.contains(want), "{body:.80}: {err}");
    }
    let ok = tensor("pixels", serde_json::json!([1, 784]), "FP32", 784);
    for path in [
        "/v2/models/mnist/infer",
        "/v2/models/trainerd/versions/7/infer",
    ] {
        let (status, resp) = call(a, "POST", path, ok.as_bytes());
        assert_eq!(status, 404, "{path}: {resp}");
        assert!(json(&resp)["error"].as_str().is_some(), "{resp}");
    }
    assert_eq!(call(a, "GET", "/v2/models/mnist", b"").0, 404);
    assert_eq!(call(a, "GET", "/v2/models/mnist/ready", b"").0, 404);
    // Over the body cap (16 MiB): 413 before the body is sent, and the server goes on.
    let mut raw = std::net::TcpStream::connect(a).unwrap();
    let head = format!(
        "POST /v2/models/trainerd/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        17 << 20
    );
    std::io::Write::write_all(&mut raw, head.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("larger than"), "{resp}");
    assert_eq!(
        call(a, "POST", "/v2/models/trainerd/infer", ok.as_bytes()).0,
        200
    );
}

#[test]
fn ready_only_once_a_champion_appears() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Polling (as on network filesystems): the inotify path is tests/serve_swap.rs's.
    let srv = Serve::start(&state, &tmp.path().join("serve.log"), &["--watch-poll"]);
    let a = srv.addr;
    let probe = || {
        let out = run(&["serve", "--probe", "--addr", &a.to_string()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = probe();
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("not ready"), "{said}");
    assert_eq!(call(a, "GET", "/v2/health/live", b"").0, 200);
    let (status, resp) = call(a, "GET", "/v2/health/ready", b"");
    assert_eq!(status, 503, "{resp}");
    assert_eq!(call(a, "GET", "/v2/models/trainerd/ready", b"").0, 503);
    let ok = infer_body(&[0; 784], 1, "UINT8", true);
    assert_eq!(call(a, "POST", "/v2/models/trainerd/infer", &ok).0, 503);
    // A damaged champion is not loaded: still not ready.
    let staged = state.join("best.staging");
    copy_dir(&t.state.join("best"), &staged);
    let weights = staged.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    promote_dir(&state, &staged);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !read_log(&srv.log).contains("cannot load the champion") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            read_log(&srv.log)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(call(a, "GET", "/v2/health/ready", b"").0, 503);
    // A good one is.
    let staged = state.join("best.staging");
    copy_dir(&t.state.join("best"), &staged);
    promote_dir(&state, &staged);
    wait_ready(a);
    assert_eq!(probe().0, Some(0));
    let (status, resp) = call(a, "POST", "/v2/models/trainerd/infer", &ok);
    assert_eq!(status, 200, "{resp}");
    assert!(!state.join("serve.lock").exists() && !state.join("trainerd.lock").exists());
}

fn python() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

#[test]
fn tritonclient_talks_to_it() {
    let t = trained();
    let srv = Serve::ready(&t.state, &t.root.join("serve-triton.log"), &[]);
    let (_, n, idx) = test_images(&t.data);
    let want = predict_labels(&t.state, &idx);
    let labels = t.root.join("predict-labels.json");
    std::fs::write(&labels, serde_json::to_vec(&want).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_triton.py");
    let check = Command::new(python())
        .arg(&script)
        .arg(srv.addr.to_string())
        .arg(&idx)
        .arg(&labels)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", python().display()));
    assert!(
        check.status.success(),
        "tritonclient check failed (scripts/setup-interop.sh installs tritonclient[http]):\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains(&format!("{n} images agree")), "{out}");
}

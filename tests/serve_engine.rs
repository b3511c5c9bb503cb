//! `trainerd serve`'s engines, the real binary on a conv + batch-norm
//! champion (`bn3`) trained on generated data: onnxruntime (on the verified
//! `best/model.onnx`) gives `trainerd predict`'s labels and, within 1e-4,
//! its logits, for FP32 and UINT8 requests, as does `--engine libtorch`; the
//! model metadata and the log say which engine serves; a library that is
//! missing or not onnxruntime falls back to libtorch under `auto` (with a
//! warning naming it) and exits 78 under `--engine onnxruntime`.

mod common;

use common::serve::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Bn3 {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    state: PathBuf,
}

/// A `bn3` champion, trained once for this binary.
fn bn3() -> &'static Bn3 {
    static T: OnceLock<Bn3> = OnceLock::new();
    T.get_or_init(|| {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = tmp.path().to_path_buf();
        let (data, state) = (root.join("data"), root.join("state"));
        synth_data(&data, 300, 40);
        let out = run(&one_quick_trial("train", s(&data), s(&state), "bn3"));
        assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));
        Bn3 {
            _tmp: tmp,
            root,
            data,
            state,
        }
    })
}

/// `trainerd predict --json --logits`: each image's label and logits.
fn predicted(state: &Path, images: &Path) -> (Vec<i64>, Vec<Vec<f64>>) {
    let out = run(&[
        "predict",
        "--state-dir",
        s(state),
        "--json",
        "--logits",
        s(images),
    ]);
    assert_eq!(out.status.code(), Some(0), "predict: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v = json(l);
            let logits = v["logits"].as_array().unwrap();
            let logits = logits.iter().map(|x| x.as_f64().unwrap()).collect();
            (v["label"].as_i64().unwrap(), logits)
        })
        .unzip()
}

/// The response's logits, one row per image.
fn logits_of(body: &str, classes: usize) -> Vec<Vec<f64>> {
    let v = json(body);
    let out = v["outputs"].as_array().unwrap();
    let logits = out.iter().find(|o| o["name"] == "logits").expect("logits");
    let flat: Vec<f64> = logits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    flat.chunks(classes).map(<[f64]>::to_vec).collect()
}

/// The server's engine, as its model metadata names it.
fn platform(srv: &Serve) -> String {
    let (status, body) = call(srv.addr, "GET", "/v2/models/trainerd", b"");
    assert_eq!(status, 200, "{body}");
    json(&body)["platform"].as_str().unwrap().to_string()
}

/// Every request type gives predict's labels and logits.
fn agrees_with_predict(srv: &Serve, t: &Bn3) {
    let (pixels, n, idx) = test_images(&t.data);
    let (labels, logits) = predicted(&t.state, &idx);
    assert_eq!(labels.len(), n);
    let mut client = Client::connect(srv.addr);
    for datatype in ["FP32", "UINT8"] {
        let body = infer_body(&pixels, n, datatype, false);
        let (status, resp) = client
            .call("POST", "/v2/models/trainerd/infer", &body)
            .unwrap();
        assert_eq!(status, 200, "{datatype}: {resp}");
        assert_eq!(labels_of(&resp).0, labels, "{datatype}: labels");
        let got = logits_of(&resp, 10);
        assert_eq!(got.len(), n);
        for (i, (g, w)) in got.iter().zip(&logits).enumerate() {
            let worst = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-4,
                "{datatype} image {i}: {g:?} vs predict's {w:?}"
            );
        }
    }
}

/// The JSON log's "serving champion" line names `engine`.
fn logged_engine(log: &Path, engine: &str) -> bool {
    read_log(log).lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["message"] == "serving champion" && v["engine"] == engine
    })
}

#[test]
fn onnxruntime_and_libtorch_both_agree_with_predict() {
    let t = bn3();
    let log = t.root.join("serve-ort.log");
    let srv = Serve::ready(&t.state, &log, &["--engine", "onnxruntime"]);
    assert_eq!(platform(&srv), "onnxruntime_onnx");
    assert!(
        logged_engine(&log, "onnxruntime_onnx"),
        "{}",
        read_log(&log)
    );
    agrees_with_predict(&srv, t);
    drop(srv);

    // The default (auto) loads the library setup.sh recorded at build time.
    let srv = Serve::ready(&t.state, &t.root.join("serve-auto.log"), &[]);
    assert_eq!(platform(&srv), "onnxruntime_onnx");
    drop(srv);

    let log = t.root.join("serve-torch.log");
    let srv = Serve::ready(&t.state, &log, &["--engine", "libtorch"]);
    assert_eq!(platform(&srv), "trainerd_libtorch");
    assert!(
        logged_engine(&log, "trainerd_libtorch"),
        "{}",
        read_log(&log)
    );
    agrees_with_predict(&srv, t);
}

#[test]
fn a_library_that_is_missing_or_not_onnxruntime_falls_back_or_exits_78() {
    let t = bn3();
    let garbage = t.root.join("libonnxruntime.so.garbage");
    std::fs::write(&garbage, b"not a shared library\n").unwrap();
    let missing = t.root.join("nowhere/libonnxruntime.so.1");
    for (name, lib) in [("missing", &missing), ("garbage", &garbage)] {
        let log = t.root.join(format!("serve-{name}.log"));
        let args = ["serve", "--state-dir", s(&t.state), "--addr", "127.0.0.1:0"];
        let mut cmd = trainerd(&args);
        cmd.env("TRAINERD_ONNXRUNTIME", lib);
        let srv = Serve::spawn_command(&mut cmd, &log);
        wait_ready(srv.addr);
        assert_eq!(platform(&srv), "trainerd_libtorch", "{name}");
        let text = read_log(&log);
        let warned = text.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("serving with libtorch") && m.contains(s(lib)))
        });
        assert!(
            warned,
            "{name}: no warning naming {}: {text}",
            lib.display()
        );
        drop(srv);

        let mut cmd = trainerd(&["serve", "--state-dir", s(&t.state), "--addr", "127.0.0.1:0"]);
        let out = cmd
            .env("TRAINERD_ONNXRUNTIME", lib)
            .env("TRAINERD_ENGINE", "onnxruntime")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{name}: {err}");
        // Besides the JSON log line, one line for the person at the terminal.
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("trainerd:")).collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {err}");
        assert!(
            lines[0].contains("engine") && lines[0].contains(s(lib)),
            "{name}: {err}"
        );
    }
}

#[test]
fn an_unknown_engine_is_a_config_error() {
    let t = bn3();
    let out = run(&["serve", "--state-dir", s(&t.state), "--engine", "tensorrt"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("engine"), "{}", stderr(&out));
}

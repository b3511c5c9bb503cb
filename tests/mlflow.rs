//! MLflow on the real binary: a real `mlflow server` (SQLite backend, local
//! artifact root, from the venv that scripts/setup-interop.sh fills) is down
//! while a study trains (training unaffected, the queue kept), comes up and
//! a later start drains the queue; MLflow's own client reads back every run
//! (tags, params, metrics per epoch), the model versions, the alias
//! `champion` and each promotion's artifacts (from the version it kept,
//! `best.previous/` having moved on) and `trainerd.version` tag; a lost `sent.jsonl` (a crash between
//! sending and recording) logs nothing twice; rollback moves the alias
//! back. Stub servers answer 500 or never answer: retries logged, training
//! unaffected. Credentials in the URL never reach a log line.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{free_port, s, stderr, synth_data, trainerd, venv_python};
use serde_json::Value;

const SECRET: &str = "s3cr3t-pw";

/// A real MLflow server; killed (its whole process group) on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        use std::os::unix::process::CommandExt as _;
        let mlflow = venv_python().with_file_name("mlflow");
        let log = std::fs::File::create(dir.join("mlflow-server.log")).unwrap();
        let child = Command::new(&mlflow)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", mlflow.display()));
        let mut server = Server { child, port };
        server.wait_healthy(dir);
        server
    }

    fn wait_healthy(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut text = String::new();
                let _ = c.read_to_string(&mut text);
                if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            let log = || std::fs::read_to_string(dir.join("mlflow-server.log")).unwrap_or_default();
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("mlflow server exited {st}: {}", log());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server never healthy: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `trainerd train`: a weak first trial then `mlp:2`, so two promotions.
fn train(data: &Path, state: &Path, uri: &str) -> Output {
    let mut cmd = trainerd(&[
        "train",
        "--data-dir",
        s(data),
        "--state-dir",
        s(state),
        "--val-size",
        "300",
        "--epochs",
        "1",
        "--preset",
        "linear",
        "--lr",
        "0.00001",
        "--ladder",
        "linear,mlp:2",
        "--target-accuracy",
        "0.85",
        "--max-trials",
        "3",
        "--mlflow-uri",
        uri,
    ]);
    cmd.env("TRAINERD_MLFLOW_BACKOFF_MS", "50");
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

/// What MLflow's client reads back (tests/interop/check_mlflow.py).
fn read_back(port: u16) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_mlflow.py");
    let out = Command::new(venv_python())
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("trainerd")
        .output()
        .unwrap();
    assert!(out.status.success(), "check_mlflow.py: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn events(state: &Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_kind<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["kind"] == kind).collect()
}

fn assert_redacted(log: &str) {
    assert!(!log.contains(SECRET), "the password reached the log: {log}");
    assert!(log.contains("***@127.0.0.1"), "{log}");
}

/// Each trial is one run with its tags, its spec as params, and its
/// epochs' metrics at steps 1..; each promotion one version, the alias on
/// the champion's, its files among the artifacts.
fn check_against_state(got: &Value, state: &Path) {
    let evs = events(state);
    let started = of_kind(&evs, "trial_started");
    let runs = got["runs"].as_array().unwrap();
    assert_eq!(runs.len(), started.len(), "{got}");
    let by_trial: BTreeMap<u64, &Value> = runs
        .iter()
        .map(|r| {
            (
                r["tags"]["trainerd.trial"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                r,
            )
        })
        .collect();
    assert_eq!(by_trial.len(), runs.len(), "one run per trial: {got}");
    for ev in &started {
        let trial = ev["trial"].as_u64().unwrap();
        let run = by_trial[&trial];
        assert_eq!(run["tags"]["trainerd.study"], ev["study"]);
        let rung = ev["data"]["rung"]
            .as_u64()
            .map_or("none".to_string(), |r| r.to_string());
        assert_eq!(run["tags"]["trainerd.rung"], rung.as_str());
        assert!(
            run["tags"].get("trainerd.commit").is_none(),
            "no checkout, no commit"
        );
        let spec = &ev["data"]["spec"];
        assert_eq!(run["params"]["preset"], spec["preset"]);
        assert_eq!(
            run["params"]["recipe.epochs"],
            spec["recipe"]["epochs"].to_string().as_str()
        );
        assert_eq!(run["status"], "FINISHED");
    }
    for ev in of_kind(&evs, "trial_finished") {
        let run = by_trial[&ev["trial"].as_u64().unwrap()];
        let history = ev["data"]["history"].as_array().unwrap();
        let want: Vec<Value> = history
            .iter()
            .map(|h| serde_json::json!([h["epoch"], h["val_accuracy"]]))
            .collect();
        assert_eq!(
            run["metrics"]["val_accuracy"].as_array().unwrap(),
            &want,
            "{run}"
        );
        assert!(
            run["metrics"].get("test_accuracy").is_none(),
            "runs carry no test accuracy (trials are not measured on the test split): {run}"
        );
    }
    let promoted = of_kind(&evs, "new_best");
    let versions = got["versions"].as_array().unwrap();
    assert_eq!(versions.len(), promoted.len(), "{got}");
    let card: Value =
        serde_json::from_slice(&std::fs::read(state.join("best/model.json")).unwrap()).unwrap();
    let champion_run = by_trial[&card["trial"].as_u64().unwrap()];
    assert_eq!(got["champion"]["run_id"], champion_run["run_id"], "{got}");
    assert_eq!(
        got["champion"]["tags"]["trainerd.version"],
        card["version"].to_string().as_str(),
        "the champion's model version names best/'s kept version: {got}"
    );
    assert_artifacts(champion_run, &card);
    // Every promotion's files, as the version it kept holds them (best/ and
    // best.previous/ may have moved on before the upload).
    let mut kept = 0;
    for entry in std::fs::read_dir(state.join("versions")).unwrap() {
        let dir = entry.unwrap().path();
        let card: Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let run = by_trial[&card["trial"].as_u64().unwrap()];
        assert_artifacts(run, &card);
        // Its model version names it: `trainerd rollback --to N` serves it again.
        let n = dir.file_name().unwrap().to_str().unwrap();
        let version = versions
            .iter()
            .find(|v| v["run_id"] == run["run_id"])
            .unwrap_or_else(|| panic!("no model version of {n}'s run: {got}"));
        assert_eq!(version["tags"]["trainerd.version"], n, "{version}");
        kept += 1;
    }
    assert_eq!(kept, promoted.len(), "a version kept per promotion");
}

/// `run`'s `champion/` artifacts hold `card` and every file it lists, at its size.
fn assert_artifacts(run: &Value, card: &Value) {
    let artifacts = run["artifacts"].as_array().unwrap();
    let uploaded: Vec<&str> = artifacts
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert!(uploaded.contains(&"champion/model.json"), "{uploaded:?}");
    for f in card["files"].as_array().unwrap() {
        let path = format!("champion/{}", f["path"].as_str().unwrap());
        let size = artifacts.iter().find(|a| a["path"] == path.as_str());
        assert_eq!(
            size.map(|a| &a["size"]),
            Some(&f["bytes"]),
            "{path} in {uploaded:?}"
        );
    }
}

#[test]
fn mlflow_sees_every_trial_and_promotion_after_an_outage_once_and_rollback_moves_the_alias() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("data"), tmp.path().join("state"));
    synth_data(&data, 1500, 300);
    let port = free_port();
    let uri = format!("http://alice:{SECRET}@127.0.0.1:{port}");

    // Nothing listens yet: training finishes as without MLflow, the queue is kept.
    let out = train(&data, &state, &uri);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("MLflow call failed") && log.contains("retrying in"),
        "{log}"
    );
    assert!(log.contains("still queued"), "{log}");
    assert_redacted(&log);
    assert!(state.join("best/model.json").is_file());
    let queued = std::fs::read_to_string(state.join("mlflow/queue.jsonl")).unwrap();
    assert!(queued.lines().count() >= 5, "{queued}");
    let sent = std::fs::read_to_string(state.join("mlflow/sent.jsonl")).unwrap_or_default();
    assert!(!sent.contains("\"sent\""), "{sent}");

    // The server comes up; the next start (the study is done) drains the
    // queue. Meanwhile the first champion has left best.previous/ (as more
    // promotions would make it): its artifacts come from versions/1/.
    let _server = Server::start(tmp.path(), port);
    let aside = tmp.path().join("best.previous.aside");
    std::fs::rename(state.join("best.previous"), &aside).expect("two promotions");
    let out = train(&data, &state, &uri);
    std::fs::rename(&aside, state.join("best.previous")).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_redacted(&stderr(&out));
    let first = read_back(port);
    check_against_state(&first, &state);
    assert!(
        first["versions"].as_array().unwrap().len() >= 2,
        "two promotions: {first}"
    );

    // Sent but never recorded (a crash in between): sent again, nothing doubles.
    std::fs::remove_file(state.join("mlflow/sent.jsonl")).unwrap();
    let out = train(&data, &state, &uri);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = read_back(port);
    assert_eq!(again, first, "a replay changed what MLflow holds");

    // Rollback moves the alias back to the previous champion's version.
    let out = trainerd(&["rollback", "--state-dir", s(&state)])
        .env("TRAINERD_MLFLOW_URI", &uri)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains(SECRET), "{}", stderr(&out));
    let back = read_back(port);
    check_against_state(&back, &state);
    assert_ne!(back["champion"], first["champion"], "{back}");
}

/// A stub that answers every request `status` (or never, with `None`),
/// recording each request's head.
fn stub(answer: Option<u16>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(head);
            match answer {
                Some(code) => {
                    let mut c = conn;
                    let _ = write!(
                        c,
                        "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
                None => held.push(conn),
            }
        }
    });
    (port, seen)
}

fn quick_train(answer: Option<u16>) -> (Output, Vec<String>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("data"), tmp.path().join("state"));
    synth_data(&data, 600, 100);
    let (port, seen) = stub(answer);
    let uri = format!("http://alice:{SECRET}@127.0.0.1:{port}/prefix/");
    let mut args = common::one_quick_trial("train", s(&data), s(&state), "linear");
    args.extend(["--mlflow-uri", &uri]);
    let out = trainerd(&args)
        .env("TRAINERD_MLFLOW_BACKOFF_MS", "20")
        .env("TRAINERD_MLFLOW_TIMEOUT_MS", "300")
        .output()
        .unwrap();
    assert!(state.join("best/model.json").is_file(), "{}", stderr(&out));
    let sent = std::fs::read_to_string(state.join("mlflow/sent.jsonl")).unwrap_or_default();
    assert!(!sent.contains("\"sent\""), "{sent}");
    let heads = seen.lock().unwrap().clone();
    (out, heads, tmp)
}

#[test]
fn a_server_answering_500_is_retried_with_basic_auth_and_training_is_unaffected() {
    let (out, heads, _tmp) = quick_train(Some(500));
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("HTTP 500") && log.contains("retrying in"),
        "{log}"
    );
    assert_redacted(&log);
    assert!(heads.len() >= 2, "retried: {heads:?}");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{SECRET}"));
    for h in &heads {
        assert!(
            h.starts_with(
                "GET /prefix/api/2.0/mlflow/experiments/get-by-name?experiment_name=trainerd "
            ),
            "{h}"
        );
        assert!(
            h.contains(&format!("authorization: Basic {auth}"))
                || h.contains(&format!("Authorization: Basic {auth}")),
            "{h}"
        );
    }
}

#[test]
fn a_server_that_never_answers_times_out_and_training_is_unaffected() {
    let (out, heads, _tmp) = quick_train(None);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    // (Whether a retry fits in depends on how long training takes; the 500 test covers retries.)
    assert!(
        log.contains("MLflow call failed") && log.contains("still queued"),
        "{log}"
    );
    assert!(
        log.to_lowercase().contains("timeout") || log.to_lowercase().contains("timed out"),
        "{log}"
    );
    assert_redacted(&log);
    assert!(!heads.is_empty());
}

#[test]
fn a_bad_mlflow_uri_or_model_is_refused_naming_the_key_without_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    for (key, value) in [
        ("--mlflow-uri", format!("ftp://alice:{SECRET}@127.0.0.1:1")),
        ("--mlflow-uri", format!("http://alice:{SECRET}@/path")),
        (
            "--mlflow-uri",
            format!("http://alice:{SECRET}@host:5000/?token=x"),
        ),
        ("--mlflow-model", "bad\nname".to_string()),
    ] {
        let out = trainerd(&[
            "train",
            "--data-dir",
            s(&tmp.path().join("none")),
            "--state-dir",
            s(&state),
            key,
            &value,
        ])
        .output()
        .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{value}: {err}");
        assert!(err.contains(&key[2..].replace('-', "_")), "{err}");
        assert!(!err.contains(SECRET), "{err}");
    }
    assert!(!state.join("mlflow").exists());
}

//! The job chain through the real binary: escalation to the target, events,
//! promotion and rollback, predict, SIGKILL mid-study, webhooks, bad config,
//! the daemon's idle and stop.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    state: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 1500, 300);
    let state = tmp.path().join("state");
    Setup {
        _tmp: tmp,
        data,
        state,
    }
}

/// `trainerd <command>` on the setup's data and state, checkpointing often,
/// with fast webhook retries and no proxy between it and 127.0.0.1.
fn cmd(s: &Setup, command: &str, extra: &[&str]) -> Command {
    let mut args = vec![
        command,
        "--data-dir",
        s.data.to_str().unwrap(),
        "--state-dir",
        s.state.to_str().unwrap(),
        "--val-size",
        "300",
        "--epochs",
        "1",
        "--checkpoint-every",
        "3",
    ];
    args.extend_from_slice(extra);
    let mut cmd = trainerd(&args);
    cmd.env("TRAINERD_WEBHOOK_BACKOFF_MS", "20");
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(var);
    }
    cmd
}

/// A study whose first trial is deliberately weak (a learning rate too small
/// to learn anything in one epoch), so only escalation reaches the target.
fn weak_start(s: &Setup, extra: &[&str]) -> Command {
    let mut args = vec!["--preset", "linear", "--lr", "0.00001"];
    args.extend_from_slice(extra);
    cmd(s, "train", &args)
}

/// A one-trial study that reaches its (low) target.
fn quick(s: &Setup, command: &str, extra: &[&str]) -> Command {
    let mut args = vec!["--preset", "fast", "--target-accuracy", "0.3"];
    args.extend_from_slice(extra);
    cmd(s, command, &args)
}

/// The numeric cells (parameters, val accuracy, epochs, time) of trial
/// `n`'s row in the report's trial table (no test accuracy: trials are not
/// measured on the test split).
fn report_row(html: &str, n: u64) -> Vec<String> {
    let table = html.split("<th>trial</th>").nth(1).expect("a trial table");
    let body = table.split("<tbody>").nth(1).expect("a trial table body");
    let row = body
        .split("<tr")
        .find(|row| {
            let id = row.split("</span>").nth(1).unwrap_or("");
            id.starts_with(&format!("{n}<")) || id.starts_with(&format!("{n} "))
        })
        .unwrap_or_else(|| panic!("no row for trial {n}"));
    row.split(r#"<td class="num">"#)
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap_or("").to_string())
        .collect()
}

/// Starts `cmd` with its log in a file (a pipe nobody reads could fill up and
/// block the child).
fn spawn_logged(cmd: &mut Command, s: &Setup) -> std::process::Child {
    let log = std::fs::File::create(s.data.with_file_name("spawned.log")).unwrap();
    cmd.stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn events(state: &Path) -> Vec<Value> {
    jsonl(&state.join("events.jsonl"))
}

fn journal(state: &Path) -> Vec<Value> {
    jsonl(&state.join("study/journal.jsonl"))
}

fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

fn has(evs: &[Value], kind: &str, trial: u64) -> bool {
    evs.iter()
        .any(|e| e["kind"] == kind && e["trial"].as_u64() == Some(trial))
}

fn assert_unique_ids(evs: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for e in evs {
        let id = e["id"].as_str().unwrap().to_string();
        assert!(seen.insert(id.clone()), "event {id} emitted twice");
    }
}

fn card(state: &Path, dir: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join(dir).join("model.json")).unwrap())
        .unwrap()
}

fn find_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[test]
fn a_weak_start_escalates_to_the_target_then_rollback_and_predict_work() {
    let s = setup();
    let ladder = [
        "--ladder",
        "linear,mlp:2,fast:2",
        "--target-accuracy",
        "0.85",
    ];
    let out = weak_start(&s, &ladder).output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");

    let evs = events(&s.state);
    let k = kinds(&evs);
    assert_eq!(
        k.first().map(String::as_str),
        Some("study_started"),
        "{k:?}"
    );
    assert_eq!(
        k.last().map(String::as_str),
        Some("target_reached"),
        "{k:?}"
    );
    assert!(
        has(&evs, "trial_finished", 0) && has(&evs, "below_target", 0),
        "{k:?}"
    );
    assert!(has(&evs, "architecture_changed", 1), "{k:?}");
    assert_unique_ids(&evs);
    let best = card(&s.state, "best");
    assert!(best["trial"].as_u64().unwrap() >= 1, "{best}");
    assert!(best["val_accuracy"].as_f64().unwrap() >= 0.85, "{best}");
    let records = journal(&s.state);
    let moves: Vec<&str> = records
        .iter()
        .filter(|r| r["type"] == "trial_started")
        .map(|r| r["move"].as_str().unwrap())
        .collect();
    assert_eq!(moves[..2], ["start", "escalate"], "{moves:?}");
    assert!(log.contains("below_target"), "events are log lines too");

    // The test split is measured once per promoted model and nowhere else:
    // no trial's record or event carries a test accuracy; the champion's
    // card does, with its interval.
    let promotions = evs.iter().filter(|e| e["kind"] == "new_best").count();
    assert!(promotions >= 1, "{k:?}");
    assert_eq!(
        log.matches("test split evaluated").count(),
        promotions,
        "one test evaluation per promotion: {log}"
    );
    for r in &records {
        assert!(r.get("test_accuracy").is_none(), "{r}");
    }
    for e in &evs {
        assert!(e["data"].get("test_accuracy").is_none(), "{e}");
    }
    let test = best["test_accuracy"].as_f64().unwrap();
    let [lo, hi] = [0, 1].map(|i| best["test_interval"][i].as_f64().unwrap());
    assert!(lo <= test && test <= hi && test > 0.5, "{best}");
    assert!(best["test_size"].as_u64().unwrap() > 0, "{best}");

    // The champion's report tells every trial: its row has the trial's own
    // epochs, time and parameters (from the journal), and its curves.
    let html = std::fs::read_to_string(s.state.join("best/report.html")).unwrap();
    let finished: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "trial_finished")
        .collect();
    let champion = best["trial"].as_u64().unwrap();
    for r in finished
        .iter()
        .filter(|r| r["trial"].as_u64() < Some(champion))
    {
        let n = r["trial"].as_u64().unwrap();
        let cells = report_row(&html, n);
        let epochs = r["history"].as_array().unwrap().len();
        assert!(epochs > 0, "{r}");
        assert_eq!(cells.len(), 4, "trial {n}'s cells: {cells:?}");
        assert_eq!(
            cells[2],
            epochs.to_string(),
            "trial {n}'s epochs: {cells:?}"
        );
        assert_ne!(cells[0], "–", "trial {n}'s parameters: {cells:?}");
        assert!(cells[0].parse::<u64>().unwrap() > 0, "{cells:?}");
        let secs = r["train_seconds"].as_f64().unwrap();
        assert_eq!(
            cells[3],
            format!("{secs:.1}s"),
            "trial {n}'s time: {cells:?}"
        );
    }
    let curves = html.matches("<polyline").count();
    assert!(
        curves >= 2 * finished.len(),
        "a validation and a loss curve per trial: {curves} for {} trials",
        finished.len()
    );

    // The same study again: already finished, nothing re-run or re-announced.
    let before = std::fs::read(s.state.join("events.jsonl")).unwrap();
    let again = weak_start(&s, &ladder).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(std::fs::read(s.state.join("events.jsonl")).unwrap(), before);

    // Rollback swaps the champion with the previous one, and back.
    let champion = best["trial"].as_u64();
    let previous = card(&s.state, "best.previous")["trial"].as_u64();
    let state = s.state.to_str().unwrap();
    let out = run(&["rollback", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(card(&s.state, "best")["trial"].as_u64(), previous);
    assert_eq!(card(&s.state, "best.previous")["trial"].as_u64(), champion);
    assert_eq!(
        run(&["rollback", "--state-dir", state]).status.code(),
        Some(0)
    );
    assert_eq!(card(&s.state, "best")["trial"].as_u64(), champion);

    // Predict on the test images: one JSON line each, mostly right.
    let images = find_file(&s.data, "t10k-images");
    let out = run(&[
        "predict",
        "--state-dir",
        state,
        "--json",
        images.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let preds: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let labels = trainerd::data::idx::read_labels(&find_file(&s.data, "t10k-labels")).unwrap();
    assert_eq!(preds.len(), labels.count);
    let right = preds
        .iter()
        .zip(labels.values())
        .filter(|(p, &l)| p["label"].as_u64() == Some(u64::from(l)))
        .count();
    assert!(
        right as f64 >= 0.8 * preds.len() as f64,
        "{right}/{}",
        preds.len()
    );
    for p in &preds {
        let prob = p["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob), "{p}");
    }

    // The same first image as a PNG gets the same label; a wrong size is bad data.
    let idx = trainerd::data::idx::read_images(&images).unwrap();
    let png = s.state.join("first.png");
    write_png(&png, 28, 28, &idx.pixels()[..28 * 28]);
    let out = run(&[
        "predict",
        "--state-dir",
        state,
        "--json",
        png.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["label"], preds[0]["label"]);
    write_png(&png, 10, 10, &[0; 100]);
    let out = run(&["predict", "--state-dir", state, png.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("28x28"), "{}", stderr(&out));
}

fn write_png(path: &Path, w: u32, h: u32, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(pixels)
        .unwrap();
}

/// Trains a linear champion on the setup's data; returns its card.
fn linear_champion(s: &Setup) -> Value {
    let out = cmd(
        s,
        "train",
        &["--preset", "linear", "--target-accuracy", "0.5"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    card(&s.state, "best")
}

#[test]
fn new_data_replaces_the_champion_only_with_a_better_model() {
    let s = setup();
    let first = linear_champion(&s);
    assert!(first["val_accuracy"].as_f64().unwrap() >= 0.5, "{first}");

    // New samples of the same classes: a new study, whose only trial is weak
    // (another architecture, so it does not start from the champion).
    synth::write_synthetic_mnist(&s.data, 1500, 300, 8).unwrap();
    let weak = ["--preset", "mlp", "--lr", "0.00001", "--max-trials", "1"];
    let out = cmd(
        &s,
        "train",
        &[&weak[..], &["--target-accuracy", "0.5"]].concat(),
    )
    .output()
    .unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "below target: {log}");
    let now = card(&s.state, "best");
    assert_eq!(
        (&now["study"], &now["trial"]),
        (&first["study"], &first["trial"]),
        "a weak trial on new data must not replace a better champion: {log}"
    );
    assert!(log.contains("on the new data's validation split"), "{log}");
    assert!(log.contains("champion kept"), "{log}");
    assert!(
        !log.contains("test split evaluated"),
        "a trial that keeps the champion is never measured on the test split: {log}"
    );
    assert_eq!(now["test_accuracy"], first["test_accuracy"], "{now}");
    let studies: Vec<String> = journal(&s.state)
        .iter()
        .filter(|r| r["type"] == "study_started")
        .map(|r| r["study"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        studies.len(),
        2,
        "the new data started a new study: {studies:?}"
    );
}

#[test]
fn a_new_study_of_the_champions_architecture_starts_from_its_weights() {
    let s = setup();
    let champion = linear_champion(&s);
    synth::write_synthetic_mnist(&s.data, 1500, 300, 9).unwrap();
    // A learning rate far too small to learn anything in one epoch: only a
    // warm start from the champion gets the first trial above chance.
    let out = weak_start(&s, &["--max-trials", "1", "--target-accuracy", "0.5"])
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(log.contains("warm start"), "{log}");
    let records = journal(&s.state);
    let study = records
        .iter()
        .rev()
        .find(|r| r["type"] == "study_started")
        .map(|r| r["study"].clone())
        .unwrap();
    assert_ne!(study, champion["study"], "a new study");
    let trial0 = records
        .iter()
        .find(|r| r["study"] == study && r["type"] == "trial_finished" && r["trial"] == 0)
        .unwrap_or_else(|| panic!("trial 0 of the new study finished: {log}"));
    let first_epoch = trial0["history"][0]["val_accuracy"].as_f64().unwrap();
    assert!(
        first_epoch >= 0.5,
        "started from the champion ({}), the first epoch validates at {first_epoch}",
        champion["val_accuracy"]
    );
}

#[test]
fn budget_exhausted_below_target_exits_2() {
    let s = setup();
    let out = weak_start(&s, &["--max-trials", "1", "--target-accuracy", "0.99"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let k = kinds(&events(&s.state));
    assert_eq!(
        k.last().map(String::as_str),
        Some("budget_exhausted"),
        "{k:?}"
    );
}

/// One request the test server saw.
#[derive(Clone, Debug)]
struct Seen {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

/// A tiny HTTP server on 127.0.0.1 answering `first` statuses in turn, then 200.
fn hook_server(listener: TcpListener, first: Vec<u16>) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut answers = first.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let code = answers.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            log.lock().unwrap().push(Seen {
                headers,
                body: buf[head_end..].to_vec(),
                answered: code,
            });
        }
    });
    seen
}

fn deliveries(state: &Path) -> Vec<Value> {
    jsonl(&state.join("deliveries.jsonl"))
}

#[test]
fn webhooks_are_signed_retried_and_never_resent() {
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = hook_server(listener, vec![500]);
    let args = [
        "--webhook",
        &url,
        "--webhook-events",
        "trial_finished,target_reached",
    ];
    let study = || {
        let mut c = quick(&s, "train", &args);
        c.env("TRAINERD_WEBHOOK_SECRET", "s3cret");
        c
    };
    let out = study().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        3,
        "500, its retry, then the second event: {got:?}"
    );
    assert_eq!(got[0].answered, 500);
    assert_eq!(
        got[0].headers["idempotency-key"], got[1].headers["idempotency-key"],
        "the retry carries the same key"
    );
    for r in &got {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&r.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(r.headers["x-trainerd-signature"], want);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["id"].as_str(),
            Some(r.headers["idempotency-key"].as_str())
        );
        assert_eq!(r.headers["webhook-id"], r.headers["idempotency-key"]);
    }
    // A raw (pre-standard) secret signs by the standard too.
    verify_standard(&s, &got, serde_json::json!([{"raw_b64": "czNjcmV0"}]));
    let d = deliveries(&s.state);
    assert!(d.iter().all(|d| d["status"] == "delivered"), "{d:?}");
    assert_eq!(d[0]["attempts"], 2);

    // A restart sends nothing again.
    let out = study().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// Runs tests/interop/check_standardwebhooks.py (the `standardwebhooks`
/// package from PyPI) on the requests the hook server saw.
fn verify_standard(s: &Setup, got: &[Seen], secrets: Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let requests: Vec<Value> = got
        .iter()
        .map(|r| serde_json::json!({"headers": r.headers, "body_b64": b64.encode(&r.body)}))
        .collect();
    let spec = s.state.with_extension("webhooks.json");
    std::fs::write(
        &spec,
        serde_json::json!({"secrets": secrets, "requests": requests}).to_string(),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv_python())
        .arg(root.join("tests/interop/check_standardwebhooks.py"))
        .arg(&spec)
        .output()
        .expect("the venv's python (scripts/setup.sh, scripts/setup-interop.sh)");
    assert!(
        out.status.success(),
        "standardwebhooks refused trainerd's requests (scripts/setup-interop.sh installs it): {}",
        stderr(&out)
    );
}

#[test]
fn webhooks_verify_with_standardwebhooks_under_every_rotated_secret() {
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = hook_server(listener, vec![503]);
    let secrets = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25kIGtleQ==";
    let mut c = quick(
        &s,
        "train",
        &["--webhook", &url, "--webhook-events", "target_reached"],
    );
    c.env("TRAINERD_WEBHOOK_SECRET", secrets);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "the 503, then its retry: {got:?}");
    assert_eq!(
        got[0].headers["webhook-id"], got[1].headers["webhook-id"],
        "the id is stable across retries"
    );
    for r in &got {
        assert_eq!(r.headers["webhook-signature"].matches("v1,").count(), 2);
        assert!(!r.headers.contains_key("x-trainerd-signature"), "{r:?}");
    }
    verify_standard(
        &s,
        &got,
        serde_json::json!([
            {"whsec": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            {"whsec": "whsec_c2Vjb25kIGtleQ=="}
        ]),
    );
    // A malformed secret is a config error naming it, before any training.
    let mut c = quick(&s, "train", &["--webhook", &url]);
    c.env("TRAINERD_WEBHOOK_SECRET", "whsec_not*base64");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("webhook_secret"), "{}", stderr(&out));
}

#[test]
fn a_redirect_is_retried_not_final_and_credentials_are_never_written() {
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://bot:pw-s3cret@{addr}/hook?token=t0ken");
    // A redirect first (never followed), then 200.
    let seen = hook_server(listener, vec![301]);
    let args = ["--webhook", &url, "--webhook-events", "target_reached"];
    let out = quick(&s, "train", &args).output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "the 301, then its retry: {got:?}");
    assert_eq!(got[1].answered, 200);
    let d = deliveries(&s.state);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["status"], "delivered", "{d:?}");
    assert_eq!(d[0]["attempts"], 2);
    let written = std::fs::read_to_string(s.state.join("deliveries.jsonl")).unwrap();
    for secret in ["pw-s3cret", "t0ken"] {
        assert!(!written.contains(secret), "{written}");
        assert!(!log.contains(secret), "{log}");
    }
    assert!(
        written.contains(&format!("http://***@{addr}/hook?token=***")),
        "{written}"
    );
}

#[test]
fn an_unreachable_webhook_warns_and_is_retried_after_a_restart() {
    let s = setup();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let args = ["--webhook", &url, "--webhook-events", "target_reached"];
    let out = quick(&s, "train", &args).output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "not fatal: {log}");
    assert!(log.contains("webhook unreachable"), "{log}");
    assert_eq!(deliveries(&s.state)[0]["status"], "failed");

    let seen = hook_server(TcpListener::bind(("127.0.0.1", port)).unwrap(), vec![]);
    let out = quick(&s, "train", &args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].headers["idempotency-key"].ends_with(":target_reached"));
    assert!(
        !got[0].headers.contains_key("x-trainerd-signature"),
        "no secret, unsigned"
    );
}

/// Committed checkpoint files of one trial of the (only) study.
fn trial_checkpoints(state: &Path, trial: u32) -> usize {
    let Ok(studies) = std::fs::read_dir(state.join("study")) else {
        return 0;
    };
    studies
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(format!("trials/{trial:04}/checkpoints")))
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()))
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("ckpt-") && !n.ends_with(".tmp")
        })
        .count()
}

#[test]
fn sigkill_mid_study_resumes_the_open_trial_and_repeats_nothing() {
    let s = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = hook_server(listener, vec![]);
    let args = [
        "--ladder",
        "linear,fast:12",
        "--target-accuracy",
        "0.5",
        "--webhook",
        &url,
        "--webhook-events",
        "all",
    ];
    let mut child = spawn_logged(&mut weak_start(&s, &args), &s);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // Kill once trial 1 has checkpoints and every event so far is
        // delivered (a kill mid-delivery could legitimately resend one).
        let delivered: Vec<Value> = deliveries(&s.state);
        let settled = events(&s.state).iter().all(|e| {
            delivered
                .iter()
                .any(|d| d["event"] == e["id"] && d["status"] == "delivered")
        });
        if settled
            && has(&events(&s.state), "trial_started", 1)
            && trial_checkpoints(&s.state, 1) >= 2
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        assert!(Instant::now() < deadline, "trial 1 never checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let out = weak_start(&s, &args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = journal(&s.state);
    let count = |ty: &str, t: u64| {
        j.iter()
            .filter(|r| r["type"] == ty && r["trial"].as_u64() == Some(t))
            .count()
    };
    assert_eq!(
        (count("trial_started", 0), count("trial_finished", 0)),
        (1, 1)
    );
    assert_eq!(
        (count("trial_started", 1), count("trial_finished", 1)),
        (1, 1)
    );
    let t1 = j
        .iter()
        .find(|r| r["type"] == "trial_finished" && r["trial"] == 1)
        .unwrap();
    assert!(
        t1["resumed_from"].as_u64().unwrap() > 0,
        "resumed, not restarted: {t1}"
    );
    let evs = events(&s.state);
    assert_unique_ids(&evs);
    assert!(kinds(&evs).contains(&"resumed".to_string()));
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for r in seen.lock().unwrap().iter() {
        *per_key
            .entry(r.headers["idempotency-key"].clone())
            .or_default() += 1;
    }
    assert_eq!(per_key.len(), evs.len(), "every event delivered");
    assert!(per_key.values().all(|&n| n == 1), "{per_key:?}");
}

#[test]
fn bad_chain_config_exits_78_naming_the_key() {
    let s = setup();
    for (args, key) in [
        (vec!["--preset", "nope"], "preset"),
        (vec!["--target-accuracy", "1.5"], "target_accuracy"),
        (vec!["--target-accuracy", "0"], "target_accuracy"),
        (vec!["--ladder", "linear,huge"], "ladder"),
        (vec!["--min-accuracy", "2"], "min_accuracy"),
        (vec!["--webhook", "ftp://x"], "webhook"),
        (vec!["--webhook-events", "party"], "webhook_events"),
    ] {
        let out = cmd(&s, "train", &args).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn the_daemon_idles_after_its_study_and_exits_143_on_sigterm() {
    let s = setup();
    let mut child = spawn_logged(&mut quick(&s, "run", &[]), &s);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !kinds(&events(&s.state)).contains(&"target_reached".to_string()) {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "no target_reached");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "idles after the study");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
}

/// Bytes the process `pid` has read so far (`rchar` of /proc/<pid>/io).
fn rchar(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in {io}"))
}

#[test]
fn the_idle_daemon_reads_no_data() {
    // Its own hashing of the data files once made the watcher see changes
    // and hash again, forever.
    let s = setup();
    let data_bytes: u64 = std::fs::read_dir(&s.data)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let mut child = spawn_logged(&mut quick(&s, "run", &[]), &s);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !kinds(&events(&s.state)).contains(&"target_reached".to_string()) {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "no target_reached");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Settle (the study's last writes), then watch it idle.
    std::thread::sleep(Duration::from_secs(3));
    let before = rchar(child.id());
    std::thread::sleep(Duration::from_secs(15));
    let after = rchar(child.id());
    assert!(child.try_wait().unwrap().is_none(), "idles after the study");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    eprintln!(
        "idle 15 s: rchar {before} -> {after} ({} bytes; data set {data_bytes} bytes)",
        after - before
    );
    assert!(
        after - before < data_bytes / 10,
        "an idle daemon read {} bytes in 15 s (the data set is {data_bytes})",
        after - before
    );
}

#[test]
fn kills_between_promotion_journal_and_events_leave_one_consistent_story() {
    // Records of this study: 1 study_started, 2 trial_started, 3 trial_finished.
    // journal.append:3 dies after promoting trial 0, before journaling it;
    // events.emit:3 dies after journaling it, before its events.
    for point in ["journal.append:3", "events.emit:3"] {
        let s = setup();
        let args = ["--max-trials", "1", "--target-accuracy", "0.99"];
        let out = weak_start(&s, &args)
            .env("TRAINERD_FAULT_ABORT", point)
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(2),
            "{point}: the fault did not fire"
        );
        assert!(
            s.state.join("best/model.json").exists(),
            "{point}: promoted before the kill"
        );
        let out = weak_start(&s, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{point}: {}", stderr(&out));
        let evs = events(&s.state);
        assert_unique_ids(&evs);
        assert!(
            has(&evs, "trial_finished", 0) && has(&evs, "new_best", 0),
            "{point}: {:?}",
            kinds(&evs)
        );
        let finished: Vec<Value> = journal(&s.state)
            .into_iter()
            .filter(|r| r["type"] == "trial_finished")
            .collect();
        assert_eq!(finished.len(), 1, "{point}");
        assert_eq!(finished[0]["promoted"], true, "{point}");
        assert!(
            !s.state.join("best.previous").exists(),
            "{point}: promoted once only"
        );
    }
}

#[test]
fn sigterm_mid_trial_is_a_stopped_event_and_the_restart_resumes() {
    let s = setup();
    let args = ["--ladder", "linear,fast:12", "--target-accuracy", "0.5"];
    let mut child = spawn_logged(&mut weak_start(&s, &args), &s);
    let deadline = Instant::now() + Duration::from_secs(300);
    while trial_checkpoints(&s.state, 1) < 1 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the stop"
        );
        assert!(Instant::now() < deadline, "trial 1 never checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let evs = events(&s.state);
    assert!(has(&evs, "stopped", 1), "{:?}", kinds(&evs));

    let out = weak_start(&s, &args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let evs = events(&s.state);
    assert_unique_ids(&evs);
    assert!(
        has(&evs, "resumed", 1) && has(&evs, "target_reached", 1),
        "{:?}",
        kinds(&evs)
    );
    let t1 = journal(&s.state)
        .into_iter()
        .find(|r| r["type"] == "trial_finished" && r["trial"] == 1)
        .unwrap();
    assert!(t1["resumed_from"].as_u64().unwrap() > 0, "{t1}");
}

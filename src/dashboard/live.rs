//! `/api/v1/status`: what runs now (study, trial, rung, step of total,
//! samples/s, threads, an ETA) from this process's progress counters, the
//! study's state and the champion's line from the state dir, the watcher's
//! inputs (data fingerprint, settings key, commit), the serve figures when
//! this process serves, and the revisions that tell the page what to fetch
//! again (`rev`: events, journal, champion, the running trial's curves).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{champion, curves, lock, studies, Inner};
use crate::search::journal::{Entry, Record};

/// The status as JSON; `serve` is the last serve figures read.
pub fn status(d: &Inner, serve: Value) -> Value {
    let entries = lock(&d.journal).entries(&d.state_dir);
    let journal_len = lock(&d.journal).len();
    let events_seq = {
        let mut tail = lock(&d.events);
        tail.refresh(&crate::state_dir::events(&d.state_dir));
        tail.last_seq()
    };
    let p = &d.progress;
    let training = d.training.load(Ordering::Relaxed);
    let trial = p.trial.load(Ordering::Relaxed) as u32;
    let study_id = studies::latest(&entries);
    let study =
        study_id.and_then(|id| studies::study(&entries, id, training.then_some(trial), None));
    let row = study
        .as_ref()
        .and_then(|s| s.trials.iter().rev().find(|r| r.trial == trial));
    let curve_rev = study_id.map_or(0, |id| {
        curves::dir_size(&crate::state_dir::tensorboard(&d.state_dir, id, trial))
    });
    let (step, total) = (
        p.step.load(Ordering::Relaxed),
        p.total_steps.load(Ordering::Relaxed),
    );
    let rate = p.samples_per_sec.load(Ordering::Relaxed);
    let batch = row.map_or(0, |r| r.batch_size.max(0) as u64);
    let eta = (training && rate > 0 && batch > 0 && total > step)
        .then(|| (total - step) as f64 * batch as f64 / rate as f64);
    let finite = |x: f64| x.is_finite().then_some(x);
    let (best, best_error) = lock(&d.champion).summary(&d.state_dir);
    let started = study.as_ref().map(|s| &s.started);
    let commit = best
        .as_ref()
        .and_then(|b| b["commit"].as_str().map(str::to_string))
        .or_else(|| last_commit(&entries));
    json!({
        "v": 1,
        "pid": std::process::id(),
        "state": if training { "training" } else { "idle" },
        "now": {
            "training": training,
            "study": study_id.map(|s| super::clip(s, 64)),
            "trial": trial,
            "rung": row.and_then(|r| r.rung),
            "preset": row.map(|r| r.preset.clone()),
            "arch": row.map(|r| r.arch.clone()),
            "epoch": p.epoch.load(Ordering::Relaxed),
            "step": step,
            "total_steps": total,
            "samples_per_sec": rate,
            "threads": crate::train::cpu_share::training_threads(),
            "eta_seconds": eta,
            "train_loss": finite(p.train_loss()),
            "val_accuracy": finite(p.val_accuracy()),
        },
        "study": study.as_ref().map(|s| json!({
            "id": s.id, "state": s.state, "trials": s.trials.len(),
            "target": s.started["target"], "started_at": s.started["time"],
            "best_val_accuracy": s.trials.iter().filter_map(|r| r.val_accuracy).reduce(f64::max),
        })),
        "champion": best,
        "champion_error": best_error,
        "watcher": {
            "data_fingerprint": started.map(|s| s["data_fingerprint"].clone()),
            "settings_key": started.map(|s| s["key"].clone()),
            "commit": commit.map(|c| super::clip(&c, 64)),
        },
        "serve": serve,
        "streams": d.hub.open(),
        "rev": {
            "events": events_seq,
            "journal": journal_len,
            "champion": champion::revision(&d.state_dir),
            "curve": curve_rev,
        },
    })
}

/// The commit of the newest supersession that named one (a push that
/// started the current study).
fn last_commit(entries: &[Entry]) -> Option<String> {
    entries.iter().rev().find_map(|e| match &e.record {
        Record::Superseded { commit, .. } => commit.clone(),
        _ => None,
    })
}

/// The figures of this process's `--serve-addr` (its `/metrics`, read
/// over loopback within a second; `null` when it does not serve).
pub async fn serve_figures(addr: Option<std::net::SocketAddr>) -> Value {
    let Some(mut addr) = addr else {
        return Value::Null;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let read = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        s.take(1 << 20).read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(1), read).await {
        Ok(Some(text)) => parse_serve_metrics(&addr.to_string(), &text),
        _ => json!({"addr": addr.to_string(), "error": "its /metrics did not answer"}),
    }
}

/// The serve figures the page shows, from the exposition text.
fn parse_serve_metrics(addr: &str, text: &str) -> Value {
    let mut requests = serde_json::Map::new();
    let (mut version, mut swaps, mut failures, mut sum, mut count) = (None, None, None, 0.0, 0.0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(x) = value.trim().parse::<f64>() else {
            continue;
        };
        match name {
            "trainerd_serve_model_version" => version = Some(x),
            "trainerd_serve_swaps_total" => swaps = Some(x),
            "trainerd_serve_swap_failures_total" => failures = Some(x),
            "trainerd_serve_request_duration_seconds_sum" => sum = x,
            "trainerd_serve_request_duration_seconds_count" => count = x,
            n if n.starts_with("trainerd_serve_requests_total{") => {
                let code: String = n.chars().filter(char::is_ascii_digit).take(3).collect();
                requests.insert(code, json!(x));
            }
            _ => {}
        }
    }
    json!({
        "addr": addr, "model_version": version, "requests": requests, "swaps": swaps,
        "swap_failures": failures,
        "mean_latency_ms": (count > 0.0).then(|| sum / count * 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_metrics_are_read_from_the_exposition() {
        let text = "# HELP x\ntrainerd_serve_requests_total{code=\"200\"} 12\n\
                    trainerd_serve_requests_total{code=\"400\"} 1\n\
                    trainerd_serve_model_version 3\ntrainerd_serve_swaps_total 2\n\
                    trainerd_serve_request_duration_seconds_sum 0.5\n\
                    trainerd_serve_request_duration_seconds_count 10\n";
        let v = parse_serve_metrics("127.0.0.1:8000", text);
        assert_eq!(v["requests"]["200"], 12.0);
        assert_eq!(v["requests"]["400"], 1.0);
        assert_eq!(v["model_version"], 3.0);
        assert_eq!(v["mean_latency_ms"], 50.0);
    }
}

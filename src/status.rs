//! `trainerd status`: what the state dir says, as a table or JSON: whether
//! a daemon runs (its heartbeat, and whether its pid lives and holds the
//! state dir's lock) and what it trains, the current study's trials and
//! restarts (event log), the newest checkpoint on disk, and the champion
//! (or why its card cannot be read).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::model::card::load_champion as load_card;
use crate::store::{is_held, pid_alive};
use crate::telemetry::heartbeat::{self, Heartbeat};
use crate::telemetry::metrics::tally_events;
use crate::train::now_ms;

/// A heartbeat older than this means no daemon is running (it beats every 5 s).
const STALE_MS: u64 = 30_000;

pub use crate::timestamp::format_age;

/// What the process is doing: its heartbeat, when `alive` (its pid exists
/// and the state dir's lock is held) and fresh.
fn state(beat: Option<&Heartbeat>, now: u64, alive: bool, locked: bool) -> &'static str {
    match beat {
        None if locked => "starting",
        None => "not started",
        Some(_) if !alive => "not running",
        Some(b) if now.saturating_sub(b.updated_ms) > STALE_MS => "not running",
        Some(b) if b.training => "training",
        Some(_) => "idle",
    }
}

fn mtime_ms(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as u64)
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The newest checkpoint file on disk and its time (Unix ms): studies' trials
/// (`study/<id>/trials/NNNN/checkpoints/`) and `trainerd trial`'s (`trials/NNNN/checkpoints/`).
fn newest_checkpoint(state_dir: &Path) -> Option<(PathBuf, u64)> {
    let mut trials = subdirs(&crate::state_dir::standalone_trials(state_dir));
    for study in subdirs(&crate::state_dir::studies(state_dir)) {
        trials.extend(subdirs(&study.join("trials")));
    }
    trials
        .iter()
        .flat_map(|t| subdirs(&crate::state_dir::checkpoints(t)))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt-") && n.ends_with(".tch"))
        })
        .filter_map(|p| mtime_ms(&p).map(|t| (p, t)))
        .max_by_key(|(_, t)| *t)
}

/// The last line of the event log, parsed.
fn last_event(state_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(crate::state_dir::events(state_dir)).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str(line).ok()
}

/// Collects the state dir's summary as JSON.
pub fn collect(state_dir: &Path) -> Value {
    let now = now_ms();
    let beat = heartbeat::read(state_dir);
    let (card, card_error) = match load_card(state_dir) {
        Ok(card) => (card, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let tally = tally_events(&crate::state_dir::events(state_dir));
    let age = |ms: u64| (ms > 0).then(|| now.saturating_sub(ms) as f64 / 1000.0);
    // The newest checkpoint on disk, or this process's last one if newer
    // (a finished trial's checkpoints are removed).
    let on_disk = newest_checkpoint(state_dir);
    let beat_ckpt = beat.as_ref().map_or(0, |b| b.last_checkpoint_ms);
    let ckpt_ms = on_disk.as_ref().map_or(0, |(_, t)| *t).max(beat_ckpt);
    let locked = is_held(state_dir);
    let alive = beat.as_ref().is_some_and(|b| pid_alive(b.pid)) && locked != Some(false);
    let state = state(beat.as_ref(), now, alive, locked == Some(true));
    json!({
        "state_dir": state_dir.display().to_string(),
        "state": state,
        "running": matches!(state, "training" | "idle" | "starting"),
        "pid": beat.as_ref().map(|b| b.pid),
        "heartbeat_age_seconds": beat.as_ref().and_then(|b| age(b.updated_ms)),
        "trial": beat.as_ref().map(|b| b.trial),
        "epoch": beat.as_ref().map(|b| b.epoch),
        "step": beat.as_ref().map(|b| b.step),
        "total_steps": beat.as_ref().map(|b| b.total_steps).filter(|&t| t > 0),
        "samples_per_sec": beat.as_ref().map(|b| b.samples_per_sec),
        "train_loss": beat.as_ref().and_then(|b| b.train_loss),
        "val_accuracy": beat.as_ref().and_then(|b| b.val_accuracy),
        "last_checkpoint_age_seconds": age(ckpt_ms),
        "last_checkpoint": on_disk.map(|(p, _)| p.display().to_string()),
        "trials": {"running": tally.running, "finished": tally.finished, "pruned": tally.pruned},
        "restarts": tally.restarts,
        "best": card.map(|c| {
            // Checksums of every listed file (hashing them reads the model
            // once: status is run by people, not by health checks).
            let damaged = crate::export::verify(&crate::state_dir::best(state_dir), &c)
                .err()
                .map(|e| e.to_string());
            let mut v = json!({
                "trial": c.trial, "preset": c.preset, "val_accuracy": c.val_accuracy,
                "test_accuracy": c.test_accuracy, "created_at": c.created_at,
                "data_fingerprint": c.data_fingerprint, "parameters": c.parameters,
                "diverged": c.diverged(), "version": c.version, "damaged": damaged,
            });
            // Fields newer cards carry (study, commit), passed through as written.
            if let Ok(Value::Object(all)) = serde_json::to_value(&c) {
                for key in [
                    "study", "commit", "val_size", "val_interval", "test_size",
                    "test_interval", "confidence_level",
                ] {
                    if let Some(x) = all.get(key).filter(|x| !x.is_null()) {
                        v[key] = x.clone();
                    }
                }
            }
            v
        }),
        "champion_error": card_error,
        "last_event": last_event(state_dir).map(|e| json!({
            "kind": e["kind"], "time": e["time"], "message": e["message"],
        })),
    })
}

fn pct(x: &Value) -> String {
    x.as_f64()
        .map_or("-".into(), |v| format!("{:.2}%", v * 100.0))
}

/// The table `trainerd status` prints.
pub fn render_table(v: &Value) -> String {
    let mut rows: Vec<(&str, String)> =
        vec![("state dir", v["state_dir"].as_str().unwrap_or("").into())];
    let mut state = v["state"].as_str().unwrap_or("").to_string();
    if let (Some(pid), Some(age)) = (v["pid"].as_u64(), v["heartbeat_age_seconds"].as_f64()) {
        let last = if v["running"] == true { "" } else { "last " };
        state += &format!(" ({last}pid {pid}, heartbeat {} ago)", format_age(age));
    }
    rows.push(("state", state));
    if let Some(step) = v["step"].as_u64() {
        let mut line = format!(
            "trial {} · epoch {} · step {step}",
            v["trial"].as_u64().unwrap_or(0),
            v["epoch"].as_u64().unwrap_or(0)
        );
        if let Some(total) = v["total_steps"].as_u64() {
            line += &format!(
                "/{total} ({:.0}%)",
                step as f64 * 100.0 / total.max(1) as f64
            );
        }
        if let Some(rate) = v["samples_per_sec"].as_u64().filter(|&r| r > 0) {
            line += &format!(" · {rate} samples/s");
        }
        rows.push(("progress", line));
    }
    if let Some(loss) = v["train_loss"].as_f64() {
        rows.push((
            "last epoch",
            format!("loss {loss:.4} · val accuracy {}", pct(&v["val_accuracy"])),
        ));
    }
    // A process that ended may have written some: a finished trial's are removed.
    let none = if v["state"] == "not running" {
        "none on disk"
    } else {
        "none yet"
    };
    let mut ckpt = v["last_checkpoint_age_seconds"]
        .as_f64()
        .map_or(none.into(), |a| format!("{} ago", format_age(a)));
    if let Some(path) = v["last_checkpoint"].as_str() {
        ckpt += &format!(" ({path})");
    }
    rows.push(("checkpoint", ckpt));
    let t = &v["trials"];
    rows.push((
        "study trials",
        format!(
            "{} running · {} finished · {} pruned · {} restarts",
            t["running"], t["finished"], t["pruned"], v["restarts"]
        ),
    ));
    rows.push(("champion", champion_line(v)));
    if let Some(e) = v["last_event"].as_object() {
        rows.push((
            "last event",
            format!(
                "{} {} {}",
                e["time"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
            .trim()
            .to_string(),
        ));
    }
    rows.iter().map(|(k, v)| format!("{k:<13} {v}\n")).collect()
}

/// The table's champion row: who it is, its numbers and data, and any damage.
fn champion_line(v: &Value) -> String {
    let Some(b) = v["best"].as_object() else {
        return match v["champion_error"].as_str() {
            Some(e) => format!("UNUSABLE: {e}"),
            None => "none yet".into(),
        };
    };
    let mut line = format!(
        "trial {} ({}) · val {} · test {} · {}",
        b["trial"],
        b["preset"].as_str().unwrap_or(""),
        with_interval(&b["val_accuracy"], b.get("val_interval")),
        with_interval(&b["test_accuracy"], b.get("test_interval")),
        b["created_at"].as_str().unwrap_or("")
    );
    let fp = b["data_fingerprint"].as_str().unwrap_or("");
    line += &format!(" · data {}", fp.get(..12).unwrap_or(fp));
    if let Some(c) = b.get("commit").and_then(Value::as_str) {
        line += &format!(" · commit {}", c.get(..12).unwrap_or(c));
    }
    if let Some(e) = b["damaged"].as_str() {
        line += &format!(" · DAMAGED: {e}");
    }
    if b.get("diverged") == Some(&Value::Bool(true)) {
        line += " · DIVERGED (written by an older trainerd; the next study replaces it)";
    }
    line
}

pub fn print(state_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let v = collect(state_dir);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_table(&v));
    }
    Ok(())
}

/// An accuracy with its 95% interval when the card has one
/// (`0.921 [0.914, 0.928]`), else as a percentage.
fn with_interval(acc: &Value, interval: Option<&Value>) -> String {
    let pair = interval
        .and_then(|i| serde_json::from_value::<[f64; 2]>(i.clone()).ok())
        .zip(acc.as_f64());
    match pair {
        Some((i, a)) => crate::model::card::Intervals::shown(a, Some(i)),
        None => pct(acc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(format_age(0.4), "0s");
        assert_eq!(format_age(59.0), "59s");
        assert_eq!(format_age(65.0), "1m 05s");
        assert_eq!(format_age(3.0 * 3600.0 + 120.0), "3h 02m");
        assert_eq!(format_age(2.0 * 86400.0 + 4.0 * 3600.0), "2d 04h");
    }

    #[test]
    fn empty_state_dir_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let v = collect(dir.path());
        assert_eq!(v["state"], "not started");
        assert!(v["best"].is_null() && v["step"].is_null());
        let table = render_table(&v);
        assert!(table.contains("champion      none yet"), "{table}");
        assert!(table.contains("checkpoint    none yet"), "{table}");
    }

    #[test]
    fn heartbeat_and_events_show_up() {
        let dir = tempfile::tempdir().unwrap();
        let lock = crate::store::StateLock::acquire(dir.path()).unwrap();
        let progress = crate::train::Progress::default();
        progress.start_trial(2, 400, 0);
        progress.set_step(100);
        progress.end_epoch(1, 0.5, 0.9712);
        progress.checkpoint_saved();
        let beat = Heartbeat::from_progress(&progress, true);
        std::fs::write(
            heartbeat::path(dir.path()),
            serde_json::to_vec(&beat).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("events.jsonl"),
            concat!(
                "{\"kind\":\"study_started\",\"study\":\"s\",\"time\":\"t0\"}\n",
                "{\"kind\":\"trial_started\",\"study\":\"s\",\"time\":\"t1\",\"message\":\"trial 0\"}\n",
            ),
        )
        .unwrap();
        let v = collect(dir.path());
        assert_eq!(v["state"], "training");
        assert_eq!(
            (v["trial"].as_u64(), v["step"].as_u64()),
            (Some(2), Some(100))
        );
        assert_eq!(v["trials"]["running"], 1);
        assert!(v["last_checkpoint_age_seconds"].as_f64().unwrap() < 60.0);
        let table = render_table(&v);
        assert!(
            table.contains("trial 2 · epoch 1 · step 100/400 (25%)"),
            "{table}"
        );
        assert!(table.contains("val accuracy 97.12%"), "{table}");
        assert!(table.contains("t1 trial_started trial 0"), "{table}");

        // The lock released: whatever the heartbeat says, nothing runs.
        drop(lock);
        if is_held(dir.path()) == Some(false) {
            let v = collect(dir.path());
            assert_eq!(v["state"], "not running");
            let pid = std::process::id();
            let table = render_table(&v);
            assert!(
                table.contains(&format!("not running (last pid {pid}")),
                "{table}"
            );
        }
        // An old heartbeat: the daemon is gone.
        let mut old = beat.clone();
        old.updated_ms -= 10 * 60 * 1000;
        std::fs::write(
            heartbeat::path(dir.path()),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert_eq!(collect(dir.path())["state"], "not running");
    }

    #[test]
    fn a_dead_pid_is_not_running_and_checkpoints_on_disk_show() {
        let dir = tempfile::tempdir().unwrap();
        let mut beat = Heartbeat::from_progress(&crate::train::Progress::default(), true);
        beat.pid = i32::MAX as u32; // above any pid_max: no such process
        std::fs::write(
            heartbeat::path(dir.path()),
            serde_json::to_vec(&beat).unwrap(),
        )
        .unwrap();
        let table = render_table(&collect(dir.path()));
        assert!(table.contains("checkpoint    none on disk"), "{table}");
        let ckpts = dir.path().join("study/abc/trials/0001/checkpoints");
        std::fs::create_dir_all(&ckpts).unwrap();
        std::fs::write(ckpts.join("ckpt-000000000040.tch"), b"x").unwrap();
        let v = collect(dir.path());
        assert_eq!(v["state"], "not running");
        let table = render_table(&v);
        assert!(table.contains(&format!("last pid {}", i32::MAX)), "{table}");
        assert!(table.contains("ckpt-000000000040.tch"), "{table}");
        assert!(!table.contains("none yet ("), "{table}");
    }

    #[test]
    fn an_unreadable_card_is_reported_not_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("best")).unwrap();
        std::fs::write(dir.path().join("best/model.json"), b"{not json").unwrap();
        let v = collect(dir.path());
        assert!(v["best"].is_null());
        let table = render_table(&v);
        assert!(
            table.contains("UNUSABLE") && table.contains("best/model.json"),
            "{table}"
        );
    }
}

//! Prometheus metrics: what the trainer is doing, in the text exposition
//! format, served over HTTP (`/metrics`) with `/healthz` beside it.
//!
//! Values come from three places, so nothing has to be wired twice: the
//! shared [`Progress`] (step, epoch, loss, accuracy, samples/s, checkpoint
//! time, updated by the trial loop itself), `best/model.json` (the champion's
//! accuracies) and `events.jsonl` (trials by state in the current study,
//! restarts), both read when scraped.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::train::{now_ms, Progress};

/// What one scrape reports.
pub struct Metrics {
    progress: Arc<Progress>,
    state_dir: PathBuf,
    started_ms: u64,
    tally: Mutex<(u64, Tally)>,
    /// `/healthz` fails when the heartbeat (or, training, the last step) is older.
    pub health_max_age: Duration,
}

/// Counts from `events.jsonl`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// `resumed` events: a study picked up again after the process restarted.
    pub restarts: u64,
    /// The latest study's trials by state.
    pub running: u64,
    pub finished: u64,
    pub pruned: u64,
}

/// Counts the event log's lines (kinds as the pipeline writes them). A
/// trial's state is its last word: started, then finished or pruned (a
/// pruned trial's `trial_finished` carries `"pruned": true`).
pub fn tally_events(path: &Path) -> Tally {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Running,
        Finished,
        Pruned,
    }
    let Ok(file) = std::fs::File::open(path) else {
        return Tally::default();
    };
    let mut restarts = 0;
    let mut study = String::new();
    let mut trials: std::collections::BTreeMap<i64, State> = Default::default();
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let this = v["study"].as_str().unwrap_or_default();
        let trial = v["trial"].as_i64().unwrap_or(-1);
        let kind = v["kind"].as_str().unwrap_or_default();
        if kind == "resumed" {
            restarts += 1;
        } else if kind == "study_started" && this != study {
            study = this.to_string();
            trials.clear();
        }
        if this != study {
            continue;
        }
        match kind {
            "trial_started" => {
                trials.insert(trial, State::Running);
            }
            "trial_pruned" => {
                trials.insert(trial, State::Pruned);
            }
            "trial_finished" => {
                let pruned = v["data"]["pruned"].as_bool() == Some(true)
                    || trials.get(&trial) == Some(&State::Pruned);
                trials.insert(
                    trial,
                    if pruned {
                        State::Pruned
                    } else {
                        State::Finished
                    },
                );
            }
            _ => {}
        }
    }
    let count = |s: State| trials.values().filter(|&&t| t == s).count() as u64;
    Tally {
        restarts,
        running: count(State::Running),
        finished: count(State::Finished),
        pruned: count(State::Pruned),
    }
}

impl Metrics {
    pub fn new(progress: Arc<Progress>, state_dir: PathBuf) -> Metrics {
        Metrics {
            progress,
            state_dir,
            started_ms: now_ms(),
            tally: Mutex::new((u64::MAX, Tally::default())),
            health_max_age: Duration::from_secs(120),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The event counts, re-read only when the log's size changed.
    fn tally(&self) -> Tally {
        let path = self.state_dir.join("events.jsonl");
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let Ok(mut cache) = self.tally.lock() else {
            return tally_events(&path);
        };
        if cache.0 != len {
            *cache = (len, tally_events(&path));
        }
        cache.1.clone()
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let p = &self.progress;
        let now = now_ms();
        let secs = |ms: u64| ms as f64 / 1000.0;
        let mut out = Exposition::default();
        out.one(
            "trainerd_build_info",
            "gauge",
            "Build of the running trainerd.",
            &[(format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1.0)],
        );
        out.gauge(
            "trainerd_start_time_seconds",
            "When this process started (Unix seconds).",
            secs(self.started_ms),
        );
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        out.gauge(
            "trainerd_trial",
            "The trial training now (or last).",
            load(&p.trial),
        );
        out.gauge(
            "trainerd_step",
            "Optimizer steps the current trial has taken.",
            load(&p.step),
        );
        out.gauge(
            "trainerd_trial_steps",
            "Steps the current trial takes in all.",
            load(&p.total_steps),
        );
        out.gauge(
            "trainerd_epoch",
            "Epochs the current trial has completed.",
            load(&p.epoch),
        );
        out.gauge(
            "trainerd_train_loss",
            "Mean training loss of the last epoch.",
            p.train_loss(),
        );
        out.gauge(
            "trainerd_val_accuracy",
            "Validation accuracy after the last epoch.",
            p.val_accuracy(),
        );
        out.gauge(
            "trainerd_samples_per_second",
            "Training throughput over the last few seconds.",
            load(&p.samples_per_sec),
        );
        out.gauge(
            "trainerd_last_step_age_seconds",
            "Seconds since the last training step.",
            secs(now.saturating_sub(p.last_step_ms.load(Ordering::Relaxed))),
        );
        let ckpt = p.last_checkpoint_ms.load(Ordering::Relaxed);
        out.gauge(
            "trainerd_checkpoint_age_seconds",
            "Seconds since this process last wrote a checkpoint.",
            if ckpt == 0 {
                f64::NAN
            } else {
                secs(now.saturating_sub(ckpt))
            },
        );
        let card = crate::pipeline::promote::read_card(&self.state_dir);
        out.gauge(
            "trainerd_best_val_accuracy",
            "Validation accuracy of the promoted model.",
            card.as_ref().map_or(f64::NAN, |c| c.val_accuracy),
        );
        out.gauge(
            "trainerd_best_test_accuracy",
            "Test accuracy of the promoted model.",
            card.as_ref().map_or(f64::NAN, |c| c.test_accuracy),
        );
        let t = self.tally();
        out.one(
            "trainerd_trials",
            "gauge",
            "Trials of the current study by state.",
            &[
                ("state=\"running\"".into(), t.running as f64),
                ("state=\"finished\"".into(), t.finished as f64),
                ("state=\"pruned\"".into(), t.pruned as f64),
            ],
        );
        out.one(
            "trainerd_restarts_total",
            "counter",
            "Times a study resumed after the process restarted.",
            &[(String::new(), t.restarts as f64)],
        );
        out.0
    }
}

/// Text exposition, family by family. NaN means "not known yet": the sample
/// is left out rather than exported as NaN.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn one(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples.iter().filter(|(_, v)| !v.is_nan()) {
            let _ = if labels.is_empty() {
                writeln!(self.0, "{name} {v}")
            } else {
                writeln!(self.0, "{name}{{{labels}}} {v}")
            };
        }
    }
    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.one(name, "gauge", help, &[(String::new(), v)]);
    }
}

/// `/healthz`: the same judgement as `trainerd health`.
pub fn health(metrics: &Metrics) -> Result<String, String> {
    super::heartbeat::check(&metrics.state_dir, metrics.health_max_age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tallied_for_the_latest_study() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let lines = [
            r#"{"kind":"study_started","study":"a"}"#,
            r#"{"kind":"trial_started","study":"a","trial":0}"#,
            r#"{"kind":"trial_finished","study":"a","trial":0}"#,
            r#"{"kind":"resumed","study":"a"}"#,
            r#"{"kind":"study_started","study":"b"}"#,
            r#"{"kind":"trial_started","study":"b","trial":0}"#,
            r#"{"kind":"trial_pruned","study":"b","trial":0}"#,
            r#"{"kind":"trial_finished","study":"b","trial":0,"data":{"pruned":true}}"#,
            "not json",
            r#"{"kind":"trial_started","study":"b","trial":1}"#,
            r#"{"kind":"resumed","study":"b"}"#,
            r#"{"kind":"trial_started","study":"b","trial":2}"#,
            r#"{"kind":"trial_finished","study":"b","trial":2,"data":{"pruned":false}}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let t = tally_events(&path);
        assert_eq!(
            t,
            Tally {
                restarts: 2,
                running: 1,
                finished: 1,
                pruned: 1
            }
        );
        assert_eq!(tally_events(&dir.path().join("none")), Tally::default());
    }

    #[test]
    fn render_reads_the_event_log_and_champion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("events.jsonl"),
            "{\"kind\":\"study_started\",\"study\":\"s\"}\n{\"kind\":\"trial_started\",\"study\":\"s\"}\n",
        )
        .unwrap();
        let m = Metrics::new(Arc::default(), dir.path().to_path_buf());
        let text = m.render();
        assert!(
            text.contains("trainerd_trials{state=\"running\"} 1"),
            "{text}"
        );
        assert!(text.contains("trainerd_restarts_total 0"), "{text}");
        assert!(
            !text.contains("trainerd_best_val_accuracy 0"),
            "no champion: no sample"
        );
        // Every family has HELP and TYPE before its samples.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} lacks TYPE"
            );
        }
    }
}

//! Prometheus metrics: what the trainer is doing, in the text exposition
//! format (encoded by `prometheus-client`), served over HTTP (`/metrics`) with `/healthz` beside it.
//!
//! Values come from three places, so nothing has to be wired twice: the
//! shared [`Progress`] (step, epoch, loss, accuracy, samples/s, checkpoint
//! time, updated by the trial loop itself), `best/model.json` (the champion's
//! accuracies) and `events.jsonl` (trials by state in the current study,
//! restarts), both read when scraped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::event_kind::EventKind;
use crate::train::{now_ms, Progress};

/// What one scrape reports: a `prometheus-client` registry whose collector
/// samples the sources above.
pub struct Metrics {
    sampler: Arc<Sampler>,
    registry: Registry,
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
        let kind = EventKind::from(v["kind"].as_str().unwrap_or_default());
        if kind == EventKind::Resumed {
            restarts += 1;
        } else if kind == EventKind::StudyStarted && this != study {
            study = this.to_string();
            trials.clear();
        }
        if this != study {
            continue;
        }
        match kind {
            EventKind::TrialStarted => {
                trials.insert(trial, State::Running);
            }
            EventKind::TrialPruned => {
                trials.insert(trial, State::Pruned);
            }
            EventKind::TrialFinished => {
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
        let sampler = Arc::new(Sampler {
            progress,
            state_dir,
            started_ms: now_ms(),
            tally: Mutex::new((u64::MAX, Tally::default())),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(sampler.clone()));
        Metrics {
            sampler,
            registry,
            health_max_age: Duration::from_secs(120),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.sampler.state_dir
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }
}

/// Reads the values at scrape time (a `Collector`), so nothing is copied
/// into the registry between scrapes.
struct Sampler {
    progress: Arc<Progress>,
    state_dir: PathBuf,
    started_ms: u64,
    /// The event counts with the log size they were counted at.
    tally: Mutex<(u64, Tally)>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// The event counts, re-read only when the log's size changed.
    fn tally(&self) -> Tally {
        let path = crate::state_dir::events(&self.state_dir);
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let Ok(mut cache) = self.tally.lock() else {
            return tally_events(&path);
        };
        if cache.0 != len {
            *cache = (len, tally_events(&path));
        }
        cache.1.clone()
    }

    /// The trainer's own gauges, from the shared [`Progress`].
    fn encode_progress(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let p = &self.progress;
        let now = now_ms();
        let secs = |ms: u64| ms as f64 / 1000.0;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            enc,
            "trainerd_start_time_seconds",
            "When this process started (Unix seconds).",
            secs(self.started_ms),
        )?;
        let counts = [
            (
                "trainerd_trial",
                "The trial training now (or last).",
                &p.trial,
            ),
            (
                "trainerd_step",
                "Optimizer steps the current trial has taken.",
                &p.step,
            ),
            (
                "trainerd_trial_steps",
                "Steps the current trial takes in all.",
                &p.total_steps,
            ),
            (
                "trainerd_epoch",
                "Epochs the current trial has completed.",
                &p.epoch,
            ),
        ];
        for (name, help, value) in counts {
            enc.encode_descriptor(name, help, None, MetricType::Gauge)
                .and_then(|m| ConstGauge::new(load(value)).encode(m))?;
        }
        gauge(
            enc,
            "trainerd_train_loss",
            "Mean training loss of the last epoch.",
            p.train_loss(),
        )?;
        gauge(
            enc,
            "trainerd_val_accuracy",
            "Validation accuracy after the last epoch.",
            p.val_accuracy(),
        )?;
        enc.encode_descriptor(
            "trainerd_samples_per_second",
            "Training throughput over the last few seconds.",
            None,
            MetricType::Gauge,
        )
        .and_then(|m| ConstGauge::new(load(&p.samples_per_sec)).encode(m))?;
        gauge(
            enc,
            "trainerd_last_step_age_seconds",
            "Seconds since the last training step.",
            secs(now.saturating_sub(load(&p.last_step_ms))),
        )?;
        let ckpt = load(&p.last_checkpoint_ms);
        gauge(
            enc,
            "trainerd_checkpoint_age_seconds",
            "Seconds since this process last wrote a checkpoint.",
            if ckpt == 0 {
                f64::NAN
            } else {
                secs(now.saturating_sub(ckpt))
            },
        )
    }

    /// What the state dir says: the champion's accuracies, the event counts.
    fn encode_state(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let card = crate::model::card::read_champion(&self.state_dir);
        gauge(
            enc,
            "trainerd_best_val_accuracy",
            "Validation accuracy of the promoted model.",
            card.as_ref().map_or(f64::NAN, |c| c.val_accuracy),
        )?;
        gauge(
            enc,
            "trainerd_best_test_accuracy",
            "Test accuracy of the promoted model.",
            card.as_ref().map_or(f64::NAN, |c| c.test_accuracy),
        )?;
        let t = self.tally();
        let mut trials = enc.encode_descriptor(
            "trainerd_trials",
            "Trials of the current study by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("running", t.running),
            ("finished", t.finished),
            ("pruned", t.pruned),
        ] {
            let labels = [("state", state)];
            ConstGauge::new(n).encode(trials.encode_family(&labels)?)?;
        }
        // The text encoder appends `_total` to a counter's name.
        enc.encode_descriptor(
            "trainerd_restarts",
            "Times a study resumed after the process restarted.",
            None,
            MetricType::Counter,
        )
        .and_then(|m| ConstCounter::new(t.restarts).encode(m))
    }
}

impl Collector for Sampler {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        let mut info = enc.encode_descriptor(
            "trainerd_build_info",
            "Build of the running trainerd.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1u64).encode(info.encode_family(&labels)?)?;
        self.encode_progress(&mut enc)?;
        self.encode_state(&mut enc)
    }
}

/// One unlabelled gauge. NaN means "not known yet": the family is described
/// but its sample left out rather than exported as NaN.
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if v.is_nan() {
        return Ok(());
    }
    ConstGauge::new(v).encode(m)
}

/// `/healthz`: the same judgement as `trainerd health`.
pub fn health(metrics: &Metrics) -> Result<String, String> {
    super::heartbeat::check(metrics.state_dir(), metrics.health_max_age)
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

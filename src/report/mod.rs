//! `best/report.html`: what the champion is and how the study got there —
//! loss and accuracy curves per trial, per-class accuracy, the confusion
//! matrix and the trial history with architectures — as real SVG plots in
//! one self-contained file, written atomically next to the model.

mod charts;
mod html;
pub mod svg;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::card::ModelCard;
use crate::model::{ArchSpec, OptimSpec, Recipe, ScheduleSpec, TrialSpec};
use crate::train::EpochRecord;

/// One trial of the study, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    pub trial: u32,
    pub spec: TrialSpec,
    /// How it ended: finished, pruned, failed, running …
    pub state: String,
    pub val_accuracy: Option<f64>,
    pub parameters: Option<i64>,
    pub train_seconds: f64,
    /// Its epochs (the curves).
    pub history: Vec<EpochRecord>,
}

/// Everything the report is drawn from.
pub struct ReportInputs<'a> {
    /// The champion (per-class accuracy and confusion matrix come from it).
    pub card: &'a ModelCard,
    /// The study's trials in order, the champion among them.
    pub trials: &'a [TrialSummary],
    pub target_accuracy: Option<f64>,
    pub study: Option<&'a str>,
    /// The workspace commit the data and config came from.
    pub commit: Option<&'a str>,
    /// Class names (default: the class indices).
    pub class_names: Option<&'a [String]>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for ReportError {
    fn exit_code(&self) -> u8 {
        crate::exit::IO
    }
}

/// The report's HTML.
pub fn render(inputs: &ReportInputs) -> String {
    html::page(inputs)
}

/// Writes `<state_dir>/best/report.html` atomically (temp file, fsync,
/// rename), so a reader never sees half a report.
pub fn write(state_dir: &Path, inputs: &ReportInputs) -> Result<PathBuf, ReportError> {
    let dir = crate::state_dir::best(state_dir);
    let path = dir.join("report.html");
    let html = render(inputs);
    crate::store::write_bytes_atomic(&path, html.as_bytes()).map_err(|e| ReportError::Io {
        path: e.path,
        what: e.source.to_string(),
    })?;
    Ok(path)
}

/// A one-line architecture: `conv 16 bn → pool · conv 32 bn → pool · fc 10`.
pub fn describe_arch(arch: &ArchSpec) -> String {
    match arch {
        ArchSpec::Mlp { hidden, dropout } => {
            let mut parts: Vec<String> = hidden.iter().map(|h| format!("fc {h}")).collect();
            if parts.is_empty() {
                return "linear (softmax regression)".into();
            }
            if *dropout > 0.0 {
                parts.push(format!("dropout {dropout}"));
            }
            format!("MLP: {}", parts.join(" → "))
        }
        ArchSpec::Cnn {
            blocks,
            head,
            head_dropout,
        } => {
            let mut parts: Vec<String> = blocks
                .iter()
                .map(|b| {
                    let mut s = format!("{}×conv{} {}", b.convs, b.kernel, b.channels);
                    match (b.batch_norm, b.pool, b.pool_first) {
                        (true, true, true) => s += " pool bn",
                        (true, true, false) => s += " bn pool",
                        (true, false, _) => s += " bn",
                        (false, true, _) => s += " pool",
                        (false, false, _) => {}
                    }
                    if b.dropout > 0.0 {
                        s += &format!(" drop {}", b.dropout);
                    }
                    s
                })
                .collect();
            parts.extend(head.iter().map(|h| format!("fc {h}")));
            if *head_dropout > 0.0 {
                parts.push(format!("dropout {head_dropout}"));
            }
            format!("CNN: {}", parts.join(" → "))
        }
    }
}

/// A one-line recipe: `SGD lr 0.1 (nesterov) · one-cycle · 2 epochs × batch 128`.
pub fn describe_recipe(r: &Recipe) -> String {
    let opt = match &r.optimizer {
        OptimSpec::Sgd {
            lr,
            momentum,
            nesterov,
            ..
        } => {
            format!(
                "SGD lr {lr} m {momentum}{}",
                if *nesterov { " nesterov" } else { "" }
            )
        }
        OptimSpec::AdamW {
            lr, weight_decay, ..
        } => format!("AdamW lr {lr} wd {weight_decay}"),
        OptimSpec::Adadelta { lr, rho, .. } => format!("Adadelta lr {lr} rho {rho}"),
    };
    let sched = match &r.schedule {
        ScheduleSpec::Constant => "constant".to_string(),
        ScheduleSpec::Step {
            every_epochs,
            gamma,
        } => format!("step ×{gamma}/{every_epochs} ep"),
        ScheduleSpec::OneCycle { .. } => "one-cycle".to_string(),
    };
    let mut s = format!(
        "{opt} · {sched} · {} epoch{} × batch {}",
        r.epochs,
        if r.epochs == 1 { "" } else { "s" },
        r.batch_size
    );
    if r.label_smoothing > 0.0 {
        s += &format!(" · smoothing {}", r.label_smoothing);
    }
    if r.augment_shift > 0 {
        s += &format!(" · shift ±{}", r.augment_shift);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset;
    use std::fs;

    /// Checks tags nest properly (void HTML elements aside) and attribute
    /// values are quoted; returns the element names in document order.
    fn check_markup(doc: &str) -> Result<Vec<String>, String> {
        const VOID: &[&str] = &["meta", "br", "img", "link", "input", "hr"];
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = doc;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').ok_or("unclosed <")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            names.push(name.to_string());
            if !tag.ends_with('/') && !VOID.contains(&name) {
                stack.push(name.to_string());
            }
        }
        match stack.pop() {
            Some(open) => Err(format!("<{open}> never closed")),
            None => Ok(names),
        }
    }

    fn history(offset: f64, epochs: u32) -> Vec<EpochRecord> {
        (1..=epochs)
            .map(|e| EpochRecord {
                epoch: e,
                step: u64::from(e) * 100,
                train_loss: 1.0 / f64::from(e) + offset,
                val_accuracy: 0.9 + 0.02 * f64::from(e) - offset,
                val_loss: 0.5 / f64::from(e),
                lr: 0.1,
                train_seconds: f64::from(e) * 3.0,
            })
            .collect()
    }

    fn summary(trial: u32, name: &str, state: &str, epochs: u32) -> TrialSummary {
        let h = history(f64::from(trial) * 0.01, epochs);
        TrialSummary {
            trial,
            spec: preset(name).unwrap(),
            state: state.into(),
            val_accuracy: h.last().map(|r| r.val_accuracy),
            parameters: Some(1000 + i64::from(trial)),
            train_seconds: 12.5,
            history: h,
        }
    }

    fn card(trial: u32) -> ModelCard {
        let spec = preset("fast").unwrap();
        ModelCard {
            format: crate::model::card::MODEL_CARD_FORMAT,
            trial,
            preset: spec.preset,
            arch: spec.arch,
            recipe: spec.recipe,
            val_accuracy: 0.97,
            test_accuracy: 0.965,
            val_loss: 0.1,
            test_loss: 0.11,
            per_class_test_accuracy: vec![0.99, 0.98, 0.9],
            test_confusion: vec![vec![99, 1, 0], vec![1, 98, 1], vec![3, 7, 90]],
            parameters: 1001,
            epochs_trained: 3,
            train_seconds: 12.5,
            seed: 1,
            data_fingerprint: "ab".repeat(32),
            input_shape: [1, 28, 28],
            classes: 3,
            normalisation: [0.13, 0.31].into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            study: "s".into(),
            commit: Some("abc123".into()),
            val_size: 10,
            files: Vec::new(),
            version: 0,
            class_names: Vec::new(),
            intervals: Default::default(),
        }
    }

    #[test]
    fn report_is_well_formed_and_self_contained() {
        let trials = [
            summary(0, "linear", "finished", 2),
            summary(1, "fast", "finished", 3),
            summary(2, "mlp", "pruned", 1),
        ];
        let card = card(1);
        let names: Vec<String> = ["zero", "one", "<two>"].map(String::from).to_vec();
        let html = render(&ReportInputs {
            card: &card,
            trials: &trials,
            target_accuracy: Some(0.99),
            study: Some("s1"),
            commit: Some("0123456789abcdef"),
            class_names: Some(&names),
        });
        let tags = check_markup(&html).unwrap_or_else(|e| panic!("{e}"));
        // Loss, accuracy, legend, per-class bars, confusion matrix.
        assert_eq!(tags.iter().filter(|t| *t == "svg").count(), 5);
        // Loss: training + validation per trial; accuracy: one per trial.
        assert_eq!(
            tags.iter().filter(|t| *t == "polyline").count(),
            3 * 2 + 3 + 3 + 1
        );
        assert_eq!(
            tags.iter().filter(|t| *t == "rect").count(),
            3 + 9,
            "bars + cells"
        );
        assert!(!html.contains("NaN") && !html.contains("inf"));
        // Self-contained: nothing fetched (the SVG namespace URI is a name, not a fetch).
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
        assert!(!html.contains("href=") && !html.contains("url("));
        assert!(html.contains("&lt;two&gt;"), "class names are escaped");
        for needle in [
            "0123456789abcdef",
            "target 99.00%",
            "pruned",
            "★",
            "96.50%",
            "CNN: ",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn cards_without_class_names_still_read() {
        let mut v = serde_json::to_value(card(1)).unwrap();
        v.as_object_mut().unwrap().remove("class_names");
        let c: ModelCard = serde_json::from_value(v).unwrap();
        assert!(c.class_names.is_empty());
    }

    #[test]
    fn report_without_history_still_renders() {
        let card = card(0);
        let html = render(&ReportInputs {
            card: &card,
            trials: &[],
            target_accuracy: None,
            study: None,
            commit: None,
            class_names: None,
        });
        check_markup(&html).unwrap();
        assert!(html.contains("no epochs recorded yet"));
    }

    #[test]
    fn write_is_atomic_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let card = card(0);
        let trials = [summary(0, "fast", "finished", 2)];
        let inputs = ReportInputs {
            card: &card,
            trials: &trials,
            target_accuracy: None,
            study: None,
            commit: None,
            class_names: None,
        };
        let path = write(dir.path(), &inputs).unwrap();
        assert_eq!(path, dir.path().join("best").join("report.html"));
        let first = fs::read_to_string(&path).unwrap();
        assert!(first.starts_with("<!DOCTYPE html>"));
        write(dir.path(), &inputs).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path().join("best"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("report.html")],
            "no temp file left"
        );
    }

    #[test]
    fn architectures_read_as_one_line() {
        assert_eq!(
            describe_arch(&preset("linear").unwrap().arch),
            "linear (softmax regression)"
        );
        assert_eq!(
            describe_arch(&preset("mlp").unwrap().arch),
            "MLP: fc 512 → dropout 0.1"
        );
        assert_eq!(
            describe_arch(&preset("fast").unwrap().arch),
            "CNN: 1×conv3 16 pool bn → 1×conv3 32 pool bn → 1×conv3 64 pool bn"
        );
        let r = describe_recipe(&preset("bn3").unwrap().recipe);
        assert!(r.contains("one-cycle") && r.contains("shift ±2"), "{r}");
    }
}

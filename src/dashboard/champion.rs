//! The champion for the page: `best/model.json` (version, accuracies with
//! their intervals, per-class accuracy with the class names, the confusion
//! matrix), each file it lists with whether it verifies (size and SHA-256,
//! hashed again only when the file changes), and `best.previous/`'s card.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::clip;
use crate::model::card::{self, ModelCard};

/// Classes shown at most (per-class rows, matrix rows and columns).
pub const MAX_CLASSES: usize = 256;
/// Files of a card listed at most.
const MAX_FILES: usize = 64;

/// What a file was when it was last checked, and the verdict.
type Checked = ((u64, i64, i64, u64), Result<(), String>);

/// Verdicts of the champion's files, kept while a file does not change.
#[derive(Default)]
pub struct ChampionCache {
    checked: HashMap<PathBuf, Checked>,
    /// The champion's line (or its card's error), by [`revision`].
    line: Option<(String, Option<Value>, Option<String>)>,
}

fn sig(path: &Path) -> Option<(u64, i64, i64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
}

/// Changes whenever the champion's card is replaced (a promotion or a rollback).
pub fn revision(state_dir: &Path) -> String {
    let show = |dir: PathBuf| match sig(&dir.join(card::CARD)) {
        Some((len, s, ns, ino)) => format!("{ino}-{len}-{s}.{ns:09}"),
        None => "none".into(),
    };
    format!(
        "{}/{}",
        show(crate::state_dir::best(state_dir)),
        show(crate::state_dir::best_previous(state_dir))
    )
}

impl ChampionCache {
    /// `{"champion": …, "error": …, "previous": …}`.
    pub fn champion(&mut self, state_dir: &Path) -> Value {
        let best = crate::state_dir::best(state_dir);
        let (champion, error) = match card::read(&best) {
            Ok(Some(c)) => {
                let mut v = detail(&c);
                v["files"] = self.files(&best, &c);
                (v, None)
            }
            Ok(None) => (Value::Null, None),
            Err(e) => (Value::Null, Some(e.to_string())),
        };
        let previous = card::read(&crate::state_dir::best_previous(state_dir))
            .ok()
            .flatten()
            .map(|c| summary(&c));
        json!({"champion": champion, "error": error, "previous": previous})
    }

    /// The champion's [`summary`] (or why its card cannot be read), read
    /// again only after a promotion or rollback replaced the card.
    pub fn summary(&mut self, state_dir: &Path) -> (Option<Value>, Option<String>) {
        let rev = revision(state_dir);
        if let Some((r, line, err)) = &self.line {
            if *r == rev {
                return (line.clone(), err.clone());
            }
        }
        let (line, err) = match card::read(&crate::state_dir::best(state_dir)) {
            Ok(c) => (c.as_ref().map(summary), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.line = Some((rev, line.clone(), err.clone()));
        (line, err)
    }

    /// Each listed file with its verdict (hashing only what changed).
    fn files(&mut self, dir: &Path, c: &ModelCard) -> Value {
        let mut out = Vec::new();
        for f in c.files.iter().take(MAX_FILES) {
            let path = dir.join(&f.path);
            let now = sig(&path);
            let verdict = match (self.checked.get(&path), now) {
                (Some((was, v)), Some(now)) if *was == now => v.clone(),
                _ => {
                    let one = ModelCard {
                        files: vec![f.clone()],
                        ..c.clone()
                    };
                    let v = crate::export::verify(dir, &one).map_err(|e| e.to_string());
                    if let Some(now) = now {
                        self.checked.insert(path, (now, v.clone()));
                    }
                    v
                }
            };
            out.push(json!({
                "path": clip(&f.path, 300), "bytes": f.bytes, "sha256": clip(&f.sha256, 64),
                "verified": verdict.is_ok(), "error": verdict.err(),
            }));
        }
        if self.checked.len() > 4 * MAX_FILES {
            self.checked.clear();
        }
        Value::Array(out)
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// What the status line and `best.previous` show.
pub fn summary(c: &ModelCard) -> Value {
    json!({
        "version": c.version, "trial": c.trial, "study": clip(&c.study, 64),
        "preset": clip(&c.preset, 200), "val_accuracy": finite(c.val_accuracy),
        "test_accuracy": finite(c.test_accuracy), "val_interval": c.intervals.val_interval,
        "test_interval": c.intervals.test_interval, "created_at": clip(&c.created_at, 64),
        "commit": c.commit.as_deref().map(|s| clip(s, 64)),
        "data_fingerprint": clip(&c.data_fingerprint, 64),
    })
}

/// The card in full, the class lists capped at [`MAX_CLASSES`].
fn detail(c: &ModelCard) -> Value {
    let mut v = summary(c);
    let name = |i: usize| {
        c.class_names
            .get(i)
            .map_or_else(|| i.to_string(), |n| clip(n, 200))
    };
    let k = (c.classes.max(0) as usize).min(MAX_CLASSES);
    let per_class: Vec<Value> = (0..k)
        .map(|i| {
            json!({"label": i, "name": name(i),
                   "accuracy": c.per_class_test_accuracy.get(i).copied().and_then(finite)})
        })
        .collect();
    let confusion: Vec<Vec<i64>> = c
        .test_confusion
        .iter()
        .take(k)
        .map(|row| row.iter().take(k).copied().collect())
        .collect();
    let extra = json!({
        "arch": crate::report::describe_arch(&c.arch),
        "recipe": crate::report::describe_recipe(&c.recipe),
        "parameters": c.parameters, "epochs_trained": c.epochs_trained,
        "train_seconds": finite(c.train_seconds), "val_size": c.val_size,
        "test_size": c.intervals.test_size, "classes": c.classes,
        "input_shape": c.input_shape, "per_class": per_class, "confusion": confusion,
        "classes_shown": k,
    });
    if let (Value::Object(v), Value::Object(e)) = (&mut v, extra) {
        v.extend(e);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_verified_one_by_one_and_class_names_kept_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let best = crate::state_dir::best(dir.path());
        std::fs::create_dir_all(&best).unwrap();
        std::fs::write(best.join("a.bin"), b"hello").unwrap();
        std::fs::write(best.join("b.bin"), b"world").unwrap();
        let mut c = crate::export::card::tests::sample_card();
        c.files = vec![
            crate::export::manifest::entry(&best, "a.bin").unwrap(),
            crate::export::manifest::entry(&best, "b.bin").unwrap(),
        ];
        c.class_names = (0..c.classes)
            .map(|i| format!("<img src=x onerror=alert({i})>"))
            .collect();
        std::fs::write(best.join("model.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        let mut cache = ChampionCache::default();
        let v = cache.champion(dir.path());
        let files = v["champion"]["files"].as_array().unwrap();
        assert!(files.iter().all(|f| f["verified"] == true), "{v}");
        assert_eq!(
            v["champion"]["per_class"][0]["name"],
            "<img src=x onerror=alert(0)>"
        );
        std::fs::write(best.join("b.bin"), b"w0rld").unwrap();
        let v = cache.champion(dir.path());
        let files = v["champion"]["files"].as_array().unwrap();
        assert_eq!(files[0]["verified"], true);
        assert_eq!(files[1]["verified"], false);
        assert!(files[1]["error"].as_str().unwrap().contains("b.bin"), "{v}");
        assert!(v["previous"].is_null());
    }

    #[test]
    fn an_unreadable_card_is_an_error_not_no_champion() {
        let dir = tempfile::tempdir().unwrap();
        let best = crate::state_dir::best(dir.path());
        std::fs::create_dir_all(&best).unwrap();
        std::fs::write(best.join("model.json"), b"{nope").unwrap();
        let v = ChampionCache::default().champion(dir.path());
        assert!(v["champion"].is_null());
        assert!(v["error"].as_str().unwrap().contains("model.json"), "{v}");
    }
}

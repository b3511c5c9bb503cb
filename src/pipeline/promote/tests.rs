//! Tests of `promote`.

use super::*;
use crate::pipeline::rollback::rollback;

pub(crate) fn card(trial: u32) -> ModelCard {
    ModelCard {
        format: MODEL_CARD_FORMAT,
        trial,
        preset: "linear".into(),
        arch: crate::model::ArchSpec::Mlp {
            hidden: vec![],
            dropout: 0.0,
        },
        recipe: crate::model::preset("linear").unwrap().recipe,
        val_accuracy: 0.5,
        test_accuracy: 0.5,
        val_loss: 1.0,
        test_loss: 1.0,
        per_class_test_accuracy: vec![],
        test_confusion: vec![],
        parameters: 1,
        epochs_trained: 1,
        train_seconds: 1.0,
        seed: 1,
        data_fingerprint: "fp".into(),
        input_shape: [1, 2, 2],
        classes: 2,
        normalisation: [0.0, 1.0].into(),
        created_at: ModelCard::now(),
        study: "s".into(),
        commit: None,
        val_size: 10,
        files: Vec::new(),
        version: 0,
        class_names: Vec::new(),
        intervals: Default::default(),
    }
}

/// Weights that fit [`card`]'s architecture.
pub(crate) fn weights(card: &ModelCard) -> Vec<(String, Tensor)> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = crate::model::build(&vs.root(), &card.arch, crate::export::input_shape(card));
    vs.variables().into_iter().collect()
}

/// Promotes a fresh model of `trial`, keeping 10 versions.
pub(crate) fn promote_trial(dir: &Path, trial: u32) {
    promote_keeping(dir, trial, 10);
}

pub(crate) fn promote_keeping(dir: &Path, trial: u32, keep: usize) {
    let card = card(trial);
    promote(
        dir,
        &weights(&card),
        &card,
        &[("report.html", b"<html>")],
        keep,
    )
    .unwrap();
}

pub(crate) fn trial_in(dir: &Path, which: &str) -> Option<u32> {
    let text = fs::read_to_string(dir.join(which).join("model.json")).ok()?;
    Some(serde_json::from_str::<ModelCard>(&text).ok()?.trial)
}

#[test]
fn verdict_needs_the_margin_on_the_same_split() {
    let champ = card(1);
    let mut c = card(2);
    c.val_accuracy = 0.505;
    assert!(matches!(verdict(None, &c, 0.01), Verdict::Promote(_)));
    assert!(matches!(verdict(Some(&champ), &c, 0.01), Verdict::Keep(_)));
    assert!(matches!(
        verdict(Some(&champ), &c, 0.0),
        Verdict::Promote(_)
    ));
    c.val_accuracy = 0.5;
    assert!(
        matches!(verdict(Some(&champ), &c, 0.0), Verdict::Keep(_)),
        "a tie keeps"
    );
    c.data_fingerprint = "other".into();
    assert!(matches!(
        verdict(Some(&champ), &c, 0.5),
        Verdict::Promote(_)
    ));
    assert_eq!(verdict(Some(&champ), &champ, 0.0), Verdict::AlreadyChampion);
}

#[test]
fn promotion_keeps_the_previous_champion_and_rollback_swaps_them() {
    let dir = tempfile::tempdir().unwrap();
    promote_trial(dir.path(), 1);
    assert!(
        rollback(dir.path()).unwrap().is_none(),
        "nothing to roll back to"
    );
    promote_trial(dir.path(), 2);
    assert_eq!(trial_in(dir.path(), "best"), Some(2));
    assert_eq!(trial_in(dir.path(), "best.previous"), Some(1));
    assert_eq!(load_card(dir.path()).unwrap().map(|c| c.version), Some(2));
    assert_eq!(rollback(dir.path()).unwrap().map(|c| c.trial), Some(1));
    assert_eq!(trial_in(dir.path(), "best.previous"), Some(2));
    rollback(dir.path()).unwrap();
    assert_eq!(trial_in(dir.path(), "best"), Some(2));
    // Versions count up past a rolled-back champion.
    rollback(dir.path()).unwrap();
    promote_trial(dir.path(), 3);
    assert_eq!(load_card(dir.path()).unwrap().map(|c| c.version), Some(3));
}

#[test]
fn recovery_completes_an_interrupted_rollback_at_each_crash_point() {
    for crash_after in 1..=2 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        promote_trial(d, 1);
        promote_trial(d, 2);
        fs::rename(d.join("best"), d.join("best.rollback")).unwrap();
        if crash_after == 2 {
            fs::rename(d.join("best.previous"), d.join("best")).unwrap();
        }
        recover(d).unwrap();
        assert_eq!(
            trial_in(d, "best"),
            Some(1),
            "crash after rename {crash_after}"
        );
        assert_eq!(trial_in(d, "best.previous"), Some(2));
        assert!(!d.join("best.rollback").exists());
    }
}

#[test]
fn diverged_models_are_never_promoted_and_diverged_champions_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = card(1);
    bad.val_loss = f64::NAN;
    assert_eq!(
        verdict(None, &bad, 0.0),
        Verdict::Keep("the candidate diverged".into())
    );
    assert!(promote(dir.path(), &[], &bad, &[], 10).is_err());
    assert!(!dir.path().join("best").exists());
    let good = card(2);
    assert!(matches!(
        verdict(Some(&bad), &good, 0.5),
        Verdict::Promote(_)
    ));
}

#[test]
fn a_corrupt_or_missing_card_is_an_error_not_no_champion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(load_card(d).unwrap().is_none());
    promote_trial(d, 1);
    assert_eq!(load_card(d).unwrap().map(|c| c.trial), Some(1));
    fs::write(d.join("best/model.json"), b"{\"format\": 1, trunc").unwrap();
    let err = load_card(d).unwrap_err().to_string();
    assert!(
        err.contains("best/model.json") && err.contains("unreadable"),
        "{err}"
    );
    fs::remove_file(d.join("best/model.json")).unwrap();
    assert!(load_card(d).unwrap_err().to_string().contains("missing"));
    // An older build's card of a diverged model (NaN written as null) reads, as diverged.
    let mut text = serde_json::to_value(card(3)).unwrap();
    text["val_loss"] = serde_json::Value::Null;
    fs::write(d.join("best/model.json"), text.to_string()).unwrap();
    assert!(load_card(d).unwrap().unwrap().diverged());
}

#[test]
fn rollback_needs_the_state_dir_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    promote_trial(dir.path(), 1);
    promote_trial(dir.path(), 2);
    let lock = crate::store::StateLock::acquire(dir.path()).unwrap();
    let err = rollback(dir.path()).unwrap_err();
    assert_eq!(crate::exit::ExitStatus::exit_code(&err), 73);
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert_eq!(trial_in(dir.path(), "best"), Some(2), "nothing moved");
    drop(lock);
    assert!(
        rollback(tempfile::tempdir().unwrap().path().join("none").as_path())
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_promoted_champion_lists_every_exported_file_and_they_verify() {
    let dir = tempfile::tempdir().unwrap();
    promote_trial(dir.path(), 1);
    let card = load_card(dir.path()).unwrap().unwrap();
    let listed: Vec<&str> = card.files.iter().map(|f| f.path.as_str()).collect();
    for want in ["model.safetensors", "model.onnx", "model.pt", "README.md"] {
        assert!(listed.contains(&want), "{want} missing from {listed:?}");
    }
    assert!(
        listed
            .iter()
            .any(|p| p.starts_with("repository/") && p.ends_with("config.pbtxt")),
        "{listed:?}"
    );
    assert!(!listed.contains(&"report.html"), "the report is not listed");
    let best = dir.path().join("best");
    crate::export::verify(&best, &card).unwrap();
    fs::write(best.join("model.onnx"), b"not a model").unwrap();
    let err = crate::export::verify(&best, &card).unwrap_err().to_string();
    assert!(err.contains("model.onnx"), "{err}");
}

#[test]
fn recovery_removes_stray_temp_files_and_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    promote_trial(d, 1);
    assert!(
        d.join("best/report.html").is_file(),
        "staged with the model"
    );
    fs::write(d.join("best/.report.html.tmp-123"), b"half").unwrap();
    recover(d).unwrap();
    let mut names: Vec<String> = fs::read_dir(d.join("best"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "model.json",
            "model.onnx",
            "model.pt",
            "model.safetensors",
            "report.html",
            "repository"
        ]
    );
}

#[test]
fn recovery_completes_an_interrupted_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    promote_trial(d, 1);
    promote_trial(d, 2);
    // Crash between "best -> best.previous" and "staging -> best".
    fs::remove_dir_all(d.join("best.previous")).unwrap();
    fs::rename(d.join("best"), d.join("best.previous")).unwrap();
    promote_trial(d, 3);
    fs::rename(d.join("best"), d.join("best.staging")).unwrap();
    recover(d).unwrap();
    assert_eq!(trial_in(d, "best"), Some(3));
    // A half-written staging dir (no card yet) is dropped, best untouched.
    fs::create_dir_all(d.join("best.staging")).unwrap();
    recover(d).unwrap();
    assert!(!d.join("best.staging").exists());
    assert_eq!(trial_in(d, "best"), Some(3));
}

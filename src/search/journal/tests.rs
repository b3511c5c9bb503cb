//! Tests of `journal`.

use super::*;

fn started() -> Record {
    Record::StudyStarted {
        key: "k".into(),
        ordinal: 0,
        data_fingerprint: "fp".into(),
        target: 0.99,
        config: serde_json::json!({"seed": 1}),
    }
}

#[test]
fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append("s1", started()).unwrap();
    j.append(
        "s1",
        Record::TrialStarted {
            trial: 0,
            spec: crate::model::preset("linear").unwrap(),
            mv: Move::Start,
            rung: Some(0),
            reason: "first".into(),
            architecture_changed: false,
        },
    )
    .unwrap();
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.entries().len(), 2);
    assert_eq!(j.entries()[0].record, started());
    assert_eq!(j.study("s1").count(), 2);
    assert_eq!(j.study("other").count(), 0);
}

#[test]
fn a_torn_last_line_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append("s1", started()).unwrap();
    drop(j);
    let path = Journal::path(dir.path());
    let good = fs::read(&path).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"v":1,"study":"s1","time":"x","type":"trial_sta"#);
    fs::write(&path, &torn).unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.entries().len(), 1);
    assert_eq!(fs::read(&path).unwrap(), good, "torn tail removed");
    j.append(
        "s1",
        Record::Resumed {
            seq: 0,
            trial: None,
        },
    )
    .unwrap();
    drop(j);
    assert_eq!(Journal::open(dir.path()).unwrap().entries().len(), 2);
}

#[test]
fn a_complete_record_missing_its_newline_counts_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append("s1", started()).unwrap();
    drop(j);
    let path = Journal::path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let line = bytes.clone();
    bytes.extend_from_slice(&line[..line.len() - 1]);
    fs::write(&path, &bytes).unwrap();
    assert_eq!(Journal::open(dir.path()).unwrap().entries().len(), 1);
}

#[test]
fn damage_before_the_last_line_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    j.append("s1", started()).unwrap();
    j.append("s1", started()).unwrap();
    drop(j);
    let path = Journal::path(dir.path());
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("garbage\n{text}")).unwrap();
    let err = Journal::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("journal.jsonl:1"), "{err}");
}

#[test]
fn non_finite_numbers_are_refused_and_old_nulls_read_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    let finished = |loss: f64| Record::TrialFinished {
        trial: 0,
        val_accuracy: 0.1,
        val_loss: loss,
        history: vec![],
        pruned: false,
        promoted: false,
        study_best: 0.1,
        train_seconds: 1.0,
        resumed_from: 0,
    };
    let err = j.append("s", finished(f64::NAN)).unwrap_err();
    assert_eq!(crate::exit::ExitStatus::exit_code(&err), 1, "{err}");
    j.append("s", finished(0.5)).unwrap();
    drop(j);
    // What the build before this one wrote for a diverged trial.
    let path = Journal::path(dir.path());
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str(&text.replace("0.5", "null"));
    fs::write(&path, text).unwrap();
    let j = Journal::open(dir.path()).unwrap();
    match &j.entries()[1].record {
        Record::TrialFinished { val_loss, .. } => assert!(val_loss.is_nan()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_newer_record_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = Journal::path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let line = r#"{"v":9,"study":"s","time":"t","type":"resumed","seq":0,"trial":null}"#;
    fs::write(&path, format!("{line}\n")).unwrap();
    let err = Journal::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("format 9"), "{err}");
}

#[test]
fn older_trial_records_with_a_test_accuracy_still_read_and_new_ones_carry_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = Journal::path(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A line as builds that measured every trial on the test split wrote it,
    // and one of a pruned trial (`null`).
    let old = r#"{"v":1,"study":"s","time":"t","type":"trial_finished","trial":0,"val_accuracy":0.9,"test_accuracy":0.89,"val_loss":0.3,"history":[],"pruned":false,"promoted":true,"study_best":0.9,"train_seconds":2.0,"resumed_from":0}"#;
    let pruned = old
        .replace(r#""test_accuracy":0.89"#, r#""test_accuracy":null"#)
        .replace(r#""trial":0"#, r#""trial":1"#);
    fs::write(&path, format!("{old}\n{pruned}\n")).unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.entries().len(), 2);
    let Record::TrialFinished { val_accuracy, .. } = &j.entries()[0].record else {
        panic!("{:?}", j.entries()[0]);
    };
    assert_eq!(*val_accuracy, 0.9);
    let again = j.entries()[0].record.clone();
    j.append("s", again).unwrap();
    drop(j);
    let text = fs::read_to_string(&path).unwrap();
    let new = text.lines().nth(2).unwrap();
    assert!(!new.contains("test"), "no test accuracy journaled: {new}");
}

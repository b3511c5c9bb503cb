//! Tests of `events`.

use super::*;

fn entry(record: Record) -> Entry {
    Entry {
        v: 1,
        study: "s1".into(),
        time: "2026-01-01T00:00:00Z".into(),
        record,
    }
}

fn finished(trial: u32, promoted: bool, best: f64) -> Entry {
    entry(Record::TrialFinished {
        trial,
        val_accuracy: best,
        val_loss: 0.1,
        history: vec![],
        pruned: false,
        promoted,
        study_best: best,
        train_seconds: 1.0,
        resumed_from: 0,
    })
}

#[test]
fn records_imply_events_with_stable_ids() {
    let kinds =
        |e: &Entry| -> Vec<String> { events_for(e, 0.99).into_iter().map(|e| e.id).collect() };
    assert_eq!(
        kinds(&finished(3, true, 0.9)),
        [
            "s1:trial_finished:t3",
            "s1:new_best:t3",
            "s1:below_target:t3"
        ]
    );
    assert_eq!(kinds(&finished(4, false, 0.995)), ["s1:trial_finished:t4"]);
    let done = entry(Record::StudyFinished {
        outcome: Outcome::BudgetExhausted,
        best_trial: Some(1),
        best_val_accuracy: 0.9,
        reason: "max_trials".into(),
    });
    assert_eq!(kinds(&done), ["s1:budget_exhausted"]);
    assert_eq!(
        events_for(&done, 0.99),
        events_for(&done, 0.99),
        "deterministic"
    );
}

#[test]
fn every_kind_is_listed() {
    let ids: Vec<String> = [
        finished(1, true, 0.5),
        entry(Record::Stopped {
            seq: 0,
            trial: Some(1),
            step: 5,
        }),
        entry(Record::Resumed {
            seq: 0,
            trial: None,
        }),
    ]
    .iter()
    .flat_map(|e| events_for(e, 0.9))
    .map(|e| e.kind.to_string())
    .collect();
    for k in ids {
        assert!(KINDS.contains(&k.as_str()), "{k}");
        assert_ne!(EventKind::from(k.as_str()), EventKind::Other(k.clone()));
    }
}

#[test]
fn the_log_emits_each_id_once_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut log = EventLog::open(dir.path(), Some(tx)).unwrap();
    let evs = events_for(&finished(1, true, 0.5), 0.9);
    for ev in &evs {
        assert!(log.emit(ev.clone()).unwrap());
    }
    assert!(!log.emit(evs[0].clone()).unwrap());
    drop(log);
    assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), evs.len());
    let mut log = EventLog::open(dir.path(), None).unwrap();
    for ev in &evs {
        assert!(
            !log.emit(ev.clone()).unwrap(),
            "already emitted before the restart"
        );
    }
    assert_eq!(read_events(&EventLog::path(dir.path())).unwrap(), evs);
}

#[test]
fn a_torn_event_line_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), None).unwrap();
    let evs = events_for(&finished(1, false, 0.5), 0.9);
    log.emit(evs[0].clone()).unwrap();
    drop(log);
    let path = EventLog::path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"v":1,"id":"s1:below"#);
    std::fs::write(&path, bytes).unwrap();
    let mut log = EventLog::open(dir.path(), None).unwrap();
    assert!(
        log.emit(evs[1].clone()).unwrap(),
        "the torn one was never emitted"
    );
    assert_eq!(read_events(&path).unwrap().len(), 2);
}

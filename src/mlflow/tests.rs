use std::collections::BTreeMap;

use serde_json::json;

use super::client::{encode, judge, CallError};
use super::ops::{flatten, ops_for, Op, Queued};
use super::queue::{queue_path, sent_path, DiskQueue};
use crate::config::parse_mlflow_uri;
use crate::pipeline::events::Event;

fn event(kind: &str, trial: Option<u32>, data: serde_json::Value) -> Event {
    Event {
        v: 1,
        id: format!("s1:{kind}"),
        kind: kind.into(),
        study: "s1".into(),
        trial,
        time: "2026-01-02T03:04:05Z".into(),
        message: String::new(),
        data,
    }
}

fn alias(n: u32) -> Queued {
    Queued {
        key: format!("k{n}"),
        op: Op::Alias {
            study: "s".into(),
            trial: n,
        },
    }
}

#[test]
fn a_started_trial_is_a_run_with_its_tags_and_flattened_spec() {
    let ev = event(
        "trial_started",
        Some(3),
        json!({"spec": {"preset": "fast", "recipe": {"epochs": 2, "optimizer": {"lr": 0.1}}},
               "rung": 1, "move": "escalate", "reason": "why"}),
    );
    let ops = ops_for(&ev, Some("abc"));
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].key, "s1:t3:run");
    let Op::StartRun {
        tags,
        params,
        time_ms,
        ..
    } = &ops[0].op
    else {
        panic!("{ops:?}")
    };
    assert_eq!(*time_ms, 1_767_323_045_000);
    assert_eq!(tags["trainerd.rung"], "1");
    assert_eq!(tags["trainerd.commit"], "abc");
    assert_eq!(tags["trainerd.key"], "s1:t3");
    assert_eq!(params["preset"], "fast");
    assert_eq!(params["recipe.optimizer.lr"], "0.1");
    assert_eq!(params["move"], "escalate");
    // The same event gives the same keys (a replay is recognised).
    assert_eq!(ops_for(&ev, Some("abc")), ops);
}

#[test]
fn a_finished_trial_logs_each_epoch_at_its_step_and_a_diverged_one_fails() {
    let history = json!([{"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0},
                         {"epoch": 2, "val_accuracy": 0.7, "val_loss": 0.5}]);
    let ev = event(
        "trial_finished",
        Some(0),
        json!({"history": history, "test_accuracy": 0.69, "pruned": false}),
    );
    let Op::EndRun {
        status, metrics, ..
    } = &ops_for(&ev, None)[0].op
    else {
        panic!()
    };
    assert_eq!(status, "FINISHED");
    let acc: Vec<(i64, f64)> = metrics
        .iter()
        .filter(|p| p.key == "val_accuracy")
        .map(|p| (p.step, p.value))
        .collect();
    assert_eq!(acc, [(1, 0.5), (2, 0.7)]);
    assert!(
        !metrics.iter().any(|p| p.key == "test_accuracy"),
        "a run logs no test accuracy, even from an older build's event: {metrics:?}"
    );
    let ev = event(
        "trial_finished",
        Some(0),
        json!({"diverged": true, "history": []}),
    );
    let Op::EndRun { status, .. } = &ops_for(&ev, None)[0].op else {
        panic!()
    };
    assert_eq!(status, "FAILED");
    assert_eq!(
        ops_for(&event("new_best", Some(4), json!({})), None)[0].key,
        "s1:t4:version"
    );
    assert!(ops_for(&event("below_target", Some(4), json!({})), None).is_empty());
    assert!(ops_for(&event("study_started", None, json!({})), None).is_empty());
}

#[test]
fn long_param_values_are_cut_to_mlflows_limit_on_a_char_boundary() {
    let mut out = BTreeMap::new();
    flatten("", &json!({"a": "é".repeat(5000), "b": [1, 2]}), &mut out);
    assert!(out["a"].len() <= 6000 && out["a"].chars().all(|c| c == 'é'));
    assert_eq!(out["b"], "[1,2]");
}

#[test]
fn the_queue_keeps_pending_operations_across_reopening_and_never_queues_a_key_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), 100).unwrap();
    assert!(q.push(alias(1)).unwrap());
    assert!(q.push(alias(2)).unwrap());
    assert!(!q.push(alias(1)).unwrap());
    q.settle("k1", "sent", None);
    drop(q);
    let mut q = DiskQueue::open(dir.path(), 100).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.front().unwrap().key, "k2");
    assert!(
        !q.push(alias(1)).unwrap(),
        "a settled key is not queued again"
    );
    // A torn last line (crash mid-append) is dropped, the rest kept.
    std::fs::OpenOptions::new()
        .append(true)
        .open(queue_path(dir.path()))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"key\":"))
        .unwrap();
    drop(q);
    assert_eq!(DiskQueue::open(dir.path(), 100).unwrap().len(), 1);
}

#[test]
fn a_full_queue_drops_its_oldest_operation_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), 2).unwrap();
    for n in 1..=3 {
        q.push(alias(n)).unwrap();
    }
    assert_eq!(q.len(), 2);
    assert_eq!(q.front().unwrap().key, "k2");
    let sent = std::fs::read_to_string(sent_path(dir.path())).unwrap();
    assert!(
        sent.contains("\"k1\"") && sent.contains("dropped"),
        "{sent}"
    );
}

#[test]
fn a_queue_of_settled_lines_is_compacted_to_its_pending_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), 1000).unwrap();
    for n in 0..200 {
        q.push(alias(n)).unwrap();
    }
    for n in 0..199 {
        q.settle(&format!("k{n}"), "sent", None);
    }
    drop(q);
    let mut q = DiskQueue::open(dir.path(), 1000).unwrap();
    assert_eq!(q.len(), 1);
    let text = std::fs::read_to_string(queue_path(dir.path())).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        !q.push(alias(5)).unwrap(),
        "settled keys stay known after compaction"
    );
    q.push(alias(500)).unwrap();
    drop(q);
    assert_eq!(DiskQueue::open(dir.path(), 1000).unwrap().len(), 2);
}

#[test]
fn credentials_become_basic_auth_and_are_never_shown() {
    let t = parse_mlflow_uri("https://al%40ice:p%3Ass@mlflow.example:5000/base/").unwrap();
    assert_eq!(t.base, "https://mlflow.example:5000/base");
    // base64 of "al@ice:p:ss"
    assert_eq!(t.auth.as_deref(), Some("Basic YWxAaWNlOnA6c3M="));
    assert_eq!(t.shown, "https://***@mlflow.example:5000/base/");
    assert!(!format!("{t:?}").contains("p%3Ass"));
    let plain = parse_mlflow_uri("http://127.0.0.1:5000").unwrap();
    assert_eq!(
        (plain.base.as_str(), plain.auth),
        ("http://127.0.0.1:5000", None)
    );
    for bad in [
        "ftp://u:pw@h",
        "http://u:pw@",
        "http://u:pw@h/?q=1",
        "http://u:pw@:80",
        "u:pw@h",
    ] {
        let e = parse_mlflow_uri(bad).unwrap_err().to_string();
        assert!(e.contains("mlflow_uri") && !e.contains("pw"), "{bad}: {e}");
    }
}

#[test]
fn answers_are_sorted_into_done_retried_and_refused() {
    assert_eq!(judge(200, "", "u").unwrap(), json!({}));
    assert_eq!(judge(200, r#"{"a":1}"#, "u").unwrap(), json!({"a": 1}));
    for code in [302, 429, 500, 503] {
        assert!(
            matches!(judge(code, "", "u"), Err(CallError::Retry(_))),
            "{code}"
        );
    }
    let e = judge(
        400,
        r#"{"error_code":"RESOURCE_ALREADY_EXISTS","message":"x"}"#,
        "u",
    )
    .unwrap_err();
    assert!(e.is("RESOURCE_ALREADY_EXISTS"));
    assert!(!judge(404, "not json", "u")
        .unwrap_err()
        .is("RESOURCE_ALREADY_EXISTS"));
    assert_eq!(
        encode("name = 'a b'/é"),
        "name%20%3D%20%27a%20b%27%2F%C3%A9"
    );
}

/// Where each promotion's artifacts come from: the version it kept, though
/// `best/` and `best.previous/` have moved on; else those, as before
/// versions were kept; nothing for a trial no folder holds.
#[test]
fn a_promotions_artifacts_come_from_its_kept_version() {
    use super::files::champion_files;
    use crate::versions::tests::model_dir;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for n in 1..=3 {
        model_dir(d, &format!("versions/{n}"), n as u32, n);
    }
    // A kept version whose number is not its trial's.
    model_dir(d, "versions/5", 9, 5);
    model_dir(d, "best", 3, 3);
    model_dir(d, "best.previous", 2, 2);
    let study = crate::export::card::tests::sample_card().study;
    // The kept version N trial `t`'s files come from (the `trainerd.version` tag).
    let kept = |t: u32| champion_files(d, &study, t).and_then(|c| c.version);
    // The one folder trial `t`'s files come from, and their names.
    let from = |t: u32| {
        let files = champion_files(d, &study, t)?.files;
        let dir = files[0].1.parent().unwrap().to_path_buf();
        assert!(
            files.iter().all(|(rel, p)| *p == dir.join(rel)),
            "{files:?}"
        );
        Some((
            dir,
            files.into_iter().map(|(rel, _)| rel).collect::<Vec<_>>(),
        ))
    };
    let folder = |t: u32| from(t).map(|(dir, _)| dir);
    // Trial 1 is in neither best/ nor best.previous/ any more.
    let (dir, names) = from(1).expect("versions/1 holds trial 1");
    assert_eq!(dir, d.join("versions/1"));
    for name in [
        "model.json",
        "model.safetensors",
        "model.onnx",
        "report.html",
    ] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    assert_eq!(
        folder(3),
        Some(d.join("versions/3")),
        "the kept version, not best/"
    );
    assert_eq!(folder(4), None, "no folder holds trial 4");
    assert_eq!(champion_files(d, "another-study", 3), None);
    assert_eq!((kept(1), kept(3)), (Some(1), Some(3)));
    assert_eq!(folder(9), Some(d.join("versions/5")));
    assert_eq!(kept(9), Some(5), "the version's number, not the trial's");
    assert_eq!(kept(4), None);

    // A damaged kept version: best.previous/'s verified copy instead, no N.
    std::fs::write(d.join("versions/2/model.onnx"), "edited").unwrap();
    assert_eq!(folder(2), Some(d.join("best.previous")));
    assert_eq!(kept(2), None, "best.previous/ is no kept version");
    // No versions/ (a state dir from before versions were kept): best/, as before.
    std::fs::remove_dir_all(d.join("versions")).unwrap();
    assert_eq!(folder(3), Some(d.join("best")));
    assert_eq!(kept(3), None);
    assert_eq!(folder(1), None);
}

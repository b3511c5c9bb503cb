//! Tests of `webhook`.

use super::*;

fn ev(study: &str, id: &str, kind: &str) -> Event {
    Event {
        v: 1,
        id: id.into(),
        kind: kind.into(),
        study: study.into(),
        trial: None,
        time: "t".into(),
        message: String::new(),
        data: serde_json::json!({}),
    }
}

#[test]
fn redact_hides_passwords_and_query_values_and_is_idempotent() {
    let cases = [
        ("https://hooks.example/x", "https://hooks.example/x"),
        (
            "https://bot:s3cret@hooks.example:8443/p?token=abc&room=ml#frag",
            "https://***@hooks.example:8443/p?token=***&room=***#frag",
        ),
        ("http://user@h/?flag", "http://***@h/?flag"),
        ("http://h/a@b", "http://h/a@b"),
    ];
    for (raw, want) in cases {
        let got = crate::config::redact_url(raw);
        assert_eq!(got, want, "{raw}");
        assert_eq!(crate::config::redact_url(&got), got, "idempotent: {raw}");
        assert!(!got.contains("s3cret") && !got.contains("abc"), "{got}");
    }
    assert_eq!(
        redact_in("cannot connect to http://a:b@h/x?t=1: refused"),
        "cannot connect to http://***@h/x?t=*** refused"
    );
}

#[test]
fn a_redirect_is_a_retried_failure_naming_its_target_never_final() {
    let at = || {
        Some(crate::config::redact_url(
            "https://u:pw@elsewhere/hook?key=k",
        ))
    };
    match judge(301, at) {
        Attempt::Retry(Some(301), why) => {
            assert!(why.contains("https://***@elsewhere/hook?key=***"), "{why}");
            assert!(!why.contains("pw"), "{why}");
        }
        _ => panic!("301 must be retried, not final"),
    }
    assert!(matches!(judge(308, || None), Attempt::Retry(Some(308), _)));
    assert!(matches!(judge(204, || None), Attempt::Ok(204)));
    assert!(matches!(judge(404, || None), Attempt::Final(404)));
    assert!(matches!(judge(503, || None), Attempt::Retry(Some(503), _)));
}

#[test]
fn pending_is_the_latest_studys_chosen_undelivered_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path(), None).unwrap();
    for e in [
        ev("old", "old:new_best:t0", "new_best"),
        ev("s", "s:new_best:t0", "new_best"),
        ev("s", "s:trial_started:t1", "trial_started"),
        ev("s", "s:new_best:t1", "new_best"),
        ev("s", "s:target_reached", "target_reached"),
    ] {
        log.emit(e).unwrap();
    }
    let cfg = WebhookConfig {
        urls: vec!["http://a".into(), "http://b".into()],
        events: ["new_best", "target_reached"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        secret: None,
        attempts: 1,
        backoff: Duration::ZERO,
        timeout: Duration::from_secs(1),
    };
    let d = |event: &str, url: &str, status: &str| Delivery {
        v: 1,
        event: event.into(),
        url: url.into(),
        status: status.into(),
        attempts: 1,
        http_status: None,
        error: None,
        time: "t".into(),
    };
    let past = vec![
        d("s:new_best:t0", "http://a", "delivered"),
        d("s:new_best:t0", "http://b", "failed"),
        d("s:new_best:t1", "http://a", "rejected"),
    ];
    let got: Vec<(String, String)> = pending(&EventLog::path(dir.path()), &past, &cfg)
        .into_iter()
        .map(|(e, u)| (e.id, u))
        .collect();
    let want = [
        ("s:new_best:t0", "http://b"),
        ("s:new_best:t1", "http://b"),
        ("s:target_reached", "http://a"),
        ("s:target_reached", "http://b"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (e, u) in want {
        assert!(got.contains(&(e.to_string(), u.to_string())), "{e} {u}");
    }
}

//! Layering and validation of the options.
use super::*;

fn args() -> Options {
    Options::default()
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let c = Config::merge(&args(), Options::default()).unwrap();
    assert_eq!(c.seed, 1);
    assert_eq!(c.target_accuracy, 0.99);
    assert_eq!(c.val_size, None, "a tenth of the data, at most 5,000");
    assert_eq!(c.checkpoint_every.interval, Some(Duration::from_secs(30)));
}

#[test]
fn flag_beats_file_beats_default() {
    let file = Options {
        seed: Some(7),
        epochs: Some(3),
        ..Default::default()
    };
    let a = Options {
        seed: Some(9),
        ..args()
    };
    let c = Config::merge(&a, file).unwrap();
    assert_eq!(c.seed, 9, "flag wins over file");
    assert_eq!(c.epochs, Some(3), "file wins over default");
}

#[test]
fn invalid_values_name_their_key() {
    for (a, key) in [
        (
            Options {
                target_accuracy: Some(1.5),
                ..args()
            },
            "target_accuracy",
        ),
        (
            Options {
                target_accuracy: Some(0.0),
                ..args()
            },
            "target_accuracy",
        ),
        (
            Options {
                device: Some("tpu".into()),
                ..args()
            },
            "device",
        ),
        (
            Options {
                checkpoint_every: Some("soon".into()),
                ..args()
            },
            "checkpoint_every",
        ),
        (
            Options {
                preset: Some("no-such-preset".into()),
                ..args()
            },
            "preset",
        ),
        (
            Options {
                threads: Some(0),
                ..args()
            },
            "threads",
        ),
        (
            Options {
                ladder: Some("linear,nope".into()),
                ..args()
            },
            "ladder",
        ),
        (
            Options {
                min_accuracy: Some(1.2),
                ..args()
            },
            "min_accuracy",
        ),
        (
            Options {
                promote_margin: Some(-0.1),
                ..args()
            },
            "promote_margin",
        ),
        (
            Options {
                webhook: vec!["ftp://x".into()],
                ..args()
            },
            "webhook",
        ),
        (
            Options {
                webhook_events: Some("new_best,party".into()),
                ..args()
            },
            "webhook_events",
        ),
        (
            Options {
                webhook_secret_file: Some("/nonexistent/secret".into()),
                ..args()
            },
            "webhook_secret_file",
        ),
    ] {
        let err = Config::merge(&a, Options::default()).unwrap_err();
        assert!(err.to_string().contains(key), "{err} should name {key}");
    }
}

#[test]
fn the_original_projects_thresholds_are_expressible() {
    // "tweak the architecture below 80%, aim for 95%", from a TOML file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "target_accuracy = 0.95\nmin_accuracy = 0.80\nladder = \"linear,mlp:4\"\n\
         webhook = [\"http://127.0.0.1:9/hook\"]\nwebhook_events = \"all\"\n",
    )
    .unwrap();
    let a = Options {
        config: Some(path),
        ..args()
    };
    let c = Config::resolve(&a).unwrap();
    assert_eq!((c.target_accuracy, c.min_accuracy), (0.95, 0.80));
    assert_eq!(c.ladder.len(), 2);
    assert_eq!(c.ladder[1].recipe.epochs, 4);
    assert_eq!(c.webhooks, ["http://127.0.0.1:9/hook"]);
    assert!(c.webhook_events.iter().any(|k| k == "trial_started"));
    let d = Config::merge(&args(), Options::default()).unwrap();
    assert_eq!(d.min_accuracy, d.target_accuracy, "defaults to the target");
}

#[test]
fn unknown_file_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, "epochz = 3\n").unwrap();
    let err = read_file(&path).unwrap_err().to_string();
    assert!(err.contains("t.toml") && err.contains("epochz"), "{err}");
}

#[test]
fn metrics_addr_is_off_by_default_and_validated() {
    let c = Config::merge(&args(), Options::default()).unwrap();
    assert_eq!(c.metrics_addr, None);
    let a = Options {
        metrics_addr: Some("127.0.0.1:9464".into()),
        ..args()
    };
    let c = Config::merge(&a, Options::default()).unwrap();
    assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    let file = Options {
        metrics_addr: Some("0.0.0.0:9464".into()),
        ..Default::default()
    };
    let a = Options {
        metrics_addr: Some("off".into()),
        ..args()
    };
    assert_eq!(
        Config::merge(&a, file).unwrap().metrics_addr,
        None,
        "flag turns it off"
    );
    let a = Options {
        metrics_addr: Some("localhost".into()),
        ..args()
    };
    let err = Config::merge(&a, Options::default()).unwrap_err();
    assert!(err.to_string().contains("metrics_addr"), "{err}");
}

#[test]
fn durations_and_intervals_parse() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("ten").is_err());
    let e = parse_checkpoint_every("500,30s").unwrap();
    assert_eq!(
        (e.steps, e.interval),
        (Some(500), Some(Duration::from_secs(30)))
    );
    assert!(parse_checkpoint_every("0").is_err());
}

#[test]
fn hostile_durations_and_intervals_are_refused_without_panicking() {
    for s in [
        "18446744073709551616",
        "1e30",
        "99999999999999999999d",
        "1.8e19s",
    ] {
        assert!(parse_duration(s).is_err(), "{s}");
    }
    assert_eq!(
        parse_duration("100d").unwrap(),
        Duration::from_secs(8_640_000)
    );
    for s in ["5,5s,5", "5s,6s", "0s", "500,", ",", "", "0ms,5"] {
        assert!(parse_checkpoint_every(s).is_err(), "{s}");
    }
    let watchdog = |w: &str| {
        Config::merge(
            &Options {
                watchdog: Some(w.into()),
                ..args()
            },
            Options::default(),
        )
    };
    for w in ["0s", "0", "500ms", "18446744073709551616s"] {
        let err = watchdog(w).unwrap_err().to_string();
        assert!(err.contains("watchdog"), "{w}: {err}");
    }
    watchdog("1s").unwrap();
}

#[test]
fn threads_epochs_and_batch_are_capped_naming_the_key() {
    for (a, key) in [
        (
            Options {
                threads: Some(10_000),
                ..args()
            },
            "threads",
        ),
        (
            Options {
                epochs: Some(u32::MAX),
                ..args()
            },
            "epochs",
        ),
        (
            Options {
                batch_size: Some(i64::MAX),
                ..args()
            },
            "batch_size",
        ),
        (
            Options {
                max_time: Some("0s".into()),
                ..args()
            },
            "max_time",
        ),
    ] {
        let err = Config::merge(&a, Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let ok = Options {
        threads: Some(max_threads()),
        ..args()
    };
    Config::merge(&ok, Options::default()).unwrap();
}

#[test]
fn threads_adapt_to_a_busy_cpu_unless_fixed_by_flag_or_file() {
    assert!(
        !Config::merge(&args(), Options::default())
            .unwrap()
            .fixed_threads
    );
    let on = Options {
        fixed_threads: true,
        ..Default::default()
    };
    assert!(
        Config::merge(&on.clone(), Options::default())
            .unwrap()
            .fixed_threads
    );
    assert!(Config::merge(&args(), on).unwrap().fixed_threads);
    let file = Options::parse_file("fixed_threads = true").unwrap();
    assert!(file.fixed_threads);
}

//! Command dispatch: each subcommand as a function of parsed flags and the
//! stop flag (injected, so tests and embedders can drive shutdown).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{parse_duration, Command, CommonArgs, Config, ConfigError, LogFormat};
use crate::exit;
use crate::pipeline::daemon::{self, StudyRequest};
use crate::pipeline::study::{self, Context};
use crate::pipeline::webhook::{self, WebhookConfig};
use crate::pipeline::{promote, StudyEnd};
use crate::store;
use crate::telemetry::{self, heartbeat};
use crate::train::{Progress, StopFlag};

/// How long a finishing process waits for webhook deliveries still queued
/// (what is left is retried at the next start).
const WEBHOOK_GRACE: Duration = Duration::from_secs(15);

/// Runs a parsed command; returns the process exit status.
pub fn run(command: Command, stop: StopFlag) -> anyhow::Result<u8> {
    match command {
        Command::Train(args) => chain(&args, stop, Mode::Train),
        Command::Run(args) => chain(&args, stop, Mode::Daemon),
        Command::Trial(args) => {
            let cfg = Config::resolve(&args.common)?;
            let rt = runtime()?;
            let (_lock, progress, live, _http) = prepare(&cfg, &rt)?;
            live.training
                .store(true, std::sync::atomic::Ordering::Relaxed);
            crate::katib::run(&args, &cfg, &stop, &progress)
        }
        Command::Presets { json } => {
            print_presets(json)?;
            Ok(exit::OK)
        }
        Command::Status(args) => crate::status::print(&args.state_dir, args.json).map(|_| exit::OK),
        Command::Health(args) => {
            let max_age = parse_duration(&args.max_age).map_err(|what| ConfigError::Invalid {
                key: "max_age".into(),
                what,
            })?;
            match heartbeat::check(&args.state_dir, max_age) {
                Ok(msg) => {
                    println!("{msg}");
                    Ok(exit::OK)
                }
                Err(msg) => {
                    println!("unhealthy: {msg}");
                    Ok(1)
                }
            }
        }
        Command::Rollback(args) => rollback(&args.state_dir, args.json),
        Command::Predict(args) => crate::predict::run(&args),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One study, then exit with its outcome.
    Train,
    /// Study, then idle until a new study is requested or a stop.
    Daemon,
}

/// The process's tokio runtime: HTTP endpoints and the control plane's
/// tasks (training keeps its own thread).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trainerd-rt")
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// What [`prepare`] sets up, held for the process's lifetime.
type Prepared = (
    store::StateLock,
    Arc<Progress>,
    heartbeat::Liveness,
    Option<telemetry::http::HttpServer>,
);

/// Prepares the process for training: logging, threads, state dir, lock,
/// heartbeat, the HTTP endpoint.
fn prepare(cfg: &Config, rt: &tokio::runtime::Runtime) -> anyhow::Result<Prepared> {
    telemetry::logging::init(cfg.log_format);
    tch::set_num_threads(cfg.threads as i32);
    tracing::debug!(malloc = ?crate::train::malloc::tune(), "allocator thresholds");
    store::check_writable(&cfg.state_dir)?;
    let lock = store::StateLock::acquire(&cfg.state_dir)?;
    let progress = Arc::new(Progress::default());
    let live = heartbeat::Liveness::default();
    // Tests set TRAINERD_HEARTBEAT_MS to watch progress closely; 5 s otherwise.
    let every = std::env::var("TRAINERD_HEARTBEAT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    heartbeat::spawn(
        cfg.state_dir.clone(),
        progress.clone(),
        live.clone(),
        every,
        cfg.watchdog,
    );
    let http = rt.block_on(telemetry::http::start(cfg, &progress))?;
    telemetry::bar::spawn_if_terminal(progress.clone(), cfg.log_format != LogFormat::Json);
    Ok((lock, progress, live, http))
}

/// `train` and `run`: prepare, start the webhook sink, then the study (or
/// the daemon loop); the heartbeat judges progress only while a trial trains.
fn chain(args: &CommonArgs, stop: StopFlag, mode: Mode) -> anyhow::Result<u8> {
    let cfg = Config::resolve(args)?;
    let rt = runtime()?;
    let (_lock, progress, live, _http) = prepare(&cfg, &rt)?;
    let notifier = webhook::spawn(
        &cfg.state_dir,
        WebhookConfig {
            urls: cfg.webhooks.clone(),
            events: cfg.webhook_events.iter().cloned().collect(),
            secret: cfg.webhook_secret.as_ref().map(|s| s.0.clone()),
            attempts: 5,
            // Tests shorten the retry backoff with TRAINERD_WEBHOOK_BACKOFF_MS.
            backoff: std::env::var("TRAINERD_WEBHOOK_BACKOFF_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::from_millis(500), Duration::from_millis),
            timeout: Duration::from_secs(10),
        },
    )
    .with_context(|| format!("starting the webhook sink in {}", cfg.state_dir.display()))?;
    let ctx = Context {
        cfg: &cfg,
        stop: &stop,
        progress: &progress,
        live: &live,
        notify: notifier.as_ref().map(|n| n.sender()),
        force_new: false,
    };
    let end = match mode {
        Mode::Train => study::run_study(&ctx),
        Mode::Daemon => {
            let (tx, requests) = mpsc::channel::<StudyRequest>();
            // The watcher starts once the data set is there (downloads included),
            // so its first look is the data the first study trains on.
            crate::data::ensure_mnist(&cfg.data_dir, &cfg.mnist_mirrors)?;
            let watcher = crate::watch::Watcher::spawn(
                crate::watch::WatchPaths::from_config(&cfg, args.config.as_deref()),
                crate::watch::WatchOptions::from_config(&cfg),
            );
            match watcher {
                Ok(w) => bridge_watcher(w, tx, args.clone(), stop.clone()),
                Err(e) => {
                    tracing::warn!("workspace watcher not started, no automatic retraining: {e}")
                }
            }
            daemon::run(cfg.clone(), ctx, &requests)
        }
    };
    if let Some(n) = notifier {
        let grace = if stop.is_raised() {
            Duration::from_secs(3)
        } else {
            WEBHOOK_GRACE
        };
        n.finish(grace);
    }
    let end = end.context("training")?;
    if end == StudyEnd::Stopped {
        tracing::info!("stopped; exiting {}", exit::STOPPED);
    }
    Ok(end.exit_code())
}

/// `trainerd rollback`: swap `best/` and `best.previous/`.
fn rollback(state_dir: &std::path::Path, json: bool) -> anyhow::Result<u8> {
    match promote::rollback(state_dir)? {
        Some(card) => {
            if json {
                println!("{}", serde_json::json!({"rolled_back": true, "best": card}));
            } else {
                println!(
                    "rolled back: best/ is now trial {} ({}) of study {}, validation accuracy {:.4}",
                    card.trial, card.preset, card.study, card.val_accuracy
                );
            }
            Ok(exit::OK)
        }
        None => {
            if json {
                println!("{}", serde_json::json!({"rolled_back": false}));
            } else {
                println!(
                    "nothing to roll back to: {} holds no previous champion",
                    state_dir.join("best.previous").display()
                );
            }
            Ok(1)
        }
    }
}

fn print_presets(json: bool) -> anyhow::Result<()> {
    use crate::model::{preset, PRESET_NAMES};
    if json {
        let specs: Vec<_> = PRESET_NAMES.iter().filter_map(|(n, _)| preset(n)).collect();
        println!("{}", serde_json::to_string_pretty(&specs)?);
    } else {
        for (name, about) in PRESET_NAMES {
            println!("{name:<10} {about}");
        }
    }
    Ok(())
}

/// Turns the watcher's events into study requests for the daemon loop. A
/// changed config is validated first: a bad one is logged and the running
/// configuration kept.
fn bridge_watcher(
    w: crate::watch::Watcher,
    tx: mpsc::Sender<StudyRequest>,
    args: CommonArgs,
    stop: StopFlag,
) {
    use crate::watch::WatchReason;
    use std::sync::mpsc::RecvTimeoutError;
    let spawned = std::thread::Builder::new()
        .name("watch-bridge".into())
        .spawn(move || loop {
            match w.events().recv_timeout(Duration::from_millis(500)) {
                Ok(ev) if ev.retrain() => {
                    let config_changed = ev
                        .reasons
                        .iter()
                        .any(|r| matches!(r, WatchReason::ConfigChanged { .. }));
                    let config = if config_changed {
                        match Config::resolve(&args) {
                            Ok(c) => Some(Box::new(c)),
                            Err(e) => {
                                tracing::warn!("new config rejected, keeping the running one: {e}");
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    tracing::info!(reasons = ?ev.reasons, commit = ?ev.commit, "workspace changed");
                    let request = StudyRequest {
                        reason: format!("{:?}", ev.reasons),
                        config,
                        force: true,
                    };
                    if tx.send(request).is_err() {
                        break;
                    }
                }
                Ok(ev) => {
                    tracing::warn!(reasons = ?ev.reasons, "workspace input ignored until fixed")
                }
                Err(RecvTimeoutError::Timeout) if stop.is_raised() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("watch bridge not started: {e}");
    }
}

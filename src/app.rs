//! Command dispatch: each subcommand as a function of parsed flags and its
//! stop source (injected, so tests and embedders can drive shutdown).
//! `train`, `run` and `trial` start one tokio runtime and hand the process
//! to the control plane (`control`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::Command;
use crate::config::{parse_duration, Config, ConfigError, LogFormat, Options};
use crate::control::stops::{self, StopRequest, StopSource};
use crate::control::trainer::Shared;
use crate::control::{self, Ending, Inputs, Mode};
use crate::exit::Outcome;
use crate::katib::TrialSettings;
use crate::pipeline::webhook::{self, WebhookConfig};
use crate::store;
use crate::telemetry::{self, heartbeat};
use crate::train::{Progress, StopFlag};

/// How long a finishing process waits for webhook deliveries still queued
/// (what is left is retried at the next start).
const WEBHOOK_GRACE: Duration = Duration::from_secs(15);

/// Runs a parsed command; returns how it ended.
pub fn run(command: Command, stops: StopSource) -> anyhow::Result<Ending> {
    let done = |outcome| Ok(Ending::clean(outcome));
    match command {
        Command::Train(args) => supervise(&args, stops, Kind::Train),
        Command::Run(args) => supervise(&args, stops, Kind::Daemon),
        Command::Trial(args) => {
            let settings = Box::new(args.settings());
            supervise(&args.common, stops, Kind::Trial(settings))
        }
        Command::Presets(args) => {
            crate::catalog::run(&args.request()?)?;
            done(Outcome::Done)
        }
        Command::Status(args) => {
            crate::status::print(&args.state_dir, args.json)?;
            done(Outcome::Done)
        }
        Command::Health(args) => {
            let max_age = parse_duration(&args.max_age).map_err(|what| ConfigError::Invalid {
                key: "max_age".into(),
                what,
            })?;
            match heartbeat::check(&args.state_dir, max_age) {
                Ok(msg) => {
                    println!("{msg}");
                    done(Outcome::Done)
                }
                Err(msg) => {
                    println!("unhealthy: {msg}");
                    done(Outcome::Declined)
                }
            }
        }
        Command::Rollback(args) => match args.to {
            Some(n) => done(rollback_to(&args.state_dir, n, args.json)?),
            None => done(rollback(&args.state_dir, args.json)?),
        },
        Command::Models(args) => {
            crate::versions::command::print(&args.state_dir, args.json)?;
            done(Outcome::Done)
        }
        Command::Predict(args) => {
            crate::predict::run(&args.request()?)?;
            done(Outcome::Done)
        }
        Command::Export(args) => {
            crate::export::command::run(&args.request())?;
            done(Outcome::Done)
        }
        Command::Serve(args) => done(crate::serve::run(&args.options()?, args.process()?, stops)?),
    }
}

/// Which training command.
enum Kind {
    /// One study, then exit with its outcome.
    Train,
    /// Study, then idle until a new study is requested or a stop.
    Daemon,
    /// One trial from flags (Katib).
    Trial(Box<TrialSettings>),
}

/// The process's tokio runtime: the control task, HTTP, heartbeat and
/// webhook tasks (training keeps its own thread).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("trainerd-rt")
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// `train`, `run`, `trial`: the runtime, the stop listener (before anything
/// else, so an early SIGTERM is not lost), then the supervised command. An
/// abandoned trainer is not waited for (nor are its blocking tasks).
fn supervise(args: &Options, source: StopSource, kind: Kind) -> anyhow::Result<Ending> {
    let rt = runtime()?;
    let stop = StopFlag::default();
    let requests = {
        let _in_runtime = rt.enter();
        stops::listen(source, stop.clone()).context("installing signal handlers")?
    };
    let result = rt.block_on(supervised(args, stop, requests, kind));
    if result.as_ref().is_ok_and(|e| e.abandon) {
        rt.shutdown_background();
    } else {
        // Blocking tasks still running (a webhook request) are not waited for long.
        rt.shutdown_timeout(Duration::from_millis(500));
    }
    result
}

/// What [`prepare`] sets up, held for the process's lifetime.
struct Prepared {
    _lock: store::StateLock,
    progress: Arc<Progress>,
    live: heartbeat::Liveness,
    beats: heartbeat::Beats,
    _http: Option<telemetry::http::HttpServer>,
    _serve: Option<crate::serve::Server>,
}

/// Prepares the process for training: logging, state dir, lock, heartbeat
/// (its stall reports go to `stalls`), the HTTP endpoint.
async fn prepare(
    cfg: &Config,
    stalls: tokio::sync::mpsc::UnboundedSender<heartbeat::Stall>,
) -> anyhow::Result<Prepared> {
    telemetry::logging::init(cfg.log_format);
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
    let beats = heartbeat::spawn(
        cfg.state_dir.clone(),
        progress.clone(),
        live.clone(),
        every,
        cfg.watchdog,
        stalls,
    );
    let http = telemetry::http::start(cfg, &progress, &live.training).await?;
    let serve = if cfg.serve_addr.is_some() || cfg.grpc_addr.is_some() {
        let mut opts = crate::serve::ServeOptions::new(cfg.state_dir.clone(), cfg.serve_addr);
        opts.grpc_addr = cfg.grpc_addr;
        opts.engine = cfg.engine;
        Some(crate::serve::start(&opts).await?)
    } else {
        None
    };
    telemetry::bar::spawn_if_terminal(progress.clone(), cfg.log_format != LogFormat::Json);
    Ok(Prepared {
        _lock: lock,
        progress,
        live,
        beats,
        _http: http,
        _serve: serve,
    })
}

/// The webhook sink's settings from the config.
fn webhook_config(cfg: &Config) -> WebhookConfig {
    WebhookConfig {
        urls: cfg.webhooks.clone(),
        events: cfg.webhook_events.iter().cloned().collect(),
        secret: cfg.webhook_secret.clone(),
        attempts: 5,
        // Tests shorten the retry backoff with TRAINERD_WEBHOOK_BACKOFF_MS.
        backoff: std::env::var("TRAINERD_WEBHOOK_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(500), Duration::from_millis),
        timeout: Duration::from_secs(10),
    }
}

/// Prepares, starts the webhook sink (`train`, `run`), hands over to the
/// control plane, then lets the sink finish; the heartbeat judges progress
/// only while a trial trains.
async fn supervised(
    args: &Options,
    stop: StopFlag,
    stops: tokio::sync::mpsc::UnboundedReceiver<StopRequest>,
    kind: Kind,
) -> anyhow::Result<Ending> {
    let cfg = Config::resolve(args)?;
    let (stall_tx, stalls) = tokio::sync::mpsc::unbounded_channel();
    let p = prepare(&cfg, stall_tx).await?;
    let notifier = match kind {
        Kind::Trial(_) => None,
        Kind::Train | Kind::Daemon => webhook::spawn(&cfg.state_dir, webhook_config(&cfg))
            .with_context(|| format!("starting the webhook sink in {}", cfg.state_dir.display()))?,
    };
    let mlflow = match (&kind, &cfg.mlflow) {
        (Kind::Train | Kind::Daemon, Some(target)) => {
            let settings = crate::mlflow::Settings::new(target.clone(), cfg.data_dir.clone());
            let next = notifier.as_ref().map(|n| n.sender());
            Some(
                crate::mlflow::spawn(&cfg.state_dir, settings, next).with_context(|| {
                    format!("starting the MLflow sink in {}", cfg.state_dir.display())
                })?,
            )
        }
        _ => None,
    };
    let notify = match &mlflow {
        Some(m) => Some(m.sender()),
        None => notifier.as_ref().map(|n| n.sender()),
    };
    let shared = Shared {
        stop: stop.clone(),
        progress: p.progress.clone(),
        live: p.live.clone(),
        notify,
        supersede: Default::default(),
    };
    let trial = matches!(kind, Kind::Trial(_));
    let mode = match kind {
        Kind::Train => Mode::Train,
        Kind::Daemon => Mode::Daemon(Box::new(args.clone())),
        Kind::Trial(targs) => {
            let tcfg = cfg.clone();
            Mode::Single(Box::new(move |s: &Shared| {
                s.live.begin(&s.progress);
                crate::katib::run(&targs, &tcfg, &s.stop, &s.progress)
            }))
        }
    };
    let mut inputs = Inputs { stops, stalls };
    let ending = control::run(mode, cfg, shared, &mut inputs).await;
    let abandon = ending.as_ref().is_ok_and(|e| e.abandon);
    if !abandon {
        // (Abandoned: a stalled trainer may still hold the counters; the
        // beat before the stall is the truer one, so `p.beats` just drops.)
        p.beats.write_last().await;
    }
    if let Some(m) = mlflow.filter(|_| !abandon) {
        let grace = if stop.is_raised() {
            Duration::from_secs(3)
        } else {
            WEBHOOK_GRACE
        };
        tokio::select! {
            () = m.finish(grace) => {}
            Some(_) = inputs.stops.recv() => {
                tracing::info!("stop requested; not waiting for MLflow (the queue is kept)");
            }
        }
    }
    if let Some(n) = notifier.filter(|_| !abandon) {
        let grace = if stop.is_raised() {
            Duration::from_secs(3)
        } else {
            WEBHOOK_GRACE
        };
        // A stop request now cuts the wait short (nothing is lost: the
        // undelivered are re-sent at the next start).
        tokio::select! {
            () = n.finish(grace) => {}
            Some(_) = inputs.stops.recv() => {
                tracing::info!("stop requested; not waiting for webhook deliveries");
            }
        }
    }
    let ending = if trial {
        ending?
    } else {
        ending.context("training")?
    };
    Ok(ending)
}

/// `trainerd rollback`: swap `best/` and `best.previous/`.
fn rollback(state_dir: &std::path::Path, json: bool) -> anyhow::Result<Outcome> {
    let mlflow = crate::config::mlflow_from_env()?;
    match crate::pipeline::rollback::rollback(state_dir)? {
        Some(card) => {
            crate::mlflow::rolled_back(state_dir, &card, mlflow.as_ref());
            if json {
                println!("{}", serde_json::json!({"rolled_back": true, "best": card}));
            } else {
                println!(
                    "rolled back: best/ is now trial {} ({}) of study {}, validation accuracy {:.4}",
                    card.trial, card.preset, card.study, card.val_accuracy
                );
            }
            Ok(Outcome::Done)
        }
        None => {
            if json {
                println!("{}", serde_json::json!({"rolled_back": false}));
            } else {
                println!(
                    "nothing to roll back to: {} holds no previous champion",
                    crate::state_dir::best_previous(state_dir).display()
                );
            }
            Ok(Outcome::Declined)
        }
    }
}

/// `trainerd rollback --to N`: make kept version N the champion.
fn rollback_to(state_dir: &std::path::Path, n: u64, json: bool) -> anyhow::Result<Outcome> {
    let mlflow = crate::config::mlflow_from_env()?;
    let done = crate::pipeline::rollback::rollback_to(state_dir, n)?;
    let card = &done.card;
    if !done.already {
        crate::mlflow::rolled_back(state_dir, card, mlflow.as_ref());
    }
    if json {
        let v = serde_json::json!({
            "rolled_back": !done.already, "version": n, "previous": done.previous, "best": card,
        });
        println!("{v}");
    } else if done.already {
        println!("version {n} already is the champion (best/); nothing moved");
    } else {
        let accuracy =
            crate::model::card::Intervals::shown(card.val_accuracy, card.intervals.val_interval);
        let previous = done
            .previous
            .map_or("none".into(), |p| format!("version {p}"));
        println!(
            "rolled back: best/ is now version {n}, trial {} ({}) of study {}, validation \
             accuracy {accuracy}; best.previous/ holds {previous}",
            card.trial, card.preset, card.study
        );
    }
    Ok(Outcome::Done)
}

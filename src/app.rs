//! Command dispatch: each subcommand as a function of parsed flags and the
//! stop flag (injected, so tests and embedders can drive shutdown).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{parse_duration, Command, CommonArgs, Config, ConfigError, LogFormat};
use crate::exit;
use crate::pipeline::{self, StudyEnd};
use crate::store;
use crate::telemetry::{self, heartbeat};
use crate::train::{Progress, StopFlag};

/// Runs a parsed command; returns the process exit status.
pub fn run(command: Command, stop: StopFlag) -> anyhow::Result<u8> {
    match command {
        Command::Train(args) => train(&args, stop),
        Command::Run(args) => train(&args, stop),
        Command::Trial(args) => {
            let cfg = Config::resolve(&args.common)?;
            let (_lock, progress) = prepare(&cfg)?;
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
    }
}

/// Prepares the process for training: logging, threads, state dir, lock, heartbeat.
fn prepare(cfg: &Config) -> anyhow::Result<(store::StateLock, Arc<Progress>)> {
    telemetry::logging::init(cfg.log_format);
    tch::set_num_threads(cfg.threads as i32);
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
    telemetry::http::start(cfg, &progress)?;
    telemetry::bar::spawn_if_terminal(progress.clone(), cfg.log_format != LogFormat::Json);
    live.training
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Ok((lock, progress))
}

fn train(args: &CommonArgs, stop: StopFlag) -> anyhow::Result<u8> {
    let cfg = Config::resolve(args)?;
    let (_lock, progress) = prepare(&cfg)?;
    let end = pipeline::train_study(&cfg, &stop, &progress).context("training")?;
    Ok(match end {
        StudyEnd::TargetReached => exit::OK,
        StudyEnd::BudgetExhausted => exit::BELOW_TARGET,
        StudyEnd::Stopped => exit::STOPPED,
    })
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

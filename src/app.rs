//! Command dispatch: each subcommand as a function of parsed flags and the
//! stop flag (injected, so tests and embedders can drive shutdown).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{parse_duration, Command, CommonArgs, Config, ConfigError};
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

/// Prepares the process for training: config, logging, threads, state dir, lock.
fn train(args: &CommonArgs, stop: StopFlag) -> anyhow::Result<u8> {
    let cfg = Config::resolve(args)?;
    telemetry::logging::init(cfg.log_format);
    tch::set_num_threads(cfg.threads as i32);
    store::check_writable(&cfg.state_dir)?;
    let _lock = store::StateLock::acquire(&cfg.state_dir)?;
    let progress = Arc::new(Progress::default());
    let live = heartbeat::Liveness::default();
    heartbeat::spawn(
        cfg.state_dir.clone(),
        progress.clone(),
        live.clone(),
        Duration::from_secs(5),
        cfg.watchdog,
    );
    live.training
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let end = pipeline::train_study(&cfg, &stop, &progress).context("training")?;
    live.training
        .store(false, std::sync::atomic::Ordering::Relaxed);
    Ok(match end {
        StudyEnd::TargetReached => exit::OK,
        StudyEnd::BudgetExhausted => exit::BELOW_TARGET,
        StudyEnd::Stopped => exit::STOPPED,
    })
}

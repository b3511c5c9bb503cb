//! Configuration: the [`Options`] layers (flags and `TRAINERD_*` variables,
//! read by clap; the TOML config file, read by serde) -> one validated
//! [`Config`]. Precedence: flag > env > file > default. Subsystems read
//! `Config` (or settings built from it), never the option layers.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod chain;
mod choices;
mod data_keys;
mod mlflow;
mod options;
mod parse;

pub use chain::redact_url;
use choices::choice;
pub use choices::{DeviceChoice, EngineChoice, LogFormat};
pub use data_keys::load_options;
use data_keys::{classes, data_source, memory_budget};
pub use mlflow::{from_env as mlflow_from_env, parse_uri as parse_mlflow_uri, MlflowTarget};
pub use options::{Options, MAX_CONFIG_BYTES};
use parse::duration_at_least;
pub use parse::{parse_checkpoint_every, parse_duration, MAX_DURATION};

/// A configuration problem; always names the key or file. Exit 78.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {key}: {what}")]
    Invalid { key: String, what: String },
    #[error("{path}: {what} (fix the file or pass a valid --config)")]
    File { path: PathBuf, what: String },
    /// A variable trainerd reads holds something it cannot use.
    #[error("environment variable {var}: {what}")]
    Env { var: String, what: String },
}

impl crate::exit::ExitStatus for ConfigError {
    fn exit_code(&self) -> u8 {
        crate::exit::CONFIG
    }
}

fn invalid(key: &str, what: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        what: what.into(),
    }
}

pub const DEFAULT_STATE_DIR: &str = "trainerd-state";
pub const DEFAULT_DATA_DIR: &str = "data";

/// When to checkpoint: every `steps` steps and/or every `interval` of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEvery {
    pub steps: Option<u64>,
    pub interval: Option<Duration>,
}

/// The validated configuration every part of trainerd reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub seed: u64,
    pub preset: String,
    pub epochs: Option<u32>,
    pub target_accuracy: f64,
    pub max_trials: u32,
    pub max_time: Option<Duration>,
    pub device: DeviceChoice,
    pub threads: usize,
    /// `--fixed-threads`: the count never drops while the CPU is contended.
    pub fixed_threads: bool,
    pub checkpoint_every: CheckpointEvery,
    pub keep_checkpoints: usize,
    /// Promotions kept in `versions/` (besides the champion's and the previous one's).
    pub keep_versions: usize,
    /// `None`: a tenth of the training set, at most 5,000 (`data::split`).
    pub val_size: Option<usize>,
    pub batch_size: Option<i64>,
    pub lr: Option<f64>,
    pub watchdog: Duration,
    pub log_format: LogFormat,
    /// Where to download MNIST from when the data dir is empty.
    pub mnist_mirrors: Vec<String>,
    /// Where `/metrics` and `/healthz` listen (`None`: no endpoint).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the champion is served (`None`: not served).
    pub serve_addr: Option<std::net::SocketAddr>,
    /// Also serve the champion over gRPC here (`--grpc-addr`).
    pub grpc_addr: Option<std::net::SocketAddr>,
    /// The engine of the served forward pass and of the evaluation passes.
    pub engine: EngineChoice,
    /// Watch the workspace by polling (network filesystems miss file events).
    pub watch_poll: bool,
    /// Remote to fetch and fast-forward the workspace checkout from.
    pub git_remote: Option<String>,
    pub git_fetch_every: Duration,
    /// Rungs the study escalates through (see `search::strategy`).
    pub ladder: Vec<crate::model::TrialSpec>,
    pub min_accuracy: f64,
    pub promote_margin: f64,
    pub prune_margin: f64,
    pub webhooks: Vec<String>,
    /// Event kinds sent to webhooks.
    pub webhook_events: Vec<String>,
    pub webhook_secret: Option<crate::signing::Keys>,
    /// The push hooks' secret (`hooks`).
    pub hook_secret: Option<crate::signing::Secret>,
    /// Bytes the data set may take in memory; more is refused before it is read.
    pub memory_budget: u64,
    /// `--classes K`, else `None`: the classes are the training labels.
    pub classes: Option<usize>,
    /// `--data-format`, `--image-size` (see `data::source`).
    pub data_source: crate::data::source::SourceOptions,
    /// `--tensorboard`: write each trial's scalars as TensorBoard event files.
    pub tensorboard: bool,
    /// `--mlflow-uri`, `--mlflow-model`: where trials and promotions are logged.
    pub mlflow: Option<MlflowTarget>,
}

/// Ladder used when none is configured: softmax regression up to the deep
/// batch-norm CNN with augmentation (see `model::PRESET_NAMES`). `fast:2`
/// sits between `fast` and `bn3`: one epoch of `fast` reaches 99.0% test but
/// its validation accuracy is often just under 0.99, and two epochs get there
/// for a quarter of bn3's cost.
pub const DEFAULT_LADDER: &str = "linear,mlp,fast,fast:2,bn3,deep";

impl Config {
    /// Layers flags/env (already merged by clap) over the config file they
    /// name over the defaults, and validates.
    pub fn resolve(args: &Options) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => Options::default(),
        };
        let cfg = Self::merge(args, file)?;
        Ok(cfg)
    }

    /// `flags` over `file`, validated.
    fn merge(flags: &Options, file: Options) -> Result<Config, ConfigError> {
        Self::validate(&flags.clone().over(file))
    }

    /// The defaults where `o` sets nothing; every value checked, naming its key.
    pub fn validate(o: &Options) -> Result<Config, ConfigError> {
        let target_accuracy = o.target_accuracy.unwrap_or(crate::data::DEFAULT_TARGET);
        if !(target_accuracy > 0.0 && target_accuracy <= 1.0) {
            return Err(invalid(
                "target_accuracy",
                format!("{target_accuracy} is outside (0, 1]"),
            ));
        }
        let chain = chain::settings(o, target_accuracy)?;
        let mlflow = mlflow::target(o)?;
        let data_source = data_source(o)?;
        let threads = o.threads.unwrap_or_else(default_threads);
        let max_threads = max_threads();
        if !(1..=max_threads).contains(&threads) {
            return Err(invalid(
                "threads",
                format!(
                    "{threads} is outside 1..={max_threads} (4 per core this process may use, \
                     at most {THREADS_CAP}); more threads than that only wait on each other"
                ),
            ));
        }
        let epochs = within(o.epochs, "epochs", 1..=crate::model::limits::MAX_EPOCHS)?;
        let keep_versions = o.keep_versions.unwrap_or(10);
        if keep_versions == 0 {
            return Err(invalid(
                "keep_versions",
                "must be at least 1 (the newest promotion is always kept)",
            ));
        }
        let max_trials = o.max_trials.unwrap_or(12);
        if max_trials == 0 {
            return Err(invalid("max_trials", "must be at least 1"));
        }
        let batch_size = within(
            o.batch_size,
            "batch_size",
            1..=crate::model::limits::MAX_BATCH,
        )?;
        let lr = o.lr;
        if matches!(lr, Some(lr) if !(lr > 0.0 && lr.is_finite())) {
            return Err(invalid("lr", "must be a positive number"));
        }
        let second = Duration::from_secs(1);
        let max_time = match o.max_time.as_deref() {
            Some(s) => Some(duration_at_least(s, second, "max_time")?),
            None => None,
        };
        let watchdog = match o.watchdog.as_deref() {
            Some(s) => duration_at_least(s, second, "watchdog")?,
            None => Duration::from_secs(600),
        };
        let checkpoint_every =
            parse_checkpoint_every(&o.checkpoint_every.clone().unwrap_or_else(|| "30s".into()))
                .map_err(|w| invalid("checkpoint_every", w))?;
        let device = choice(o.device.as_deref(), "device", DeviceChoice::NAMES)?;
        let log_format = choice(o.log_format.as_deref(), "log_format", LogFormat::NAMES)?;
        let metrics_addr = address(o.metrics_addr.as_deref(), "metrics_addr", "127.0.0.1:9464")?;
        let serve_addr = address(o.serve_addr.as_deref(), "serve_addr", "0.0.0.0:8000")?;
        let grpc_addr = address(o.grpc_addr.as_deref(), "grpc_addr", "0.0.0.0:8001")?;
        let engine = EngineChoice::parse(o.engine.as_deref())?;
        let git_fetch_every = match o.git_fetch_every.as_deref() {
            Some(s) => duration_at_least(s, second, "git_fetch_every")?,
            None => Duration::from_secs(60),
        };
        let preset = o.preset.clone().unwrap_or_else(|| "fast".into());
        crate::model::resolve_preset(&preset).map_err(|w| invalid("preset", w))?;
        let memory_budget = memory_budget(o)?;
        let classes = classes(o)?;
        let tensorboard = choice(
            o.tensorboard.as_deref(),
            "tensorboard",
            &[("on", true), ("off", false)],
        )?;
        Ok(Config {
            data_dir: o
                .data_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            state_dir: o
                .state_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            seed: o.seed.unwrap_or(1),
            preset,
            epochs,
            target_accuracy,
            max_trials,
            max_time,
            device,
            threads,
            fixed_threads: o.fixed_threads,
            checkpoint_every,
            keep_checkpoints: o.keep_checkpoints.unwrap_or(3).max(1),
            keep_versions,
            val_size: o.val_size,
            batch_size,
            lr,
            watchdog,
            log_format,
            mnist_mirrors: match o.mnist_mirrors.clone() {
                Some(list) => crate::data::download::parse_mirrors(&list),
                None => crate::data::download::default_mirrors(),
            },
            metrics_addr,
            serve_addr,
            grpc_addr,
            engine,
            watch_poll: o.watch_poll,
            git_remote: o.git_remote.clone().filter(|r| !r.is_empty()),
            git_fetch_every,
            ladder: chain.ladder,
            min_accuracy: chain.min_accuracy,
            promote_margin: chain.promote_margin,
            prune_margin: chain.prune_margin,
            webhooks: chain.webhooks,
            webhook_events: chain.webhook_events,
            webhook_secret: chain.webhook_secret,
            hook_secret: chain.hook_secret,
            memory_budget,
            classes,
            data_source,
            tensorboard,
            mlflow,
        })
    }
}

/// `value` when it lies in `range` (or is unset).
fn within<T: PartialOrd + std::fmt::Display + std::fmt::Debug>(
    value: Option<T>,
    key: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(v) if !range.contains(&v) => Err(invalid(key, format!("{v} is outside {range:?}"))),
        v => Ok(v),
    }
}

/// A listening address, or `None` for unset, empty or `off`.
/// An address setting (`off` or empty: none), or an error naming `key`.
pub(crate) fn address(
    value: Option<&str>,
    key: &str,
    example: &str,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    match value {
        None | Some("" | "off") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            invalid(
                key,
                format!("{s:?} is not an address such as {example} (or off)"),
            )
        }),
    }
}

/// Most intra-op threads `--threads` accepts, whatever the core count: a
/// pool of 10,000 threads stalled start-up for over a minute (issue 18).
pub const THREADS_CAP: usize = 256;

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// 4 threads per core this process may use, at most [`THREADS_CAP`].
pub fn max_threads() -> usize {
    default_threads().saturating_mul(4).clamp(1, THREADS_CAP)
}

fn read_file(path: &Path) -> Result<Options, ConfigError> {
    let text =
        crate::model::read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError::File {
            path: path.into(),
            what: format!("cannot read: {e}"),
        })?;
    Options::parse_file(&text).map_err(|what| ConfigError::File {
        path: path.into(),
        what,
    })
}

#[cfg(test)]
mod tests;

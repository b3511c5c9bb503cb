//! Configuration: clap flags (each also a `TRAINERD_*` env var) + a TOML file
//! -> one validated [`Config`]. Precedence: flag > env > file > default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

mod env;
pub use env::{check_environment, read_vars};

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

#[derive(Debug, Parser)]
#[command(
    name = "trainerd",
    version,
    about = "A crash-proof training daemon for libtorch models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: study -> promote -> notify -> watch -> retrain ...
    Run(CommonArgs),
    /// Run one study to its end (target reached or budget spent), then exit.
    Train(CommonArgs),
    /// Run exactly one trial from flags (for Katib): metric lines on stdout.
    Trial(crate::katib::TrialArgs),
    /// Print what the state dir says.
    Status(StatusArgs),
    /// List the architecture presets (`--json`: full trial specs).
    Presets {
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the daemon is alive and making progress (Docker HEALTHCHECK).
    Health(HealthArgs),
    /// Swap the champion (best/) with the previous one (best.previous/).
    Rollback(StatusArgs),
    /// Classify images (IDX or PNG files) with the champion model.
    Predict(PredictArgs),
    /// Write the champion (or a trial's checkpoint) as ONNX, TorchScript or a Triton repository.
    Export(ExportArgs),
    /// Serve the champion over the Open Inference Protocol v2 (REST), hot-swapped on promotion.
    Serve(ServeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// State directory to serve `best/` from (only read: several servers may share one).
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "TRAINERD_SERVE_ADDR", default_value = "0.0.0.0:8000")]
    pub addr: String,
    /// How long the batcher waits for more requests to join a forward pass.
    #[arg(long, env = "TRAINERD_BATCH_WINDOW", default_value = "2ms")]
    pub batch_window: String,
    /// Most images in one forward pass.
    #[arg(long, env = "TRAINERD_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,
    /// Open connections at most (more wait in the kernel's backlog).
    #[arg(long, env = "TRAINERD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most memory a champion's weights may take, e.g. `4G` (default: 3/4 of the memory limit).
    #[arg(long, env = "TRAINERD_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// libtorch threads for the forward pass (default: libtorch's choice).
    #[arg(long, env = "TRAINERD_THREADS")]
    pub threads: Option<usize>,
    /// Log format: auto | human | json
    #[arg(long, env = "TRAINERD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Notice promotions by polling `best/` every 2 s instead of file events
    /// (network filesystems, where another node's renames raise no event).
    #[arg(long, env = "TRAINERD_WATCH_POLL")]
    pub watch_poll: bool,
    /// Do not serve: ask the server at `--addr` whether it is ready (exit 0) or not (exit 1);
    /// for container health checks.
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// What to write (`all` adds the weights).
    #[arg(long, value_enum, default_value = "all")]
    pub format: crate::export::Format,
    /// Directory to write into (created if needed; not inside the state dir's best/).
    #[arg(long)]
    pub out: PathBuf,
    /// Export this trial's newest checkpoint (of the study in progress) instead of the champion.
    #[arg(long)]
    pub trial: Option<u32>,
    /// The study of `--trial` (default: the newest that started it).
    #[arg(long, requires = "trial")]
    pub study: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PredictArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// One JSON object per image instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With `--json`: add each image's raw logits (to compare exported models with).
    #[arg(long, requires = "json")]
    pub logits: bool,
    /// Most memory the champion's weights may take, e.g. `4G` (default: 3/4 of the memory limit).
    #[arg(long, env = "TRAINERD_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// IDX image files (optionally gzipped) or PNG images of the model's input size.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Flags shared by `run` and `train`. All optional here: unset values fall
/// back to the config file, then to the defaults in [`Config`].
#[derive(Debug, Args, Default, Clone)]
pub struct CommonArgs {
    /// TOML config file (keys as the flags, with underscores).
    #[arg(long, env = "TRAINERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the data set: IDX files (MNIST layout) or image folders.
    #[arg(long, env = "TRAINERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// State directory: checkpoints, journal, events, best model.
    #[arg(long, env = "TRAINERD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seed for every random draw (init, split, shuffling, dropout, augmentation).
    #[arg(long, env = "TRAINERD_SEED")]
    pub seed: Option<u64>,
    /// Architecture preset name, or a path to an architecture/trial JSON or TOML file.
    #[arg(long, visible_alias = "arch", env = "TRAINERD_PRESET")]
    pub preset: Option<String>,
    /// Epochs per trial (overrides the preset's recipe).
    #[arg(long, env = "TRAINERD_EPOCHS")]
    pub epochs: Option<u32>,
    /// Validation accuracy that ends the study, in (0, 1].
    #[arg(long, env = "TRAINERD_TARGET_ACCURACY")]
    pub target_accuracy: Option<f64>,
    /// Most trials a study may run.
    #[arg(long, env = "TRAINERD_MAX_TRIALS")]
    pub max_trials: Option<u32>,
    /// Wall-time budget of a study, e.g. `90m`, `2h`, `300s`.
    #[arg(long, env = "TRAINERD_MAX_TIME")]
    pub max_time: Option<String>,
    /// auto | cpu | cuda
    #[arg(long, env = "TRAINERD_DEVICE")]
    pub device: Option<String>,
    /// Intra-op threads for libtorch (default: the cores available).
    #[arg(long, env = "TRAINERD_THREADS")]
    pub threads: Option<usize>,
    /// Checkpoint interval: a step count (`500`) or a duration (`30s`), or both (`500,30s`).
    #[arg(long, env = "TRAINERD_CHECKPOINT_EVERY")]
    pub checkpoint_every: Option<String>,
    /// Checkpoints kept per trial besides the best one.
    #[arg(long, env = "TRAINERD_KEEP_CHECKPOINTS")]
    pub keep_checkpoints: Option<usize>,
    /// Images carved from the training set for validation, stratified by
    /// class [default: a tenth of the training set, at most 5000].
    #[arg(long, env = "TRAINERD_VAL_SIZE")]
    pub val_size: Option<usize>,
    /// Mini-batch size (overrides the preset's recipe).
    #[arg(long, env = "TRAINERD_BATCH_SIZE")]
    pub batch_size: Option<i64>,
    /// Peak learning rate (overrides the preset's recipe).
    #[arg(long, env = "TRAINERD_LR")]
    pub lr: Option<f64>,
    /// No step progress for this long exits 75 (restart me).
    #[arg(long, env = "TRAINERD_WATCHDOG")]
    pub watchdog: Option<String>,
    /// Log format: auto (human on a TTY, JSON otherwise) | human | json
    #[arg(long, env = "TRAINERD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Comma-separated base URLs MNIST is downloaded from when the data dir holds no data set.
    #[arg(long, env = "TRAINERD_MNIST_MIRRORS")]
    pub mnist_mirrors: Option<String>,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (e.g.
    /// `127.0.0.1:9464`; `off` or unset: no endpoint).
    #[arg(long, env = "TRAINERD_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Also serve the champion (Open Inference Protocol v2, as `trainerd serve`) on this
    /// address (e.g. `0.0.0.0:8000`; `off` or unset: not served).
    #[arg(long, env = "TRAINERD_SERVE_ADDR")]
    pub serve_addr: Option<String>,
    /// Watch the workspace by polling instead of file events (network filesystems).
    #[arg(long, env = "TRAINERD_WATCH_POLL")]
    pub watch_poll: bool,
    /// Git remote (name or URL) to fetch and fast-forward the workspace checkout from.
    #[arg(long, env = "TRAINERD_GIT_REMOTE")]
    pub git_remote: Option<String>,
    /// How often to fetch `--git-remote` (e.g. `60s`).
    #[arg(long, env = "TRAINERD_GIT_FETCH_EVERY")]
    pub git_fetch_every: Option<String>,
    /// Presets the study escalates through while below target, smallest first;
    /// `NAME:EPOCHS` sets a rung's schedule length (e.g. `linear,mlp,fast,bn3:12`).
    #[arg(long, env = "TRAINERD_LADDER")]
    pub ladder: Option<String>,
    /// Below this validation accuracy the next trial changes the architecture
    /// (climbs the ladder); at or above it only the recipe is tuned. Default: the target.
    #[arg(long, env = "TRAINERD_MIN_ACCURACY")]
    pub min_accuracy: Option<f64>,
    /// Validation accuracy by which a trial must beat the champion to replace it.
    #[arg(long, env = "TRAINERD_PROMOTE_MARGIN")]
    pub promote_margin: Option<f64>,
    /// Early stopping: a trial trailing the top third of same-length trials by more
    /// than this at epoch 1, 2, 4, ... stops (1 disables).
    #[arg(long, env = "TRAINERD_PRUNE_MARGIN")]
    pub prune_margin: Option<f64>,
    /// Webhook URL to POST events to (repeatable, or a comma list).
    #[arg(long = "webhook", env = "TRAINERD_WEBHOOK_URLS", value_delimiter = ',')]
    pub webhook: Vec<String>,
    /// Event kinds sent to webhooks (comma list, or `all`).
    #[arg(long, env = "TRAINERD_WEBHOOK_EVENTS")]
    pub webhook_events: Option<String>,
    /// File holding the HMAC secret that signs webhook bodies (else env TRAINERD_WEBHOOK_SECRET).
    #[arg(long, env = "TRAINERD_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the secret forges sign push hooks with (`POST /hooks/git`;
    /// else env TRAINERD_HOOK_SECRET; neither: push hooks are refused).
    #[arg(long, env = "TRAINERD_HOOK_SECRET_FILE")]
    pub hook_secret_file: Option<PathBuf>,
    /// Most memory the data set may take, e.g. `4G`, `512M` (default: 3/4 of the
    /// cgroup or machine memory limit); larger data is refused with exit 65.
    #[arg(long, env = "TRAINERD_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// Number of classes K: labels 0..K-1, not all need appear in training
    /// (default: the largest training label + 1, every class present).
    #[arg(long, env = "TRAINERD_CLASSES")]
    pub classes: Option<usize>,
    /// Format of the data dir: `idx` (MNIST layout), `folders`
    /// (train/<class>/*.png|jpg), or `auto` (default: folders when train/ exists).
    #[arg(long, env = "TRAINERD_DATA_FORMAT")]
    pub data_format: Option<String>,
    /// Resize every image of an image-folder set to HxW, e.g. `32x32`
    /// (triangle filter); default: all images must share one size.
    #[arg(long, env = "TRAINERD_IMAGE_SIZE")]
    pub image_size: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct HealthArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Heartbeat older than this means unhealthy.
    #[arg(long, env = "TRAINERD_HEALTH_MAX_AGE", default_value = "120s")]
    pub max_age: String,
}

pub const DEFAULT_STATE_DIR: &str = "trainerd-state";
pub const DEFAULT_DATA_DIR: &str = "data";

/// The same keys as [`CommonArgs`], read from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub seed: Option<u64>,
    pub preset: Option<String>,
    pub epochs: Option<u32>,
    pub target_accuracy: Option<f64>,
    pub max_trials: Option<u32>,
    pub max_time: Option<String>,
    pub device: Option<String>,
    pub threads: Option<usize>,
    pub checkpoint_every: Option<String>,
    pub keep_checkpoints: Option<usize>,
    pub val_size: Option<usize>,
    pub batch_size: Option<i64>,
    pub lr: Option<f64>,
    pub watchdog: Option<String>,
    pub log_format: Option<String>,
    pub mnist_mirrors: Option<String>,
    pub metrics_addr: Option<String>,
    pub serve_addr: Option<String>,
    pub watch_poll: Option<bool>,
    pub git_remote: Option<String>,
    pub git_fetch_every: Option<String>,
    pub ladder: Option<String>,
    pub min_accuracy: Option<f64>,
    pub promote_margin: Option<f64>,
    pub prune_margin: Option<f64>,
    pub webhook: Option<Vec<String>>,
    pub webhook_events: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    pub hook_secret_file: Option<PathBuf>,
    pub memory_budget: Option<String>,
    pub classes: Option<usize>,
    pub data_format: Option<String>,
    pub image_size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

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
    pub checkpoint_every: CheckpointEvery,
    pub keep_checkpoints: usize,
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
}

/// Ladder used when none is configured: softmax regression up to the deep
/// batch-norm CNN with augmentation (see `model::PRESET_NAMES`). `fast:2`
/// sits between `fast` and `bn3`: one epoch of `fast` reaches 99.0% test but
/// its validation accuracy is often just under 0.99, and two epochs get there
/// for a fifth of bn3's cost.
pub const DEFAULT_LADDER: &str = "linear,mlp,fast,fast:2,bn3,deep";

impl Config {
    /// Merges flags/env (already merged by clap) over the file over defaults, and validates.
    pub fn resolve(args: &CommonArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let cfg = Self::merge(args, file)?;
        // The data loader's callers pass only `LoadOptions`: it reads these from here.
        crate::data::source::configure(cfg.data_source);
        Ok(cfg)
    }

    fn merge(a: &CommonArgs, f: FileConfig) -> Result<Config, ConfigError> {
        let target_accuracy = a.target_accuracy.or(f.target_accuracy).unwrap_or(0.99);
        if !(target_accuracy > 0.0 && target_accuracy <= 1.0) {
            return Err(invalid(
                "target_accuracy",
                format!("{target_accuracy} is outside (0, 1]"),
            ));
        }
        let chain = chain_settings(a, &f, target_accuracy)?;
        let data_source = data_source(a, &f)?;
        let threads = a.threads.or(f.threads).unwrap_or_else(default_threads);
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
        let epochs = a.epochs.or(f.epochs);
        let epoch_range = 1..=crate::model::limits::MAX_EPOCHS;
        if let Some(e) = epochs.filter(|e| !epoch_range.contains(e)) {
            return Err(invalid("epochs", format!("{e} is outside {epoch_range:?}")));
        }
        let max_trials = a.max_trials.or(f.max_trials).unwrap_or(12);
        if max_trials == 0 {
            return Err(invalid("max_trials", "must be at least 1"));
        }
        let batch_size = a.batch_size.or(f.batch_size);
        let batch_range = 1..=crate::model::limits::MAX_BATCH;
        if let Some(b) = batch_size.filter(|b| !batch_range.contains(b)) {
            return Err(invalid(
                "batch_size",
                format!("{b} is outside {batch_range:?}"),
            ));
        }
        let lr = a.lr.or(f.lr);
        if matches!(lr, Some(lr) if !(lr > 0.0 && lr.is_finite())) {
            return Err(invalid("lr", "must be a positive number"));
        }
        let max_time = match a.max_time.clone().or(f.max_time) {
            Some(s) => Some(duration_at_least(&s, Duration::from_secs(1), "max_time")?),
            None => None,
        };
        let watchdog = match a.watchdog.clone().or(f.watchdog) {
            Some(s) => duration_at_least(&s, Duration::from_secs(1), "watchdog")?,
            None => Duration::from_secs(600),
        };
        let checkpoint_every = parse_checkpoint_every(
            &a.checkpoint_every
                .clone()
                .or(f.checkpoint_every)
                .unwrap_or_else(|| "30s".into()),
        )
        .map_err(|w| invalid("checkpoint_every", w))?;
        let device = match a.device.clone().or(f.device).as_deref().unwrap_or("auto") {
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda,
            other => {
                return Err(invalid(
                    "device",
                    format!("{other:?} is not one of auto, cpu, cuda"),
                ))
            }
        };
        let log_format = match a
            .log_format
            .clone()
            .or(f.log_format)
            .as_deref()
            .unwrap_or("auto")
        {
            "auto" => LogFormat::Auto,
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is not one of auto, human, json"),
                ))
            }
        };
        let metrics_addr = match a.metrics_addr.clone().or(f.metrics_addr).as_deref() {
            None | Some("" | "off") => None,
            Some(s) => Some(s.parse().map_err(|_| {
                invalid(
                    "metrics_addr",
                    format!("{s:?} is not an address such as 127.0.0.1:9464 (or off)"),
                )
            })?),
        };
        let serve_addr = match a.serve_addr.clone().or(f.serve_addr).as_deref() {
            None | Some("" | "off") => None,
            Some(s) => Some(s.parse().map_err(|_| {
                invalid(
                    "serve_addr",
                    format!("{s:?} is not an address such as 0.0.0.0:8000 (or off)"),
                )
            })?),
        };
        let git_fetch_every = match a.git_fetch_every.clone().or(f.git_fetch_every) {
            Some(s) => parse_duration(&s).map_err(|w| invalid("git_fetch_every", w))?,
            None => Duration::from_secs(60),
        };
        if git_fetch_every < Duration::from_secs(1) {
            return Err(invalid("git_fetch_every", "must be at least 1s"));
        }
        let preset = a
            .preset
            .clone()
            .or(f.preset)
            .unwrap_or_else(|| "fast".into());
        crate::model::resolve_preset(&preset).map_err(|w| invalid("preset", w))?;
        let memory_budget =
            crate::data::budget::resolve(a.memory_budget.as_deref().or(f.memory_budget.as_deref()))
                .map_err(|w| invalid("memory_budget", w))?;
        let classes = match a.classes.or(f.classes) {
            Some(k) => Some(
                crate::data::dataset::check_classes_option(k).map_err(|w| invalid("classes", w))?,
            ),
            None => None,
        };
        Ok(Config {
            data_dir: a
                .data_dir
                .clone()
                .or(f.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            state_dir: a
                .state_dir
                .clone()
                .or(f.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            seed: a.seed.or(f.seed).unwrap_or(1),
            preset,
            epochs,
            target_accuracy,
            max_trials,
            max_time,
            device,
            threads,
            checkpoint_every,
            keep_checkpoints: a
                .keep_checkpoints
                .or(f.keep_checkpoints)
                .unwrap_or(3)
                .max(1),
            val_size: a.val_size.or(f.val_size),
            batch_size,
            lr,
            watchdog,
            log_format,
            mnist_mirrors: match a.mnist_mirrors.clone().or(f.mnist_mirrors) {
                Some(list) => crate::data::download::parse_mirrors(&list),
                None => crate::data::download::default_mirrors(),
            },
            metrics_addr,
            serve_addr,
            watch_poll: a.watch_poll || f.watch_poll.unwrap_or(false),
            git_remote: a
                .git_remote
                .clone()
                .or(f.git_remote)
                .filter(|r| !r.is_empty()),
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
        })
    }
}

/// `data_format` and `image_size`, parsed.
fn data_source(
    a: &CommonArgs,
    f: &FileConfig,
) -> Result<crate::data::source::SourceOptions, ConfigError> {
    use crate::data::source::{DataFormat, ImageSize, SourceOptions};
    let format = match a.data_format.as_deref().or(f.data_format.as_deref()) {
        Some(s) => DataFormat::parse(s).map_err(|w| invalid("data_format", w))?,
        None => DataFormat::Auto,
    };
    let image_size = match a.image_size.as_deref().or(f.image_size.as_deref()) {
        Some(s) => Some(ImageSize::parse(s).map_err(|w| invalid("image_size", w))?),
        None => None,
    };
    Ok(SourceOptions { format, image_size })
}

/// The job chain's keys (search, promotion, notifications), validated.
struct ChainSettings {
    ladder: Vec<crate::model::TrialSpec>,
    min_accuracy: f64,
    promote_margin: f64,
    prune_margin: f64,
    webhooks: Vec<String>,
    webhook_events: Vec<String>,
    webhook_secret: Option<crate::signing::Keys>,
    hook_secret: Option<crate::signing::Secret>,
}

fn chain_settings(
    a: &CommonArgs,
    f: &FileConfig,
    target: f64,
) -> Result<ChainSettings, ConfigError> {
    let ladder_text = a
        .ladder
        .clone()
        .or_else(|| f.ladder.clone())
        .unwrap_or_else(|| DEFAULT_LADDER.into());
    let ladder =
        crate::search::strategy::parse_ladder(&ladder_text).map_err(|w| invalid("ladder", w))?;
    let min_accuracy = a.min_accuracy.or(f.min_accuracy).unwrap_or(target);
    if !(min_accuracy > 0.0 && min_accuracy <= 1.0) {
        return Err(invalid(
            "min_accuracy",
            format!("{min_accuracy} is outside (0, 1]"),
        ));
    }
    let promote_margin = a.promote_margin.or(f.promote_margin).unwrap_or(0.0);
    if !(0.0..1.0).contains(&promote_margin) {
        return Err(invalid(
            "promote_margin",
            format!("{promote_margin} is outside [0, 1)"),
        ));
    }
    let prune_margin = a.prune_margin.or(f.prune_margin).unwrap_or(0.005);
    if !(0.0..=1.0).contains(&prune_margin) {
        return Err(invalid(
            "prune_margin",
            format!("{prune_margin} is outside [0, 1]"),
        ));
    }
    let webhooks: Vec<String> = if a.webhook.is_empty() {
        f.webhook.clone().unwrap_or_default()
    } else {
        a.webhook.clone()
    };
    let webhooks: Vec<String> = webhooks
        .iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for url in &webhooks {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(invalid(
                "webhook",
                format!(
                    "{:?} is not an http(s) URL with a host",
                    crate::pipeline::webhook::redact(url)
                ),
            ));
        }
    }
    let kinds = crate::pipeline::events::KINDS;
    let webhook_events: Vec<String> = match a.webhook_events.clone().or(f.webhook_events.clone()) {
        None => crate::pipeline::webhook::DEFAULT_EVENTS
            .iter()
            .map(|k| k.to_string())
            .collect(),
        Some(s) if s.trim() == "all" => kinds.iter().map(|k| k.to_string()).collect(),
        Some(s) => {
            let list: Vec<String> = s
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
            if let Some(bad) = list.iter().find(|k| !kinds.contains(&k.as_str())) {
                return Err(invalid(
                    "webhook_events",
                    format!("{bad:?} is not an event ({}, or all)", kinds.join(", ")),
                ));
            }
            list
        }
    };
    let file = a
        .webhook_secret_file
        .clone()
        .or(f.webhook_secret_file.clone());
    let webhook_secret = match secret_bytes(file, "webhook_secret_file", "TRAINERD_WEBHOOK_SECRET")?
    {
        Some((bytes, from)) => Some(
            crate::signing::parse(&bytes)
                .map_err(|w| invalid(&from.key, format!("{}: {w}", from.name)))?,
        ),
        None => None,
    };
    let file = a.hook_secret_file.clone().or(f.hook_secret_file.clone());
    let hook_secret = secret_bytes(file, "hook_secret_file", "TRAINERD_HOOK_SECRET")?
        .map(|(bytes, _)| crate::signing::Secret::new(bytes));
    Ok(ChainSettings {
        ladder,
        min_accuracy,
        promote_margin,
        prune_margin,
        webhooks,
        webhook_events,
        webhook_secret,
        hook_secret,
    })
}

/// Where a secret came from: the config key and the file or variable.
struct SecretSource {
    key: String,
    name: String,
}

/// A secret's bytes: from `file` (the flag or config key `key`; trimmed,
/// non-empty), else from env `var` as raw bytes (a secret need not be
/// UTF-8). `None` when neither is set.
fn secret_bytes(
    file: Option<PathBuf>,
    key: &'static str,
    var: &str,
) -> Result<Option<(Vec<u8>, SecretSource)>, ConfigError> {
    if let Some(path) = file {
        let text =
            std::fs::read(&path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
        let trimmed = text.trim_ascii().to_vec();
        if trimmed.is_empty() {
            return Err(invalid(key, format!("{} is empty", path.display())));
        }
        let (key, name) = (key.to_string(), path.display().to_string());
        return Ok(Some((trimmed, SecretSource { key, name })));
    }
    let bytes = std::env::var_os(var)
        .map(std::os::unix::ffi::OsStringExt::into_vec)
        .filter(|s| !s.is_empty());
    Ok(bytes.map(|b| {
        let source = SecretSource {
            key: var.trim_start_matches("TRAINERD_").to_ascii_lowercase(),
            name: var.to_string(),
        };
        (b, source)
    }))
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

/// A duration of at least `min` for `key`.
fn duration_at_least(s: &str, min: Duration, key: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(s).map_err(|w| invalid(key, w))?;
    if d < min {
        return Err(invalid(key, format!("{s:?} is shorter than {min:?}")));
    }
    Ok(d)
}

/// Largest config file read (a config is a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        crate::model::read_bounded(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError::File {
            path: path.into(),
            what: format!("cannot read: {e}"),
        })?;
    FileConfig::parse(&text).map_err(|what| ConfigError::File {
        path: path.into(),
        what,
    })
}

impl FileConfig {
    /// Parses the TOML text of a config file; the error is one line.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().lines().collect::<Vec<_>>().join(" "))
    }
}

/// Longest duration any setting accepts (100 years): far beyond any real
/// budget, and far from where `Instant` arithmetic could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `30s`, `10m`, `2h`, `1d`, `500ms` or a bare number of seconds, up
/// to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s or 10m"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{s:?} is longer than the most allowed, 100 years")),
    }
}

/// Parses `500` (steps), `30s` (time), or both separated by a comma.
pub fn parse_checkpoint_every(s: &str) -> Result<CheckpointEvery, String> {
    let mut every = CheckpointEvery {
        steps: None,
        interval: None,
    };
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "{s:?} has an empty part (use e.g. 500, 30s or 500,30s)"
            ));
        }
        if let Ok(steps) = part.parse::<u64>() {
            if steps == 0 {
                return Err("a step interval must be at least 1".into());
            }
            if every.steps.replace(steps).is_some() {
                return Err(format!("{s:?} gives a step interval twice"));
            }
        } else {
            let d = parse_duration(part)?;
            if d.is_zero() {
                return Err(format!(
                    "{part:?}: a time interval must be longer than 0 (use 1 to save every step)"
                ));
            }
            if every.interval.replace(d).is_some() {
                return Err(format!("{s:?} gives a time interval twice"));
            }
        }
    }
    if every.steps.is_none() && every.interval.is_none() {
        return Err(format!("{s:?} names no interval (use e.g. 500 or 30s)"));
    }
    Ok(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CommonArgs {
        CommonArgs::default()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(c.seed, 1);
        assert_eq!(c.target_accuracy, 0.99);
        assert_eq!(c.val_size, None, "a tenth of the data, at most 5,000");
        assert_eq!(c.checkpoint_every.interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file = FileConfig {
            seed: Some(7),
            epochs: Some(3),
            ..Default::default()
        };
        let a = CommonArgs {
            seed: Some(9),
            ..args()
        };
        let c = Config::merge(&a, file).unwrap();
        assert_eq!(c.seed, 9, "flag wins over file");
        assert_eq!(c.epochs, Some(3), "file wins over default");
    }

    #[test]
    fn env_beats_file_and_flag_beats_env() {
        // clap merges flag over env; this checks both layers through the parser.
        std::env::set_var("TRAINERD_EPOCHS", "5");
        let cli = Cli::try_parse_from(["trainerd", "train"]).unwrap();
        let Command::Train(a) = cli.command else {
            panic!("train")
        };
        let file = FileConfig {
            epochs: Some(3),
            ..Default::default()
        };
        assert_eq!(Config::merge(&a, file).unwrap().epochs, Some(5));
        let cli = Cli::try_parse_from(["trainerd", "train", "--epochs", "8"]).unwrap();
        std::env::remove_var("TRAINERD_EPOCHS");
        let Command::Train(a) = cli.command else {
            panic!("train")
        };
        assert_eq!(
            Config::merge(&a, FileConfig::default()).unwrap().epochs,
            Some(8)
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (a, key) in [
            (
                CommonArgs {
                    target_accuracy: Some(1.5),
                    ..args()
                },
                "target_accuracy",
            ),
            (
                CommonArgs {
                    target_accuracy: Some(0.0),
                    ..args()
                },
                "target_accuracy",
            ),
            (
                CommonArgs {
                    device: Some("tpu".into()),
                    ..args()
                },
                "device",
            ),
            (
                CommonArgs {
                    checkpoint_every: Some("soon".into()),
                    ..args()
                },
                "checkpoint_every",
            ),
            (
                CommonArgs {
                    preset: Some("no-such-preset".into()),
                    ..args()
                },
                "preset",
            ),
            (
                CommonArgs {
                    threads: Some(0),
                    ..args()
                },
                "threads",
            ),
            (
                CommonArgs {
                    ladder: Some("linear,nope".into()),
                    ..args()
                },
                "ladder",
            ),
            (
                CommonArgs {
                    min_accuracy: Some(1.2),
                    ..args()
                },
                "min_accuracy",
            ),
            (
                CommonArgs {
                    promote_margin: Some(-0.1),
                    ..args()
                },
                "promote_margin",
            ),
            (
                CommonArgs {
                    webhook: vec!["ftp://x".into()],
                    ..args()
                },
                "webhook",
            ),
            (
                CommonArgs {
                    webhook_events: Some("new_best,party".into()),
                    ..args()
                },
                "webhook_events",
            ),
            (
                CommonArgs {
                    webhook_secret_file: Some("/nonexistent/secret".into()),
                    ..args()
                },
                "webhook_secret_file",
            ),
        ] {
            let err = Config::merge(&a, FileConfig::default()).unwrap_err();
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
        let a = CommonArgs {
            config: Some(path),
            ..args()
        };
        let c = Config::resolve(&a).unwrap();
        assert_eq!((c.target_accuracy, c.min_accuracy), (0.95, 0.80));
        assert_eq!(c.ladder.len(), 2);
        assert_eq!(c.ladder[1].recipe.epochs, 4);
        assert_eq!(c.webhooks, ["http://127.0.0.1:9/hook"]);
        assert!(c.webhook_events.iter().any(|k| k == "trial_started"));
        let d = Config::merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(d.min_accuracy, d.target_accuracy, "defaults to the target");
    }

    #[test]
    fn webhook_flags_repeat_and_split_on_commas() {
        let cli = Cli::try_parse_from([
            "trainerd",
            "train",
            "--webhook",
            "http://a/x,http://b/y",
            "--webhook",
            "http://c",
        ])
        .unwrap();
        let Command::Train(a) = cli.command else {
            panic!("train")
        };
        assert_eq!(a.webhook, ["http://a/x", "http://b/y", "http://c"]);
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
        let c = Config::merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(c.metrics_addr, None);
        let a = CommonArgs {
            metrics_addr: Some("127.0.0.1:9464".into()),
            ..args()
        };
        let c = Config::merge(&a, FileConfig::default()).unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let file = FileConfig {
            metrics_addr: Some("0.0.0.0:9464".into()),
            ..Default::default()
        };
        let a = CommonArgs {
            metrics_addr: Some("off".into()),
            ..args()
        };
        assert_eq!(
            Config::merge(&a, file).unwrap().metrics_addr,
            None,
            "flag turns it off"
        );
        let a = CommonArgs {
            metrics_addr: Some("localhost".into()),
            ..args()
        };
        let err = Config::merge(&a, FileConfig::default()).unwrap_err();
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
                &CommonArgs {
                    watchdog: Some(w.into()),
                    ..args()
                },
                FileConfig::default(),
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
                CommonArgs {
                    threads: Some(10_000),
                    ..args()
                },
                "threads",
            ),
            (
                CommonArgs {
                    epochs: Some(u32::MAX),
                    ..args()
                },
                "epochs",
            ),
            (
                CommonArgs {
                    batch_size: Some(i64::MAX),
                    ..args()
                },
                "batch_size",
            ),
            (
                CommonArgs {
                    max_time: Some("0s".into()),
                    ..args()
                },
                "max_time",
            ),
        ] {
            let err = Config::merge(&a, FileConfig::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let ok = CommonArgs {
            threads: Some(max_threads()),
            ..args()
        };
        Config::merge(&ok, FileConfig::default()).unwrap();
    }
}

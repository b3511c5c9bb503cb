//! Every option of `run`, `train` and `trial`, declared once: clap reads
//! the struct from flags and `TRAINERD_*` variables, serde from the TOML
//! config file (the same keys, with underscores), and [`Options::over`]
//! layers one over the other. Adding an option is one field here plus its
//! use in `Config::validate`.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

/// One layer of option values: set where given, else empty.
trait Overlay {
    /// `self` where it is set, else `lower`.
    fn over(self, lower: Self) -> Self;
}

impl<T> Overlay for Option<T> {
    fn over(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// A switch is on when either layer turns it on.
impl Overlay for bool {
    fn over(self, lower: Self) -> Self {
        self || lower
    }
}

/// A non-empty list replaces the lower one.
impl<T> Overlay for Vec<T> {
    fn over(self, lower: Self) -> Self {
        if self.is_empty() {
            lower
        } else {
            self
        }
    }
}

/// Declares [`Options`] and the layering that every field takes part in.
macro_rules! options {
    ($(#[$meta:meta])* pub struct Options { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct Options {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Options {
            /// These values where set, else `lower`'s (flags and env over the file).
            pub fn over(self, lower: Options) -> Options {
                Options {
                    $($field: Overlay::over(self.$field, lower.$field),)*
                }
            }
        }
    };
}

options! {
    /// Flags shared by `run`, `train` and `trial`, and the keys of the config
    /// file. All optional: unset values fall back to the config file, then to
    /// the defaults in `Config::validate`.
    #[derive(Debug, Args, Default, Clone, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Options {
        /// TOML config file (keys as the flags, with underscores).
        #[arg(long, env = "TRAINERD_CONFIG")]
        #[serde(skip)]
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
        /// Keep every intra-op thread while other processes compete for the cores
        /// (default: train on one thread then, and on all again when cores are free).
        #[arg(long, env = "TRAINERD_FIXED_THREADS")]
        pub fixed_threads: bool,
        /// Checkpoint interval: a step count (`500`) or a duration (`30s`), or both (`500,30s`).
        #[arg(long, env = "TRAINERD_CHECKPOINT_EVERY")]
        pub checkpoint_every: Option<String>,
        /// Checkpoints kept per trial besides the best one.
        #[arg(long, env = "TRAINERD_KEEP_CHECKPOINTS")]
        pub keep_checkpoints: Option<usize>,
        /// Promotions kept as `versions/N/` in the state dir (at least 1; the
        /// champion's and the previous champion's are never deleted) [default: 10].
        #[arg(long, env = "TRAINERD_KEEP_VERSIONS")]
        pub keep_versions: Option<usize>,
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
        /// Also serve the champion over the Open Inference Protocol's gRPC service (as
        /// `trainerd serve --grpc-addr`) on this address (e.g. `0.0.0.0:8001`; `off` or unset: not served).
        #[arg(long, env = "TRAINERD_GRPC_ADDR")]
        pub grpc_addr: Option<String>,
        /// Engine of the served forward pass (`--serve-addr`) and of training's evaluation
        /// passes on the CPU: auto (onnxruntime when its library loads, else libtorch) |
        /// onnxruntime | libtorch.
        #[arg(long, env = "TRAINERD_ENGINE")]
        pub engine: Option<String>,
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
        /// MLflow tracking server that trials (as runs) and promotions (as model
        /// versions) are logged to, e.g. `http://mlflow:5000`; `user:pass@` in the
        /// URL becomes Basic auth and is never logged.
        #[arg(long, env = "TRAINERD_MLFLOW_URI")]
        pub mlflow_uri: Option<String>,
        /// Registered MLflow model that promotions become versions of (default `trainerd`).
        #[arg(long, env = "TRAINERD_MLFLOW_MODEL")]
        pub mlflow_model: Option<String>,
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
        /// (`train/<class>/*.png|jpg`), or `auto` (default: folders when train/ exists).
        #[arg(long, env = "TRAINERD_DATA_FORMAT")]
        pub data_format: Option<String>,
        /// Resize every image of an image-folder set to HxW, e.g. `32x32`
        /// (triangle filter); default: all images must share one size.
        #[arg(long, env = "TRAINERD_IMAGE_SIZE")]
        pub image_size: Option<String>,
        /// Write each trial's scalars as TensorBoard event files under
        /// `tensorboard/` of the state dir: on (default) | off
        #[arg(long, env = "TRAINERD_TENSORBOARD")]
        pub tensorboard: Option<String>,
    }
}

/// Largest config file read (a config is a few hundred bytes).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl Options {
    /// Parses the TOML text of a config file; the error is one line.
    pub fn parse_file(text: &str) -> Result<Options, String> {
        toml::from_str(text).map_err(|e| e.to_string().lines().collect::<Vec<_>>().join(" "))
    }
}

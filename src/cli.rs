//! The command line: clap's types for every subcommand. Only `main` and
//! `app` see them; `app` turns each into the settings its subsystem takes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_duration, ConfigError, LogFormat, Options, DEFAULT_STATE_DIR};
use crate::serve::{ServeOptions, ServeProcess};

mod env;
pub use env::{check_environment, read_vars};

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
    Run(Options),
    /// Run one study to its end (target reached or budget spent), then exit.
    Train(Options),
    /// Run exactly one trial from flags (for Katib): metric lines on stdout.
    Trial(TrialArgs),
    /// Print what the state dir says.
    Status(StatusArgs),
    /// List the architecture presets and what each builds for the data
    /// (`--data-dir`; default MNIST's input); `--json`: full trial specs.
    Presets(PresetsArgs),
    /// Exit 0 when the daemon is alive and making progress (Docker HEALTHCHECK).
    Health(HealthArgs),
    /// Swap the champion (best/) with the previous one (best.previous/), or
    /// with `--to N` make kept version N the champion.
    Rollback(RollbackArgs),
    /// List the kept versions (versions/N/): accuracy, data, commit, date, champion.
    Models(StatusArgs),
    /// Classify images (IDX, PNG or JPEG files) with the champion model.
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
    /// Also serve the Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`,
    /// as Triton) on this address, e.g. `0.0.0.0:8001` (`off` or unset: REST only).
    #[arg(long, env = "TRAINERD_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
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
    /// Threads for the forward pass (default: libtorch's choice; onnxruntime: the CPUs this
    /// process may use).
    #[arg(long, env = "TRAINERD_THREADS")]
    pub threads: Option<usize>,
    /// onnxruntime sessions that run batches side by side, sharing the threads (default: one
    /// per thread, each single-threaded: the most images/s under load; 1 gives one session all
    /// threads, for a lone client sending large batches).
    #[arg(long, env = "TRAINERD_INSTANCES")]
    pub instances: Option<usize>,
    /// Engine of the forward pass: auto (onnxruntime on `best/model.onnx` when its library
    /// loads, else libtorch) | onnxruntime (exit 78 when it cannot load) | libtorch.
    #[arg(long, env = "TRAINERD_ENGINE", default_value = "auto")]
    pub engine: String,
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

impl Command {
    /// A command that only reads and prints: like any Unix filter it may end
    /// quietly when its reader goes (`trainerd presets | head -3`).
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Presets(_)
                | Command::Status(_)
                | Command::Health(_)
                | Command::Predict(_)
                | Command::Models(_)
        )
    }
}

#[derive(Debug, Args, Clone)]
pub struct PresetsArgs {
    /// Full trial specs as JSON (with `--data-dir`: the input, and each spec
    /// with its parameter count or why it does not fit).
    #[arg(long)]
    pub json: bool,
    /// Show what each preset builds for this data set, read as `train` reads
    /// it (default: MNIST's 1x28x28 input of 10 classes).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// As for `train`: `idx`, `folders` or `auto`.
    #[arg(long, requires = "data_dir")]
    pub data_format: Option<String>,
    /// As for `train`: resize an image-folder set to HxW.
    #[arg(long, requires = "data_dir")]
    pub image_size: Option<String>,
    /// As for `train`: the number of classes K.
    #[arg(long, requires = "data_dir")]
    pub classes: Option<usize>,
    /// As for `train`: the most memory the data set may take.
    #[arg(long, env = "TRAINERD_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
}

impl PresetsArgs {
    /// The catalog request: the data keys validated as `train` validates them.
    pub fn request(&self) -> Result<crate::catalog::CatalogRequest, ConfigError> {
        let data = match &self.data_dir {
            Some(dir) => {
                let opts = Options {
                    data_format: self.data_format.clone(),
                    image_size: self.image_size.clone(),
                    classes: self.classes,
                    memory_budget: self.memory_budget.clone(),
                    ..Options::default()
                };
                Some((dir.clone(), crate::config::load_options(&opts)?))
            }
            None => None,
        };
        Ok(crate::catalog::CatalogRequest {
            json: self.json,
            data,
        })
    }
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
    /// IDX image files (optionally gzipped) or PNG or JPEG images of the model's input size (gray or RGB).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct TrialArgs {
    #[command(flatten)]
    pub common: Options,
    /// Trial number (names its checkpoint dir and seeds its streams).
    #[arg(long, env = "TRAINERD_TRIAL", default_value_t = 0)]
    pub trial: u32,
    /// Optimizer: sgd | adamw | adadelta (default: the preset's).
    #[arg(long, env = "TRAINERD_OPTIMIZER")]
    pub optimizer: Option<String>,
    /// Also append metrics as JSON lines (all values strings) to this file.
    #[arg(long, env = "TRAINERD_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
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
pub struct RollbackArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Make kept version N (`trainerd models`) the champion, verified first;
    /// without it, swap best/ and best.previous/.
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct HealthArgs {
    #[arg(long, env = "TRAINERD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Heartbeat older than this means unhealthy.
    #[arg(long, env = "TRAINERD_HEALTH_MAX_AGE", default_value = "120s")]
    pub max_age: String,
}

impl TrialArgs {
    /// What the trial adds to the training options.
    pub fn settings(&self) -> crate::katib::TrialSettings {
        crate::katib::TrialSettings {
            trial: self.trial,
            optimizer: self.optimizer.clone(),
            metrics_file: self.metrics_file.clone(),
        }
    }
}

impl ExportArgs {
    pub fn request(&self) -> crate::export::command::ExportRequest {
        crate::export::command::ExportRequest {
            state_dir: self.state_dir.clone(),
            format: self.format,
            out: self.out.clone(),
            trial: self.trial,
            study: self.study.clone(),
        }
    }
}

impl PredictArgs {
    pub fn request(&self) -> Result<crate::predict::PredictRequest, ConfigError> {
        Ok(crate::predict::PredictRequest {
            state_dir: self.state_dir.clone(),
            memory_budget: memory_budget(self.memory_budget.as_deref())?,
            files: self.files.clone(),
            json: self.json,
            logits: self.logits,
        })
    }
}

impl ServeArgs {
    /// What to serve and how, validated (each error names its flag).
    pub fn options(&self) -> Result<ServeOptions, ConfigError> {
        let addr: SocketAddr = self.addr.parse().map_err(|_| {
            invalid(
                "addr",
                format!("{:?} is not an address such as 0.0.0.0:8000", self.addr),
            )
        })?;
        let window = parse_duration(&self.batch_window).map_err(|w| invalid("batch_window", w))?;
        if window > Duration::from_secs(1) {
            return Err(invalid("batch_window", "must be at most 1s"));
        }
        if !(1..=4096).contains(&self.max_batch) {
            return Err(invalid("max_batch", "must be in 1..=4096"));
        }
        if !(1..=65536).contains(&self.max_connections) {
            return Err(invalid("max_connections", "must be in 1..=65536"));
        }
        let mut opts = ServeOptions::new(self.state_dir.clone(), Some(addr));
        opts.grpc_addr =
            crate::config::address(self.grpc_addr.as_deref(), "grpc_addr", "0.0.0.0:8001")?;
        opts.batch.window = window;
        opts.batch.max_batch = self.max_batch;
        opts.max_connections = self.max_connections;
        opts.memory_budget = memory_budget(self.memory_budget.as_deref())?;
        opts.watch_poll = self.watch_poll;
        opts.engine = crate::config::EngineChoice::parse(Some(&self.engine))?;
        opts.threads = self.threads;
        if let Some(n) = self.instances {
            if !(1..=64).contains(&n) {
                return Err(invalid("instances", "must be in 1..=64"));
            }
        }
        opts.instances = self.instances;
        Ok(opts)
    }

    /// How the serving process runs.
    pub fn process(&self) -> Result<ServeProcess, ConfigError> {
        Ok(ServeProcess {
            probe: self.probe,
            log_format: LogFormat::parse(self.log_format.as_deref())?,
            threads: self.threads,
        })
    }
}

/// `--memory-budget`, else 3/4 of the memory limit.
fn memory_budget(flag: Option<&str>) -> Result<u64, ConfigError> {
    crate::data::budget::resolve(flag).map_err(|w| invalid("memory_budget", w))
}

fn invalid(key: &str, what: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        what: what.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn train_options(args: &[&str]) -> Options {
        let argv = ["trainerd", "train"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Train(o),
            }) => o,
            other => panic!("train flags parse: {other:?}"),
        }
    }

    #[test]
    fn env_beats_file_and_flag_beats_env() {
        // clap merges flag over env; this checks both layers through the parser.
        std::env::set_var("TRAINERD_EPOCHS", "5");
        let a = train_options(&[]);
        let file = Options {
            epochs: Some(3),
            ..Default::default()
        };
        assert_eq!(
            Config::validate(&a.clone().over(file)).unwrap().epochs,
            Some(5)
        );
        let a = train_options(&["--epochs", "8"]);
        std::env::remove_var("TRAINERD_EPOCHS");
        assert_eq!(Config::validate(&a).unwrap().epochs, Some(8));
    }

    #[test]
    fn webhook_flags_repeat_and_split_on_commas() {
        let a = train_options(&[
            "--webhook",
            "http://a/x,http://b/y",
            "--webhook",
            "http://c",
        ]);
        assert_eq!(a.webhook, ["http://a/x", "http://b/y", "http://c"]);
    }
}

//! trainerd: a crash-proof training daemon for libtorch models.
//!
//! # Layout
//! - [`config`]: flags + env + TOML -> one validated `Config`
//! - [`data`]: IDX parsing, the in-memory data set, splits, batches
//! - [`model`]: architectures and recipes as data; the module builder
//! - [`optim`]: optimizers and schedules with checkpointable state
//! - [`train`]: the step loop, evaluation, deterministic random streams
//! - [`store`]: atomic checkpoints, retention, quarantine, the state-dir lock
//! - [`search`]: the study's strategy, journal and replayed history
//! - [`pipeline`]: the job chain: study, promotion, events, webhooks, daemon
//! - [`telemetry`]: logging, heartbeat, watchdog, Prometheus metrics, progress bar
//! - [`dashboard`]: the live page at `/` and its read-only JSON API and event stream
//! - [`tensorboard`]: TensorBoard event files of each trial's scalars
//! - [`report`]: `best/report.html` with SVG plots
//! - [`watch`]: the workspace watcher (data, config, git HEAD) -> retrain events
//! - [`hooks`]: `POST /hooks/git`: verified push events fast-forward the workspace
//! - [`predict`]: classify images with the champion
//! - [`serve`]: `trainerd serve`: the champion over the Open Inference Protocol v2, hot-swapped, batched
//! - [`versions`]: the kept promotions (`versions/N/`), listed, opened and verified (read-only)
//! - [`export`]: the champion as ONNX, TorchScript, a Triton repository, a model card; checksums
//! - [`app`]: the subcommands; [`status`]: what the state dir says
//! - [`control`]: the control plane on tokio: signals, watchdog, study requests, the training thread
//! - [`katib`]: `trainerd trial`, one trial reported in Katib's metric formats
//! - [`exit`]: exit codes, and the one place errors map to them
//! - [`timestamp`]: the one wall-clock timestamp format
//! - [`finite`]: NaN and infinity at the JSON boundary (diverged trials)
//! - [`confidence`]: Wilson intervals of accuracies; the default validation size
//! - [`signing`]: webhook signatures by the Standard Webhooks specification
//! - [`event_kind`]: the kinds of pipeline events, by the names the event log writes
//! - [`lock`]: mutexes locked past a poisoning panic, for state that stays usable

pub mod app;
pub mod catalog;
pub mod cli;
pub mod confidence;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod data;
pub mod event_kind;
pub mod exit;
pub mod export;
pub mod finite;
pub mod hooks;
pub mod katib;
pub mod lock;
pub mod mlflow;
pub mod model;
pub mod onnx_graph;
pub mod onnxruntime;
pub mod optim;
pub mod pipeline;
pub mod predict;
pub mod report;
pub mod search;
pub mod serve;
pub mod signing;
pub mod state_dir;
pub mod status;
pub mod stop_flag;
pub mod store;
pub mod telemetry;
pub mod tensorboard;
pub mod timestamp;
pub mod train;
pub mod versions;
pub mod watch;

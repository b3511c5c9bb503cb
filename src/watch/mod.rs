//! Workspace watching: the data dir, the config file and (when they live in
//! a git checkout) its HEAD, turned into debounced "retrain" events.
//!
//! The watcher is created up front and compares *state*, not events: after
//! each quiet period (debounce) it looks at what is on disk and reports what
//! differs from what it last accepted. So the same content written twice is
//! no event, a half-written file is reported and waited out (nothing is
//! accepted while any input is unusable), and several changes that land
//! together (a `git pull` touching data and config) are one event.
//! Directories are re-watched when replaced (atomic renames, ConfigMap
//! symlink swaps); `poll` (or a failing native backend) switches to notify's
//! polling watcher; a periodic stat rescan catches anything missed.

mod backend;
pub mod git;
pub mod inputs;
mod publish;
mod runner;
mod watched;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchPaths {
    pub data_dir: PathBuf,
    /// The TOML config file, when one is used.
    pub config: Option<PathBuf>,
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after the last change before inputs are looked at.
    pub debounce: Duration,
    /// Use polling instead of the native backend (network filesystems).
    pub poll: bool,
    /// Polling interval (also the stat-rescan interval in polling mode).
    pub poll_interval: Duration,
    /// With the native backend: how often to rescan anyway, for missed events.
    pub rescan_every: Duration,
    /// Remote (name or URL) to fetch and fast-forward from, when a git checkout.
    pub git_remote: Option<String>,
    pub git_fetch_every: Duration,
    /// How the data dir is read (`--data-format`, `--image-size`).
    pub source: crate::data::source::SourceOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(500),
            poll: false,
            poll_interval: Duration::from_secs(1),
            rescan_every: Duration::from_secs(10),
            git_remote: None,
            git_fetch_every: Duration::from_secs(60),
            source: Default::default(),
        }
    }
}

impl WatchOptions {
    /// The options the config names (`--watch-poll`, `--git-remote`, `--git-fetch-every`).
    pub fn from_config(cfg: &crate::config::Config) -> WatchOptions {
        WatchOptions {
            poll: cfg.watch_poll,
            git_remote: cfg.git_remote.clone(),
            git_fetch_every: cfg.git_fetch_every,
            source: cfg.data_source,
            ..WatchOptions::default()
        }
    }
}

impl WatchPaths {
    /// The data dir and config file the config names.
    pub fn from_config(
        cfg: &crate::config::Config,
        config_file: Option<&std::path::Path>,
    ) -> WatchPaths {
        WatchPaths {
            data_dir: cfg.data_dir.clone(),
            config: config_file.map(std::path::Path::to_path_buf),
        }
    }
}

/// Why an event was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WatchReason {
    /// The data set's content changed (the new fingerprint).
    DataChanged { fingerprint: String },
    /// The config file's content changed (and it parses).
    ConfigChanged { path: PathBuf },
    /// HEAD of the workspace checkout moved to a new commit.
    GitCommit { id: String },
    /// Data files are unusable (half-written, truncated, inconsistent); ignored until fixed.
    DataInvalid { problems: Vec<String> },
    /// The config file is unusable; ignored until fixed.
    ConfigInvalid { path: PathBuf, problem: String },
}

impl WatchReason {
    /// A reason to start a new study (the others are reports).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            WatchReason::DataChanged { .. }
                | WatchReason::ConfigChanged { .. }
                | WatchReason::GitCommit { .. }
        )
    }
}

/// One debounced observation of the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    /// Everything that changed (or is wrong) since the last event; never empty.
    pub reasons: Vec<WatchReason>,
    /// The data fingerprint now (the accepted one, for reports).
    pub fingerprint: Option<String>,
    /// The workspace's HEAD commit now, when it is a git checkout.
    pub commit: Option<String>,
}

impl WatchEvent {
    /// Should the daemon start a new study? (False for reports of bad input.)
    pub fn retrain(&self) -> bool {
        self.reasons.iter().any(WatchReason::is_change)
    }
}

/// The accepted state of the inputs: what the last event (or the start) saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub fingerprint: Option<String>,
    pub config_hash: Option<String>,
    pub commit: Option<String>,
}

/// Which backend delivers file events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Native,
    Poll,
}

/// Errors starting the watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start a file watcher (native: {native}; polling: {poll})")]
    Backend { native: String, poll: String },
    #[error("cannot start the watcher thread: {0}")]
    Thread(String),
}

/// Where the watcher thread delivers events; `false` means nobody listens
/// any more (the thread ends).
pub type EventSink = Box<dyn Fn(WatchEvent) -> bool + Send>;

/// A running watcher; dropping it stops the thread.
pub struct Watcher {
    events: Receiver<WatchEvent>,
    accepted: Arc<Mutex<Snapshot>>,
    backend: Backend,
    repo: Option<git::Repo>,
    /// Wakes the watcher thread (`Stop` when dropped).
    nudge: mpsc::Sender<backend::Msg>,
    /// Dropped to wake and end the fetch thread.
    fetch_stop: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching. Returns once the current state is recorded as the
    /// baseline ([`Watcher::current`]): later events say what differs from it.
    pub fn spawn(paths: WatchPaths, opts: WatchOptions) -> Result<Watcher, WatchError> {
        let (tx, events) = mpsc::channel();
        Self::start(paths, opts, Box::new(move |ev| tx.send(ev).is_ok()), events)
    }

    /// Like [`Watcher::spawn`], delivering events to `sink` (e.g. a channel
    /// of the async runtime) instead of [`Watcher::events`], which stays empty.
    pub fn spawn_into(
        paths: WatchPaths,
        opts: WatchOptions,
        sink: EventSink,
    ) -> Result<Watcher, WatchError> {
        let (_, events) = mpsc::channel();
        Self::start(paths, opts, sink, events)
    }

    fn start(
        paths: WatchPaths,
        opts: WatchOptions,
        sink: EventSink,
        events: Receiver<WatchEvent>,
    ) -> Result<Watcher, WatchError> {
        let (runner, backend) = runner::Runner::new(paths, &opts, sink)?;
        let accepted = runner.accepted();
        let repo = runner.repo();
        let nudge = runner.nudger();
        let mut threads = Vec::new();
        let mut fetch_stop = None;
        if let (Some(remote), Some(repo)) = (opts.git_remote.clone(), repo.clone()) {
            let fetched = runner.nudger();
            let (tx, stop) = mpsc::channel();
            fetch_stop = Some(tx);
            threads.push(git::spawn_fetcher(
                repo,
                remote,
                opts.git_fetch_every,
                stop,
                move || fetched.send(backend::Msg::Nudge).is_ok(),
            )?);
        }
        threads.push(
            std::thread::Builder::new()
                .name("watch".into())
                .spawn(move || runner.run())
                .map_err(|e| WatchError::Thread(e.to_string()))?,
        );
        tracing::info!(?backend, git = repo.is_some(), "watching the workspace");
        Ok(Watcher {
            events,
            accepted,
            backend,
            repo,
            nudge,
            fetch_stop,
            threads,
        })
    }

    /// The event stream (empty when spawned with [`Watcher::spawn_into`]).
    pub fn events(&self) -> &Receiver<WatchEvent> {
        &self.events
    }

    /// The accepted state now (at start: the baseline; e.g. the commit to
    /// record for the first study).
    pub fn current(&self) -> Snapshot {
        self.accepted.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The git checkout the workspace lives in, if any.
    pub fn repo(&self) -> Option<&git::Repo> {
        self.repo.as_ref()
    }
}

impl Watcher {
    /// Stops the threads without waiting for them (a process on its way
    /// out: a `git fetch` in flight must not hold the exit up).
    pub fn close(mut self) {
        self.stop_threads();
        self.threads.clear();
    }

    fn stop_threads(&mut self) {
        let _ = self.nudge.send(backend::Msg::Stop);
        self.fetch_stop = None;
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop_threads();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

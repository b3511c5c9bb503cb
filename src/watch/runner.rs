//! The watcher thread: owns the notify backend ([`super::backend`]), keeps
//! the watch set in line with the directories on disk ([`super::watched`]),
//! debounces, looks at the dirty inputs ([`super::inputs`]) and hands what it
//! saw to the [`Publisher`] that turns it into [`super::WatchEvent`]s. (The
//! `--git-remote` fetch thread is in [`super::git`].)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backend::{Msg, WatchSet};
use super::inputs::{self, StatSig};
use super::publish::{Publisher, Seen};
use super::watched::{Dirty, Watched};
use super::{git, Backend, EventSink, Snapshot, WatchError, WatchOptions, WatchPaths};

/// Under constant churn, look anyway after this many debounce periods.
const MAX_WAIT_DEBOUNCES: u32 = 20;

/// Cheap stat signatures, compared by the periodic rescan.
#[derive(Default, PartialEq)]
struct Sigs {
    data: BTreeMap<PathBuf, Option<StatSig>>,
    config: Option<StatSig>,
    commit: Option<String>,
}

pub(super) struct Runner {
    watched: Watched,
    opts: WatchOptions,
    set: WatchSet,
    msgs: Receiver<Msg>,
    nudge: Sender<Msg>,
    seen: Seen,
    publisher: Publisher,
    sigs: Sigs,
    /// The data files' stats when they were last hashed into `seen.data`.
    hashed: Option<BTreeMap<PathBuf, Option<StatSig>>>,
    dirty: Dirty,
    last_change: Instant,
    /// When the inputs became dirty: caps the debounce under constant churn.
    first_dirty: Option<Instant>,
}

impl Runner {
    /// Sets up the backend and watches, and records the baseline.
    pub(super) fn new(
        paths: WatchPaths,
        opts: &WatchOptions,
        tx: EventSink,
    ) -> Result<(Runner, Backend), WatchError> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let watched = Watched {
            data_dir: abs(&paths.data_dir),
            config: paths.config.as_deref().map(abs),
            repo: None,
            source: opts.source,
        };
        let (nudge, msgs) = mpsc::channel();
        let set = WatchSet::new(opts.poll, opts.poll_interval, nudge.clone())?;
        let mut runner = Runner {
            publisher: Publisher::new(watched.config.clone(), tx),
            watched,
            opts: opts.clone(),
            set,
            msgs,
            nudge,
            seen: Seen::nothing(),
            sigs: Sigs::default(),
            hashed: None,
            dirty: Dirty::ALL,
            last_change: Instant::now(),
            first_dirty: None,
        };
        runner.refresh_repo();
        runner.resync_watches();
        runner.look();
        let (problems, next) = runner.publisher.judge(&runner.seen);
        runner.publisher.baseline(problems, next);
        let kind = runner.set.kind();
        Ok((runner, kind))
    }

    pub(super) fn accepted(&self) -> Arc<Mutex<Snapshot>> {
        self.publisher.accepted()
    }
    pub(super) fn repo(&self) -> Option<git::Repo> {
        self.watched.repo.clone()
    }
    pub(super) fn nudger(&self) -> Sender<Msg> {
        self.nudge.clone()
    }

    /// The thread body: until stopped or nobody listens any more.
    pub(super) fn run(mut self) {
        let rescan_every = match self.set.kind() {
            Backend::Poll => self.opts.poll_interval,
            Backend::Native => self.opts.rescan_every,
        };
        let mut next_rescan = Instant::now() + rescan_every;
        loop {
            // Sleeps until a message, the next rescan or the debounce's end:
            // nothing to poll (a dropped watcher sends `Stop`).
            let mut wait = next_rescan.saturating_duration_since(Instant::now());
            if self.dirty.any() {
                wait = wait.min(
                    self.opts
                        .debounce
                        .saturating_sub(self.last_change.elapsed()),
                );
            }
            match self.msgs.recv_timeout(wait.max(Duration::from_millis(10))) {
                Ok(Msg::Fs(Ok(event))) => {
                    tracing::trace!(?event, "file event");
                    let d = self.watched.dirtied_by(&event);
                    if d.any() {
                        self.mark(d);
                    }
                }
                Ok(Msg::Fs(Err(e))) => {
                    tracing::warn!("file watcher error: {e}; looking at everything again");
                    self.mark(Dirty::ALL);
                }
                Ok(Msg::Nudge) => self.mark(Dirty::ALL),
                Ok(Msg::Stop) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_rescan {
                self.rescan();
                next_rescan = Instant::now() + rescan_every;
            }
            let overdue = self
                .first_dirty
                .is_some_and(|t| t.elapsed() >= self.opts.debounce * MAX_WAIT_DEBOUNCES);
            if self.dirty.any() && (self.last_change.elapsed() >= self.opts.debounce || overdue) {
                self.resync_watches();
                self.look();
                let (problems, next) = self.publisher.judge(&self.seen);
                if !self.publisher.publish(problems, next) {
                    break;
                }
            }
        }
    }

    fn mark(&mut self, d: Dirty) {
        if !self.dirty.any() {
            self.first_dirty = Some(Instant::now());
        }
        self.dirty.add(d);
        self.last_change = Instant::now();
    }

    /// Brings the watch set in line with the directories on disk.
    fn resync_watches(&mut self) {
        if self.set.sync(&self.watched.desired()) {
            // The backend changed (fell back to polling): look at everything.
            self.mark(Dirty::ALL);
        }
    }

    /// Finds the checkout the workspace lives in (it may appear later: a clone).
    fn refresh_repo(&mut self) {
        if self.watched.refresh_repo() {
            self.dirty.git = true;
        }
    }

    fn commit_now(&self) -> Option<String> {
        let repo = self.watched.repo.as_ref()?;
        match git::head(repo) {
            Ok(h) => h.commit,
            Err(e) => {
                tracing::warn!(repo = %repo.work_tree.display(), "cannot read HEAD: {e}");
                None
            }
        }
    }

    /// Stat-level check for changes the event stream missed.
    fn rescan(&mut self) {
        self.refresh_repo();
        self.resync_watches();
        let w = &self.watched;
        let now = Sigs {
            data: inputs::data_signature(&w.data_dir, &w.source),
            config: w.config.as_deref().and_then(inputs::file_signature),
            commit: self.commit_now(),
        };
        let d = Dirty {
            data: now.data != self.sigs.data,
            config: now.config != self.sigs.config,
            git: now.commit != self.sigs.commit,
        };
        // Remember what was seen, so one change is marked once (each mark
        // restarts the debounce).
        self.sigs = now;
        if d.any() {
            tracing::debug!(
                data = d.data,
                config = d.config,
                git = d.git,
                "rescan found changes"
            );
            self.mark(d);
        }
    }

    /// Looks at the dirty inputs (the expensive part: hashing the data).
    fn look(&mut self) {
        let d = std::mem::take(&mut self.dirty);
        self.first_dirty = None;
        if d.git {
            self.refresh_repo();
            self.seen.commit = self.commit_now();
            self.sigs.commit = self.seen.commit.clone();
        }
        let w = &self.watched;
        if d.data {
            let sig = inputs::data_signature(&w.data_dir, &w.source);
            // Stat first, hash only what may have changed: a nudge, a rescan
            // or an event on unchanged files reads no data. Only a usable
            // data set is trusted to its stats (a failure is looked at again).
            let unchanged = self.seen.data.is_ok() && self.hashed.as_ref() == Some(&sig);
            if !unchanged {
                self.seen.data = inputs::inspect_data(&w.data_dir, &w.source);
                self.hashed = Some(sig.clone());
            }
            self.sigs.data = sig;
        }
        if let (true, Some(path)) = (d.config, &w.config) {
            self.sigs.config = inputs::file_signature(path);
            self.seen.config = Some(inputs::inspect_config(path));
        }
    }
}

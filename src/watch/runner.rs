//! The watcher thread: owns the notify backend, keeps the watch set in sync
//! with the directories on disk, debounces, and turns the inputs' state into
//! [`WatchEvent`]s. (The `--git-remote` fetch thread is in [`super::git`].)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecursiveMode};

use super::backend::WatchSet;
use super::inputs::{self, StatSig};
use super::{
    git, Backend, Snapshot, WatchError, WatchEvent, WatchOptions, WatchPaths, WatchReason,
};

/// Under constant churn, look anyway after this many debounce periods.
const MAX_WAIT_DEBOUNCES: u32 = 20;

/// What reaches the watcher thread.
pub(super) enum Msg {
    Fs(notify::Result<notify::Event>),
    /// Look at everything again (after a fetch).
    Nudge,
    /// The watcher is dropped: end the thread.
    Stop,
}

#[derive(Default, Clone, Copy)]
struct Dirty {
    data: bool,
    config: bool,
    git: bool,
}

impl Dirty {
    const ALL: Dirty = Dirty {
        data: true,
        config: true,
        git: true,
    };
    fn any(&self) -> bool {
        self.data || self.config || self.git
    }
}

/// The inputs as last looked at, usable or not.
struct Seen {
    data: Result<String, Vec<String>>,
    config: Option<Result<String, String>>,
    commit: Option<String>,
}

/// Cheap stat signatures, compared by the periodic rescan.
#[derive(Default, PartialEq)]
struct Sigs {
    data: BTreeMap<PathBuf, Option<StatSig>>,
    config: Option<StatSig>,
    commit: Option<String>,
}

pub(super) struct Runner {
    data_dir: PathBuf,
    config: Option<PathBuf>,
    repo: Option<git::Repo>,
    opts: WatchOptions,
    set: WatchSet,
    msgs: Receiver<Msg>,
    nudge: Sender<Msg>,
    accepted: Arc<Mutex<Snapshot>>,
    seen: Seen,
    /// Problems last reported (so a persisting problem is reported once).
    reported: Vec<WatchReason>,
    sigs: Sigs,
    /// The data files' stats when they were last hashed into `seen.data`.
    hashed: Option<BTreeMap<PathBuf, Option<StatSig>>>,
    dirty: Dirty,
    last_change: Instant,
    /// When the inputs became dirty: caps the debounce under constant churn.
    first_dirty: Option<Instant>,
    tx: super::EventSink,
}

impl Runner {
    /// Sets up the backend and watches, and records the baseline.
    pub(super) fn new(
        paths: WatchPaths,
        opts: &WatchOptions,
        tx: super::EventSink,
    ) -> Result<(Runner, Backend), WatchError> {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let data_dir = abs(&paths.data_dir);
        let config = paths.config.as_deref().map(abs);
        let (nudge, msgs) = mpsc::channel();
        let set = WatchSet::new(opts.poll, opts.poll_interval, nudge.clone())?;
        let mut runner = Runner {
            repo: None,
            data_dir,
            config,
            opts: opts.clone(),
            set,
            msgs,
            nudge,
            accepted: Arc::default(),
            seen: Seen {
                data: Err(vec![]),
                config: None,
                commit: None,
            },
            reported: Vec::new(),
            sigs: Sigs::default(),
            hashed: None,
            dirty: Dirty::ALL,
            last_change: Instant::now(),
            first_dirty: None,
            tx,
        };
        runner.refresh_repo();
        runner.resync_watches();
        runner.look();
        let (problems, next) = runner.judge();
        if let Ok(mut acc) = runner.accepted.lock() {
            *acc = next;
        }
        if !problems.is_empty() {
            runner.report(problems);
        }
        let kind = runner.set.kind();
        Ok((runner, kind))
    }

    pub(super) fn accepted(&self) -> Arc<Mutex<Snapshot>> {
        self.accepted.clone()
    }
    pub(super) fn repo(&self) -> Option<git::Repo> {
        self.repo.clone()
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
                    self.classify(&event)
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
                let (problems, next) = self.judge();
                if !self.publish(problems, next) {
                    break;
                }
            }
        }
    }

    fn mark(&mut self, d: Dirty) {
        if !self.dirty.any() {
            self.first_dirty = Some(Instant::now());
        }
        self.dirty.data |= d.data;
        self.dirty.config |= d.config;
        self.dirty.git |= d.git;
        self.last_change = Instant::now();
    }

    /// Which inputs an event may have changed.
    fn classify(&mut self, event: &notify::Event) {
        if event.need_rescan() {
            self.mark(Dirty::ALL);
            return;
        }
        if !can_change_content(&event.kind) {
            return;
        }
        let mut d = Dirty::default();
        for path in &event.paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `..data` & co: the symlink swap of a Kubernetes ConfigMap/Secret volume.
            let swap = name.starts_with("..");
            d.data |= path == &self.data_dir
                || (path.parent() == Some(&self.data_dir) && (inputs::is_data_file(name) || swap))
                || self.image_dirs().iter().any(|d| path.starts_with(d));
            d.config |= self.config.as_ref().is_some_and(|c| {
                c.parent() == path.parent() && (c.file_name() == path.file_name() || swap)
            });
            d.git |= self
                .repo
                .as_ref()
                .is_some_and(|r| path.starts_with(&r.git_dir) || path.starts_with(&r.common_dir));
        }
        if d.any() {
            self.mark(d);
        }
    }

    /// `train/` and `test/` of an image-folder data dir (none for IDX).
    fn image_dirs(&self) -> Vec<PathBuf> {
        if inputs::is_folders(&self.data_dir, &self.opts.source) {
            vec![self.data_dir.join("train"), self.data_dir.join("test")]
        } else {
            Vec::new()
        }
    }

    /// The directories that must be watched for the inputs.
    fn desired(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut want: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        let mut add = |p: &Path, m: RecursiveMode| {
            let e = want.entry(p.to_path_buf()).or_insert(m);
            if m == RecursiveMode::Recursive {
                *e = m;
            }
        };
        add(&self.data_dir, RecursiveMode::NonRecursive);
        for d in self.image_dirs().into_iter().filter(|d| d.is_dir()) {
            add(&d, RecursiveMode::Recursive);
        }
        // The parent sees the data dir itself being replaced or created.
        if let Some(p) = self.data_dir.parent() {
            add(p, RecursiveMode::NonRecursive);
        }
        // The config's directory, not the file: editors and ConfigMaps replace files.
        if let Some(p) = self.config.as_deref().and_then(Path::parent) {
            add(p, RecursiveMode::NonRecursive);
        }
        if let Some(repo) = &self.repo {
            for (dir, recursive) in repo.watch_dirs() {
                let mode = if recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                add(&dir, mode);
            }
        }
        want.into_iter().collect()
    }

    /// Brings the watch set in line with the directories on disk.
    fn resync_watches(&mut self) {
        if self.set.sync(&self.desired()) {
            // The backend changed (fell back to polling): look at everything.
            self.mark(Dirty::ALL);
        }
    }

    /// Finds the checkout the workspace lives in (it may appear later: a clone).
    fn refresh_repo(&mut self) {
        let found = git::discover(&self.data_dir).or_else(|| {
            self.config
                .as_deref()
                .and_then(Path::parent)
                .and_then(git::discover)
        });
        if found != self.repo {
            self.repo = found;
            self.dirty.git = true;
        }
    }

    fn commit_now(&self) -> Option<String> {
        let repo = self.repo.as_ref()?;
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
        let now = Sigs {
            data: inputs::data_signature(&self.data_dir, &self.opts.source),
            config: self.config.as_deref().and_then(inputs::file_signature),
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
        if d.data {
            let sig = inputs::data_signature(&self.data_dir, &self.opts.source);
            // Stat first, hash only what may have changed: a nudge, a rescan
            // or an event on unchanged files reads no data. Only a usable
            // data set is trusted to its stats (a failure is looked at again).
            let unchanged = self.seen.data.is_ok() && self.hashed.as_ref() == Some(&sig);
            if !unchanged {
                self.seen.data = inputs::inspect_data(&self.data_dir, &self.opts.source);
                self.hashed = Some(sig.clone());
            }
            self.sigs.data = sig;
        }
        if let (true, Some(path)) = (d.config, &self.config) {
            self.sigs.config = inputs::file_signature(path);
            self.seen.config = Some(inputs::inspect_config(path));
        }
    }

    /// The problems in what was seen, and the snapshot it would be accepted as.
    fn judge(&self) -> (Vec<WatchReason>, Snapshot) {
        let mut problems = Vec::new();
        if let Err(p) = &self.seen.data {
            problems.push(WatchReason::DataInvalid {
                problems: p.clone(),
            });
        }
        if let (Some(Err(p)), Some(path)) = (&self.seen.config, &self.config) {
            problems.push(WatchReason::ConfigInvalid {
                path: path.clone(),
                problem: p.clone(),
            });
        }
        let next = Snapshot {
            fingerprint: self.seen.data.as_ref().ok().cloned(),
            config_hash: self.seen.config.clone().and_then(Result::ok),
            commit: self.seen.commit.clone(),
        };
        (problems, next)
    }

    fn send(&self, reasons: Vec<WatchReason>, snap: &Snapshot) -> bool {
        (self.tx)(WatchEvent {
            reasons,
            fingerprint: snap.fingerprint.clone(),
            commit: snap.commit.clone(),
        })
    }

    fn report(&mut self, problems: Vec<WatchReason>) -> bool {
        if problems == self.reported {
            return true;
        }
        for p in &problems {
            tracing::warn!(problem = ?p, "workspace input unusable; ignored until fixed");
        }
        self.reported = problems.clone();
        let acc = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        self.send(problems, &acc)
    }

    /// Sends what differs from the accepted state (nothing while any input
    /// is unusable); returns false once nobody listens.
    fn publish(&mut self, problems: Vec<WatchReason>, next: Snapshot) -> bool {
        if !problems.is_empty() {
            return self.report(problems);
        }
        if !self.reported.is_empty() {
            tracing::info!("workspace inputs are usable again");
            self.reported.clear();
        }
        let Ok(mut acc) = self.accepted.lock() else {
            return false;
        };
        let mut reasons = Vec::new();
        if let (Some(id), true) = (&next.commit, next.commit != acc.commit) {
            reasons.push(WatchReason::GitCommit { id: id.clone() });
        }
        if let (Some(fp), true) = (&next.fingerprint, next.fingerprint != acc.fingerprint) {
            reasons.push(WatchReason::DataChanged {
                fingerprint: fp.clone(),
            });
        }
        if let (Some(path), true) = (&self.config, next.config_hash != acc.config_hash) {
            reasons.push(WatchReason::ConfigChanged { path: path.clone() });
        }
        *acc = next.clone();
        drop(acc);
        if reasons.is_empty() {
            return true;
        }
        tracing::info!(?reasons, commit = ?next.commit, "workspace changed");
        self.send(reasons, &next)
    }
}

/// Whether an event of this kind can change what a file holds. Opening,
/// reading and closing a file unwritten (the watcher's own hashing makes
/// them) and access-time updates cannot: counting them made the watcher
/// re-hash the data set forever.
fn can_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    #[test]
    fn reading_a_file_is_no_change_and_writing_one_is() {
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Other,
        ] {
            assert!(!can_change_content(&quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(can_change_content(&change), "{change:?}");
        }
    }
}

//! The notify backend and the set of watched directories: watches what
//! exists, drops what vanished, re-adds a directory replaced under the same
//! name (new inode), and falls back to polling when native watching fails.
//! Its events travel as [`Msg`]s, the watcher thread's one inbox.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use super::{Backend, WatchError};

/// What reaches the watcher thread: the backend's file events, and the
/// [`super::Watcher`]'s nudges.
pub(super) enum Msg {
    Fs(notify::Result<notify::Event>),
    /// Look at everything again (after a fetch).
    Nudge,
    /// The watcher is dropped: end the thread.
    Stop,
}

pub(super) struct WatchSet {
    backend: Box<dyn notify::Watcher + Send>,
    kind: Backend,
    poll_interval: Duration,
    events: Sender<Msg>,
    /// Watched directories and the (device, inode) they had when added.
    watched: HashMap<PathBuf, (u64, u64)>,
}

fn make_backend(
    poll: bool,
    interval: Duration,
    tx: &Sender<Msg>,
) -> Result<(Box<dyn notify::Watcher + Send>, Backend), String> {
    let tx = tx.clone();
    let handler = move |res| {
        let _ = tx.send(Msg::Fs(res));
    };
    if poll {
        let cfg = notify::Config::default().with_poll_interval(interval);
        notify::PollWatcher::new(handler, cfg)
            .map(|w| {
                (
                    Box::new(w) as Box<dyn notify::Watcher + Send>,
                    Backend::Poll,
                )
            })
            .map_err(|e| e.to_string())
    } else {
        notify::RecommendedWatcher::new(handler, notify::Config::default())
            .map(|w| {
                (
                    Box::new(w) as Box<dyn notify::Watcher + Send>,
                    Backend::Native,
                )
            })
            .map_err(|e| e.to_string())
    }
}

impl WatchSet {
    /// The native backend unless `poll` (or unless it cannot start).
    pub(super) fn new(
        poll: bool,
        poll_interval: Duration,
        events: Sender<Msg>,
    ) -> Result<WatchSet, WatchError> {
        let (backend, kind) = match make_backend(poll, poll_interval, &events) {
            Ok(b) => b,
            Err(native) => {
                tracing::warn!("native file watching unavailable ({native}); polling instead");
                make_backend(true, poll_interval, &events)
                    .map_err(|poll| WatchError::Backend { native, poll })?
            }
        };
        Ok(WatchSet {
            backend,
            kind,
            poll_interval,
            events,
            watched: HashMap::new(),
        })
    }

    pub(super) fn kind(&self) -> Backend {
        self.kind
    }

    /// Makes the watched set match `desired` as the directories are now.
    /// Returns true when the backend was switched to polling on the way.
    pub(super) fn sync(&mut self, desired: &[(PathBuf, RecursiveMode)]) -> bool {
        for (path, mode) in desired {
            let id = fs::metadata(path)
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| (m.dev(), m.ino()));
            let old = self.watched.get(path).copied();
            if id == old {
                continue;
            }
            if old.is_some() {
                let _ = self.backend.unwatch(path);
                self.watched.remove(path);
            }
            let Some(id) = id else { continue };
            match self.backend.watch(path, *mode) {
                Ok(()) => {
                    self.watched.insert(path.clone(), id);
                }
                Err(e) if self.kind == Backend::Native => {
                    tracing::warn!(path = %path.display(), "cannot watch natively ({e}); polling instead");
                    match make_backend(true, self.poll_interval, &self.events) {
                        Ok((b, k)) => {
                            self.backend = b;
                            self.kind = k;
                            self.watched.clear();
                            self.sync(desired);
                            return true;
                        }
                        Err(e) => tracing::warn!("polling unavailable too: {e}"),
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), "cannot watch: {e}"),
            }
        }
        false
    }
}

//! Hot swap: the champion is loaded at start and again whenever `best/`
//! changes (file events on the state dir, non-recursive, for the renames a
//! promotion or rollback makes, and on `best/` itself), after a short
//! debounce. Loading verifies every checksum in `model.json`
//! (`predict::load_champion_within`); a champion that fails is logged and
//! the one being served stays. The engine's session (onnxruntime's, on the
//! verified `model.onnx`) is built here too, off the inference thread, which
//! only installs it between batches. Nothing in the state dir is written.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::batcher::Batcher;
use super::engine::{EngineSetup, Served};
use super::metrics::ServeMetrics;
use crate::predict::{self, PredictError};

/// Quiet time after the last event before loading (a promotion is two renames).
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often `--watch-poll` looks at the state dir.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Whether an event path is `best/` or inside it.
fn touches_best(state_dir: &Path, path: &Path) -> bool {
    path.strip_prefix(state_dir)
        .ok()
        .and_then(|rest| rest.components().next())
        .is_some_and(|c| c.as_os_str() == "best")
}

/// Starts the watcher thread; it loads the first champion at once. `poll`:
/// look at the state dir every [`POLL_EVERY`] (network filesystems) instead
/// of waiting for file events.
pub fn spawn(
    state_dir: PathBuf,
    setup: EngineSetup,
    poll: bool,
    batcher: Batcher,
    metrics: Arc<ServeMetrics>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let dir = state_dir.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if ev.paths.iter().any(|p| touches_best(&dir, p)) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("watching the state dir: {e}"),
    };
    let mut watcher: Box<dyn Watcher + Send> = if poll {
        let cfg = notify::Config::default().with_poll_interval(POLL_EVERY);
        Box::new(notify::PollWatcher::new(handler, cfg)?)
    } else {
        Box::new(notify::recommended_watcher(handler)?)
    };
    watcher
        .watch(&state_dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("{}: cannot watch: {e}", state_dir.display()))?;
    std::thread::Builder::new()
        .name("trainerd-swap".into())
        .spawn(move || {
            let mut swapper = Swapper {
                best: crate::state_dir::best(&state_dir),
                state_dir,
                setup,
                batcher,
                metrics,
                last: None,
            };
            swapper.run(watcher.as_mut(), &rx);
        })?;
    Ok(())
}

struct Swapper {
    state_dir: PathBuf,
    best: PathBuf,
    setup: EngineSetup,
    batcher: Batcher,
    metrics: Arc<ServeMetrics>,
    /// The card (as JSON) of the champion last handed to the batcher.
    last: Option<String>,
}

impl Swapper {
    fn run(&mut self, watcher: &mut dyn Watcher, rx: &mpsc::Receiver<()>) {
        loop {
            // Follow the directory now named best/ (a rename moves the old watch away).
            let _ = watcher.unwatch(&self.best);
            let _ = watcher.watch(&self.best, RecursiveMode::NonRecursive);
            if !self.load() {
                return;
            }
            if rx.recv().is_err() {
                return;
            }
            while rx.recv_timeout(DEBOUNCE).is_ok() {}
        }
    }

    /// Loads `best/` if it holds another champion; false once the batcher is gone.
    fn load(&mut self) -> bool {
        let card = match crate::model::card::load_champion(&self.state_dir) {
            Ok(Some(card)) => serde_json::to_string(&card).ok(),
            // Between a promotion's two renames, or no champion yet: wait for the next event.
            Ok(None) => return true,
            Err(e) => {
                self.failed(&e.to_string());
                return true;
            }
        };
        if card.is_some() && card == self.last {
            return true;
        }
        match predict::load_champion_within(&self.state_dir, self.setup.memory_budget) {
            Ok(champion) => {
                self.last = serde_json::to_string(&champion.card).ok();
                self.batcher
                    .swap(Served::new(champion, &self.best, self.setup))
            }
            Err(PredictError::NoModel(_)) => true,
            Err(e) => {
                self.failed(&e.to_string());
                true
            }
        }
    }

    fn failed(&self, what: &str) {
        self.metrics.swap_failures.inc();
        tracing::error!("cannot load the champion (still serving the previous one): {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_best_and_its_files_count() {
        let s = Path::new("/state");
        assert!(touches_best(s, Path::new("/state/best")));
        assert!(touches_best(s, Path::new("/state/best/model.json")));
        assert!(!touches_best(s, Path::new("/state/best.staging")));
        assert!(!touches_best(
            s,
            Path::new("/state/best.previous/model.json")
        ));
        assert!(!touches_best(s, Path::new("/state/heartbeat.json")));
        assert!(!touches_best(s, Path::new("/elsewhere/best")));
    }
}

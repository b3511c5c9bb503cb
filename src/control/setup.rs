//! The daemon's setup (`run`), off the async workers: the data set
//! (downloads included), then the workspace watcher, whose events
//! [`bridge_watcher`] turns into study requests for the control task.

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::{Busy, Report};
use crate::config::{Config, Options};
use crate::data::download::DownloadOptions;
use crate::pipeline::daemon::StudyRequest;
use crate::train::StopFlag;
use crate::watch::{WatchEvent, WatchOptions, WatchPaths, WatchReason, Watcher};

/// The daemon's setup, off the async workers: the data set first
/// (downloads included), then the watcher, so its first look is the data
/// the first study trains on. Its events become study requests.
pub(super) fn prepare_daemon(
    cfg: &Config,
    stop: StopFlag,
    args: Options,
    requests: UnboundedSender<StudyRequest>,
) -> Busy {
    let fetch_cfg = cfg.clone();
    let paths = WatchPaths::from_config(cfg, args.config.as_deref());
    let opts = WatchOptions::from_config(cfg);
    let (events_tx, events) = mpsc::unbounded_channel::<WatchEvent>();
    tokio::spawn(bridge_watcher(events, args, requests));
    let setup = tokio::task::spawn_blocking(move || {
        let fetch =
            DownloadOptions::within_watchdog(&fetch_cfg.mnist_mirrors, &stop, fetch_cfg.watchdog);
        crate::data::ensure_mnist(&fetch_cfg.data_dir, fetch_cfg.data_source.format, &fetch)?;
        let sink = Box::new(move |ev| events_tx.send(ev).is_ok());
        Ok(match Watcher::spawn_into(paths, opts, sink) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("workspace watcher not started, no automatic retraining: {e}");
                None
            }
        })
    });
    Box::pin(async move {
        Report::Prepared(match setup.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("daemon setup failed: {e}")),
        })
    })
}

/// Turns the watcher's events into study requests. A changed config is
/// validated first: a bad one is logged and the running configuration kept.
async fn bridge_watcher(
    mut events: UnboundedReceiver<WatchEvent>,
    args: Options,
    requests: UnboundedSender<StudyRequest>,
) {
    while let Some(ev) = events.recv().await {
        if !ev.retrain() {
            tracing::warn!(reasons = ?ev.reasons, "workspace input ignored until fixed");
            continue;
        }
        let config_changed = ev
            .reasons
            .iter()
            .any(|r| matches!(r, WatchReason::ConfigChanged { .. }));
        let config = if config_changed {
            let a = args.clone();
            match tokio::task::spawn_blocking(move || Config::resolve(&a)).await {
                Ok(Ok(c)) => Some(Box::new(c)),
                Ok(Err(e)) => {
                    tracing::warn!("new config rejected, keeping the running one: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("new config not read, keeping the running one: {e}");
                    continue;
                }
            }
        } else {
            None
        };
        tracing::info!(reasons = ?ev.reasons, commit = ?ev.commit, "workspace changed");
        let request = StudyRequest {
            reason: format!("{:?}", ev.reasons),
            config,
            force: true,
            commit: ev.commit.clone(),
        };
        if requests.send(request).is_err() {
            return;
        }
    }
}

//! From what was seen to what is sent: the problems in the inputs as last
//! looked at, the snapshot they would be accepted as, and the events that
//! say what differs from the accepted one (a persisting problem once).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{EventSink, Snapshot, WatchEvent, WatchReason};

/// The inputs as last looked at, usable or not.
pub(super) struct Seen {
    pub data: Result<String, Vec<String>>,
    pub config: Option<Result<String, String>>,
    pub commit: Option<String>,
}

impl Seen {
    /// Nothing looked at yet.
    pub fn nothing() -> Seen {
        Seen {
            data: Err(vec![]),
            config: None,
            commit: None,
        }
    }
}

/// The accepted snapshot, the problems last reported, and where events go.
pub(super) struct Publisher {
    /// The config file's path, when one is watched (named in its events).
    config: Option<PathBuf>,
    accepted: Arc<Mutex<Snapshot>>,
    /// Problems last reported (so a persisting problem is reported once).
    reported: Vec<WatchReason>,
    tx: EventSink,
}

impl Publisher {
    pub fn new(config: Option<PathBuf>, tx: EventSink) -> Publisher {
        Publisher {
            config,
            accepted: Arc::default(),
            reported: Vec::new(),
            tx,
        }
    }

    /// The accepted snapshot, shared with the [`super::Watcher`].
    pub fn accepted(&self) -> Arc<Mutex<Snapshot>> {
        self.accepted.clone()
    }

    /// The problems in what was seen, and the snapshot it would be accepted as.
    pub fn judge(&self, seen: &Seen) -> (Vec<WatchReason>, Snapshot) {
        let mut problems = Vec::new();
        if let Err(p) = &seen.data {
            problems.push(WatchReason::DataInvalid {
                problems: p.clone(),
            });
        }
        if let (Some(Err(p)), Some(path)) = (&seen.config, &self.config) {
            problems.push(WatchReason::ConfigInvalid {
                path: path.clone(),
                problem: p.clone(),
            });
        }
        let next = Snapshot {
            fingerprint: seen.data.as_ref().ok().cloned(),
            config_hash: seen.config.clone().and_then(Result::ok),
            commit: seen.commit.clone(),
        };
        (problems, next)
    }

    /// Takes `next` as the baseline (at start: no event) and reports its problems.
    pub fn baseline(&mut self, problems: Vec<WatchReason>, next: Snapshot) {
        if let Ok(mut acc) = self.accepted.lock() {
            *acc = next;
        }
        if !problems.is_empty() {
            self.report(problems);
        }
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
    pub fn publish(&mut self, problems: Vec<WatchReason>, next: Snapshot) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher for config `c.toml` whose events land in the returned list.
    fn publisher() -> (Publisher, Arc<Mutex<Vec<WatchEvent>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = sent.clone();
        let tx: EventSink = Box::new(move |e| {
            sink.lock().unwrap().push(e);
            true
        });
        (Publisher::new(Some("c.toml".into()), tx), sent)
    }

    fn seen(data: &str, config: Result<&str, &str>) -> Seen {
        Seen {
            data: Ok(data.into()),
            config: Some(config.map(str::to_string).map_err(str::to_string)),
            commit: None,
        }
    }

    fn step(p: &mut Publisher, s: &Seen) {
        let (problems, next) = p.judge(s);
        assert!(p.publish(problems, next));
    }

    #[test]
    fn a_persisting_problem_is_reported_once_and_nothing_accepted_meanwhile() {
        let (mut p, sent) = publisher();
        let (problems, next) = p.judge(&seen("d1", Ok("c1")));
        p.baseline(problems, next);
        step(&mut p, &seen("d2", Err("line 3: bad key")));
        step(&mut p, &seen("d2", Err("line 3: bad key")));
        let events = sent.lock().unwrap().clone();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(!events[0].retrain());
        assert_eq!(
            events[0].fingerprint.as_deref(),
            Some("d1"),
            "the accepted one"
        );
        assert!(matches!(
            &events[0].reasons[..],
            [WatchReason::ConfigInvalid { problem, .. }] if problem == "line 3: bad key"
        ));
        // Fixed: one event with both changes, then nothing for the same state.
        step(&mut p, &seen("d2", Ok("c2")));
        step(&mut p, &seen("d2", Ok("c2")));
        let events = sent.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].reasons,
            vec![
                WatchReason::DataChanged {
                    fingerprint: "d2".into()
                },
                WatchReason::ConfigChanged {
                    path: "c.toml".into()
                },
            ]
        );
        assert_eq!(
            p.accepted().lock().unwrap().config_hash.as_deref(),
            Some("c2")
        );
    }
}

//! `trainerd run`: what wakes an idle daemon. The daemon itself (run or
//! resume the configured study, promote and notify as it goes, then idle
//! until a new study is requested or a stop) is the control plane's loop
//! (`control`); this is the request it acts on.

use crate::config::Config;

/// A request to start a new study: what wakes an idle daemon.
#[derive(Debug, Clone)]
pub struct StudyRequest {
    /// Why (logged): e.g. "data changed", "trainerd.toml changed".
    pub reason: String,
    /// A new, validated configuration; `None` keeps the current one.
    pub config: Option<Box<Config>>,
    /// Start a new study even if settings and data are unchanged (otherwise a
    /// request whose study already finished leaves the daemon idle).
    pub force: bool,
    /// The workspace's commit when the request was made, if a checkout.
    pub commit: Option<String>,
}

impl StudyRequest {
    /// Folds a request that arrived while `self` waited (a study was
    /// running) into one: the study starts once, on the newest inputs, with
    /// the newest configuration either of them brought.
    pub fn merge(self, later: StudyRequest) -> StudyRequest {
        StudyRequest {
            reason: format!("{}; {}", self.reason, later.reason),
            config: later.config.or(self.config),
            force: self.force || later.force,
            commit: later.commit.or(self.commit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_requests_keep_the_newest_config_and_any_force() {
        let req = |reason: &str, config: Option<u64>, force| StudyRequest {
            reason: reason.into(),
            config: config.map(|seed| {
                let args = crate::config::Options {
                    seed: Some(seed),
                    ..Default::default()
                };
                Box::new(Config::resolve(&args).unwrap())
            }),
            force,
            commit: None,
        };
        let m = req("config", Some(7), true).merge(req("data", None, false));
        assert_eq!(m.reason, "config; data");
        assert_eq!(m.config.map(|c| c.seed), Some(7), "kept the earlier config");
        assert!(m.force);
        let m = req("a", Some(1), false).merge(req("b", Some(2), false));
        assert_eq!(m.config.map(|c| c.seed), Some(2), "the newer config wins");
        assert!(!m.force);
    }
}

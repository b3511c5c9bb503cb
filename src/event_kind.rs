//! The kinds of pipeline events, each declared once with the name that
//! `events.jsonl` lines and webhook payloads carry. A line written by a
//! newer build with a kind this one does not know reads back as
//! [`EventKind::Other`], so old and new logs stay readable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened, as one word of the event log.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
            /// A kind this build does not know, kept as written.
            Other(String),
        }

        impl EventKind {
            /// Every known kind, in the order a study emits them.
            pub const ALL: &[EventKind] = &[$(EventKind::$variant,)*];

            /// The name written in the log and sent to webhooks.
            pub fn as_str(&self) -> &str {
                match self {
                    $(EventKind::$variant => $name,)*
                    EventKind::Other(s) => s,
                }
            }
        }

        /// The names of every known kind, in the order of [`EventKind::ALL`].
        pub const KINDS: &[&str] = &[$($name,)*];
    };
}

event_kinds! {
    StudyStarted = "study_started",
    /// A study picked up again after the process restarted.
    Resumed = "resumed",
    TrialStarted = "trial_started",
    ArchitectureChanged = "architecture_changed",
    TrialPruned = "trial_pruned",
    TrialDiverged = "trial_diverged",
    TrialFinished = "trial_finished",
    /// A trial was promoted to champion.
    NewBest = "new_best",
    BelowTarget = "below_target",
    TargetReached = "target_reached",
    BudgetExhausted = "budget_exhausted",
    /// Stopped on request.
    Stopped = "stopped",
    /// New inputs arrived mid-study: it stopped and a new study starts.
    StudySuperseded = "study_superseded",
}

/// Events sent when `--webhook-events` is not given.
pub const DEFAULT_WEBHOOK_EVENTS: &[&str] = &[
    "new_best",
    "below_target",
    "target_reached",
    "budget_exhausted",
];

impl From<&str> for EventKind {
    fn from(name: &str) -> EventKind {
        EventKind::ALL
            .iter()
            .find(|k| k.as_str() == name)
            .cloned()
            .unwrap_or_else(|| EventKind::Other(name.to_string()))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventKind, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(EventKind::from(name.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_list() {
        let names: Vec<&str> = EventKind::ALL.iter().map(EventKind::as_str).collect();
        assert_eq!(names, KINDS);
        for k in EventKind::ALL {
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(&serde_json::from_str::<EventKind>(&json).unwrap(), k);
        }
    }

    #[test]
    fn an_unknown_kind_reads_back_as_written() {
        let k: EventKind = serde_json::from_str("\"model_exported\"").unwrap();
        assert_eq!(k, EventKind::Other("model_exported".into()));
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"model_exported\"");
        assert_eq!(EventKind::from("new_best"), EventKind::NewBest);
    }
}

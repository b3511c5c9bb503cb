//! What a study needs from the process ([`Context`]), and the slot through
//! which the control plane tells a running study why it gives way.

use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

use super::events::Event;
use crate::config::Config;
use crate::telemetry::heartbeat::Liveness;
use crate::train::{Progress, StopFlag};

/// What a study needs from the process.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub stop: &'a StopFlag,
    pub progress: &'a Progress,
    pub live: &'a Liveness,
    /// Where new events go besides the log (the webhook sink).
    pub notify: Option<UnboundedSender<Event>>,
    /// Start a new study even when the journal's latest one has the same settings.
    pub force_new: bool,
    /// Set by the control plane before it raises `stop` when new inputs
    /// supersede this study: the stop is journaled as `Superseded`.
    pub supersede: &'a SupersedeSlot,
}

/// Why the running study gives way to a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supersession {
    pub reason: String,
    /// The workspace's commit the new study trains on, if a checkout.
    pub commit: Option<String>,
}

/// Shared between the control task (writes) and the study (reads at its stop).
pub type SupersedeSlot = Arc<Mutex<Option<Supersession>>>;

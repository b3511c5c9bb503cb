//! What both front ends (REST in [`super::http`], gRPC in [`super::grpc`])
//! do with a decoded request: find the model it names, queue its images for
//! the batcher and wait for the logits. A [`Failure`] says what went wrong
//! in terms each front end maps to its own status (an HTTP code, a gRPC code).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::batcher::{Answer, Batcher, Job, JobError, Loaded, Shared};
use super::metrics::ServeMetrics;
use super::protocol::{Validated, MODEL_NAME};

/// Why a request was not answered with logits, and the message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No such model or version (404, NOT_FOUND).
    NotFound(String),
    /// Not loaded yet, queue full, shutting down (503, UNAVAILABLE).
    Unavailable(String),
    /// The request does not fit the model (400, INVALID_ARGUMENT).
    Invalid(String),
    /// The inference thread failed (500, INTERNAL).
    Internal(String),
}

/// The inference path both front ends share.
#[derive(Clone)]
pub struct Core {
    pub shared: Arc<Shared>,
    pub batcher: Batcher,
    pub metrics: Arc<ServeMetrics>,
}

impl Core {
    /// The loaded model if `name` (and `version`, if given and not empty) name it.
    pub fn lookup(&self, name: &str, version: Option<&str>) -> Result<Loaded, Failure> {
        if name != MODEL_NAME {
            return Err(Failure::NotFound(format!(
                "unknown model {name:?}; this server serves \"{MODEL_NAME}\""
            )));
        }
        let Some(loaded) = self.shared.loaded() else {
            return Err(Failure::Unavailable(format!(
                "model \"{MODEL_NAME}\" is not loaded yet (no verified champion)"
            )));
        };
        match version.filter(|v| !v.is_empty()) {
            Some(v) if v != loaded.version.to_string() => Err(Failure::NotFound(format!(
                "model \"{MODEL_NAME}\" version {v:?} is not loaded; version {} is",
                loaded.version
            ))),
            _ => Ok(loaded),
        }
    }

    /// Queues `v`'s images (taken out of it) and waits for their logits;
    /// `arriving` stops counting the request as arriving once it is queued.
    pub async fn infer(&self, v: &mut Validated, arriving: Arriving) -> Result<Answer, Failure> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            pixels: std::mem::take(&mut v.pixels),
            n: v.n,
            reply,
        };
        // No longer arriving once queued: the batcher waits its window only for others.
        drop(arriving);
        if !self.batcher.submit(job) {
            return Err(Failure::Unavailable(
                "the inference queue is full; retry".into(),
            ));
        }
        match answer.await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(JobError::Reshaped(per))) => Err(Failure::Invalid(format!(
                "the model changed while the request waited; it takes {per} values per image"
            ))),
            Ok(Err(e @ JobError::NotReady)) => Err(Failure::Unavailable(e.to_string())),
            Ok(Err(e)) => Err(Failure::Internal(e.to_string())),
            Err(_) => Err(Failure::Internal("the inference thread stopped".into())),
        }
    }
}

/// Counts a request as arriving (the batcher waits its window for it) until dropped.
pub struct Arriving(Arc<Shared>);

impl Arriving {
    pub fn new(shared: &Arc<Shared>) -> Arriving {
        shared.arriving.fetch_add(1, Ordering::AcqRel);
        Arriving(shared.clone())
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.0.arriving.fetch_sub(1, Ordering::AcqRel);
    }
}

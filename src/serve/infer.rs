//! What both front ends (REST in [`super::http`], gRPC in [`super::grpc`])
//! do with a decoded request: find the model it names (the champion, or a
//! kept version from [`super::kept`]), queue its images for that model's
//! batcher and wait for the logits. A [`Failure`] says what went wrong
//! (in [`super::failure`], below both this file and [`super::kept`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::batcher::{Answer, Batcher, Job, JobError, Loaded, Shared};
use super::failure::Failure;
use super::kept::Kept;
use super::metrics::ServeMetrics;
use super::protocol::{Validated, MODEL_NAME};

/// The inference path both front ends share.
#[derive(Clone)]
pub struct Core {
    pub shared: Arc<Shared>,
    pub batcher: Batcher,
    pub metrics: Arc<ServeMetrics>,
    pub kept: Arc<Kept>,
}

/// The model a request goes to, and the thread that runs it.
pub struct Target {
    pub loaded: Loaded,
    batcher: Batcher,
}

impl Core {
    /// The model `name` and `version` name: the champion when `version`
    /// is absent, empty or the champion's, else kept version N, loaded on
    /// first use.
    pub async fn resolve(&self, name: &str, version: Option<&str>) -> Result<Target, Failure> {
        if name != MODEL_NAME {
            return Err(Failure::NotFound(format!(
                "unknown model {name:?}; this server serves \"{MODEL_NAME}\""
            )));
        }
        let champion = self.shared.loaded();
        let wanted = version.filter(|v| !v.is_empty());
        if let Some(loaded) = champion.filter(|l| wanted.is_none_or(|v| v == l.version.to_string()))
        {
            return Ok(Target {
                loaded,
                batcher: self.batcher.clone(),
            });
        }
        let Some(v) = wanted else {
            return Err(Failure::Unavailable(format!(
                "model \"{MODEL_NAME}\" is not loaded yet (no verified champion)"
            )));
        };
        let n: u64 = v.parse().map_err(|_| {
            Failure::NotFound(format!(
                "model \"{MODEL_NAME}\" has no version {v:?}; versions are promotion numbers \
                 (`trainerd models` lists the kept ones)"
            ))
        })?;
        let slot = self.kept.get(n).await?;
        Ok(Target {
            loaded: slot.loaded,
            batcher: slot.batcher,
        })
    }

    /// Queues `v`'s images (taken out of it) and waits for their logits;
    /// `arriving` stops counting the request as arriving once it is queued.
    pub async fn infer(
        &self,
        target: &Target,
        v: &mut Validated,
        arriving: Arriving,
    ) -> Result<Answer, Failure> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            pixels: std::mem::take(&mut v.pixels),
            n: v.n,
            reply,
        };
        // No longer arriving once queued: the batcher waits its window only for others.
        drop(arriving);
        if !target.batcher.submit(job) {
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

//! The six calls of `GRPCInferenceService`, answered from the same
//! [`Core`] as the REST routes: the same model lookup, validation, batcher
//! and hot-swapped champion, so both protocols give the same answers.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use tonic::{Code, Request, Response, Status};

use super::pb::grpc_inference_service_server::GrpcInferenceService;
use super::pb::model_metadata_response::TensorMetadata;
use super::pb::*;
use super::tensor;
use crate::serve::failure::Failure;
use crate::serve::infer::{Arriving, Core};
use crate::serve::{metadata, protocol};

/// Requests whose values are larger than this are decoded on a blocking thread.
const DECODE_INLINE: usize = 64 << 10;

pub struct Inference {
    core: Core,
    /// Decoded calls being validated or answered at once (more wait).
    slots: Arc<Semaphore>,
}

impl Inference {
    pub fn new(core: Core, in_flight: usize) -> Inference {
        Inference {
            core,
            slots: Arc::new(Semaphore::new(in_flight.max(1))),
        }
    }
}

/// A shared-path failure as a gRPC status.
fn status_of(f: Failure) -> Status {
    match f {
        Failure::NotFound(w) => Status::not_found(w),
        Failure::Unavailable(w) => Status::unavailable(w),
        Failure::Invalid(w) => Status::invalid_argument(w),
        Failure::Internal(w) => Status::internal(w),
    }
}

fn tensors(list: Vec<metadata::TensorMetadata>) -> Vec<TensorMetadata> {
    list.into_iter()
        .map(|t| TensorMetadata {
            name: t.name.into(),
            datatype: t.datatype.into(),
            shape: t.shape,
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.core.shared.loaded().is_some();
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        req: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let req = req.into_inner();
        let ready = match self.core.resolve(&req.name, Some(&req.version)).await {
            Ok(_) => true,
            Err(Failure::NotFound(w)) if req.name != protocol::MODEL_NAME => {
                return Err(Status::not_found(w))
            }
            Err(_) => false,
        };
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let m = metadata::server_metadata();
        Ok(Response::new(ServerMetadataResponse {
            name: m.name.into(),
            version: m.version.into(),
            extensions: m.extensions.into_iter().map(String::from).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let req = req.into_inner();
        let l = self
            .core
            .resolve(&req.name, Some(&req.version))
            .await
            .map_err(status_of)?
            .loaded;
        let m = metadata::model_metadata(l.geometry, l.version, &l.class_names, l.platform);
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.into(),
            versions: m.versions,
            platform: m.platform.into(),
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let start = Instant::now();
        // Taken once the message has arrived, so a stream that never finishes
        // sending holds no slot (the guard's deadline ends it).
        let _slot = self.slots.acquire().await;
        let answer = self.infer(req.into_inner()).await;
        let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.core
            .metrics
            .observe_grpc(code, start.elapsed().as_secs_f64());
        answer.map(Response::new)
    }
}

impl Inference {
    async fn infer(&self, req: ModelInferRequest) -> Result<ModelInferResponse, Status> {
        let arriving = Arriving::new(&self.core.shared);
        let target = self
            .core
            .resolve(&req.model_name, Some(&req.model_version))
            .await
            .map_err(status_of)?;
        let geo = target.loaded.geometry;
        let mut v = if tensor::payload_bytes(&req) > DECODE_INLINE {
            tokio::task::spawn_blocking(move || tensor::validate(req, geo))
                .await
                .unwrap_or_else(|e| Err(format!("decoding failed: {e}")))
        } else {
            tensor::validate(req, geo)
        }
        .map_err(Status::invalid_argument)?;
        let a = self
            .core
            .infer(&target, &mut v, arriving)
            .await
            .map_err(status_of)?;
        let resp = protocol::respond(&v, a.logits, a.classes, a.version);
        Ok(tensor::response_of(resp))
    }
}

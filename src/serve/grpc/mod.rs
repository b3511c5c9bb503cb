//! The Open Inference Protocol's gRPC form (`GRPCInferenceService`, as
//! KServe and Triton serve it) on tonic, beside the REST API and sharing
//! its batcher and hot swap (`trainerd serve --grpc-addr`, `run --grpc-addr`).
//!
//! # Layout
//! - [`pb`]: the types and stubs build.rs generates from `proto/inference.proto`
//! - [`service`]: the six calls, answered through [`super::infer::Core`]
//! - [`tensor`]: `ModelInferRequest` to the REST path's request and back
//! - [`listen`]: the listener (connection cap, first-byte timeout)
//! - [`guard`]: per-call byte budget, deadline and the over-size status
//! - [`budget`]: the request body that takes each message's bytes from the budget
//!
//! Limits, as on the REST side: messages of at most [`MAX_MESSAGE`] bytes
//! (larger ones are refused from their 5-byte length prefix, before any
//! is buffered: RESOURCE_EXHAUSTED), messages received, decoded and
//! answered within the byte budget shared with the REST API's bodies
//! ([`super::http::BODY_BUDGET_KIB`]), [`MAX_IN_FLIGHT`] decoded calls
//! answered at once, each within [`super::http::REQUEST_TIMEOUT`]
//! (DEADLINE_EXCEEDED), flow-control windows of [`WINDOW`] bytes so a
//! connection's unread data stays small, and the same connection cap.

pub mod budget;
pub mod guard;
pub mod listen;
pub mod service;
pub mod tensor;

/// The generated protobuf types, server and client of `inference.GRPCInferenceService`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod pb {
    tonic::include_proto!("inference");
}

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

use super::infer::Core;

/// Largest message either way: as large as the REST API's largest body.
pub const MAX_MESSAGE: usize = super::http::MAX_BODY;
/// Decoded calls being validated or answered at once (more wait for a
/// slot). A message still arriving holds none: what it buffers is bounded
/// by the bytes its client actually sends, within the request timeout.
pub const MAX_IN_FLIGHT: usize = 32;
/// HTTP/2 flow-control window, per stream and per connection.
pub const WINDOW: u32 = 256 << 10;
/// Largest HTTP/2 frame a client may send (the protocol's default is 16
/// KiB): a batch of 64 UINT8 images (50 KB) then arrives as one DATA frame
/// rather than four, one write for the client and one read for the server.
/// What a connection buffers stays within [`WINDOW`] (no DATA frame may
/// exceed the window) and this for the frame being read.
pub const MAX_FRAME: u32 = 64 << 10;
/// Concurrent streams one connection may open.
pub const MAX_STREAMS: u32 = 128;

/// The limits of one gRPC listener.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    pub max_connections: usize,
    /// Time for a new connection to send its first byte.
    pub first_byte: Duration,
    pub request_timeout: Duration,
}

/// Serves `core` over gRPC on `listener` until `stopped` fires; messages
/// take their bytes (in KiB) from `budget`, as REST bodies do.
pub fn spawn(
    listener: TcpListener,
    core: Core,
    limits: GrpcLimits,
    budget: Arc<Semaphore>,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let guard = guard::GuardLayer::new(limits.request_timeout, core.metrics.clone(), budget);
    let svc = pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(
        service::Inference::new(core, MAX_IN_FLIGHT),
    )
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(4 * MAX_MESSAGE);
    let incoming = listen::incoming(listener, limits.max_connections, limits.first_byte);
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_frame_size(MAX_FRAME)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .layer(guard)
        .add_service(svc);
    tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!("the gRPC server stopped: {e}");
        }
    });
    Ok(addr)
}

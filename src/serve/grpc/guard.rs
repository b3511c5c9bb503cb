//! A tower layer around the gRPC routes: each call's message is read
//! within the byte budget it shares with the REST API (`budget`), the call
//! must be answered within the request timeout, its message's arrival and
//! its wait for budget included (DEADLINE_EXCEEDED otherwise), and tonic's "message too large"
//! (OUT_OF_RANGE) is answered as RESOURCE_EXHAUSTED, the code gRPC gives
//! an over-size message, with what the limit is and what to do. Calls
//! refused here never reach a handler, so they are counted here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::budget::{Budgeted, Held};
use crate::serve::metrics::ServeMetrics;

#[derive(Clone)]
pub struct GuardLayer {
    timeout: Duration,
    metrics: Arc<ServeMetrics>,
    /// KiB permits, shared with the REST API.
    budget: Arc<Semaphore>,
}

impl GuardLayer {
    pub fn new(
        timeout: Duration,
        metrics: Arc<ServeMetrics>,
        budget: Arc<Semaphore>,
    ) -> GuardLayer {
        GuardLayer {
            timeout,
            metrics,
            budget,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            timeout: self.timeout,
            metrics: self.metrics.clone(),
            budget: self.budget.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    timeout: Duration,
    metrics: Arc<ServeMetrics>,
    budget: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is ready (tower's pattern): swap it in for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (timeout, metrics) = (self.timeout, self.metrics.clone());
        // Released when the call is answered (or its body dropped, if later).
        let held = Held::default();
        let req = req.map(|body| Budgeted::wrap(body, self.budget.clone(), held.clone()));
        Box::pin(async move {
            let _held = held;
            let start = std::time::Instant::now();
            match tokio::time::timeout(timeout, inner.call(req)).await {
                Ok(Ok(resp)) => Ok(with_size_code(resp, &metrics, start)),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    metrics.observe_grpc(Code::DeadlineExceeded, start.elapsed().as_secs_f64());
                    Ok(Status::deadline_exceeded(format!(
                        "not answered within {}s (the server's request timeout)",
                        timeout.as_secs()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// The response, with tonic's OUT_OF_RANGE for an over-size message
/// replaced by RESOURCE_EXHAUSTED and a message saying what to do.
fn with_size_code(
    mut resp: Response<Body>,
    metrics: &ServeMetrics,
    start: std::time::Instant,
) -> Response<Body> {
    let status = match Status::from_header_map(resp.headers()) {
        Some(s) if s.code() == Code::OutOfRange && s.message().contains("length too large") => s,
        _ => return resp,
    };
    let what = format!(
        "{}; send fewer images per request",
        status.message().trim_start_matches("Error, ")
    );
    metrics.observe_grpc(Code::ResourceExhausted, start.elapsed().as_secs_f64());
    let headers = resp.headers_mut();
    headers.insert(
        "grpc-status",
        HeaderValue::from(Code::ResourceExhausted as i32),
    );
    if let Ok(v) = HeaderValue::from_str(&what) {
        headers.insert("grpc-message", v);
    }
    resp
}

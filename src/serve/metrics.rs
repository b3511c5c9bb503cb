//! `/metrics` of the serving endpoint (Prometheus text format, encoded by
//! `prometheus-client`): REST requests by status code, gRPC requests by
//! gRPC code, request latency (both), images per forward pass, the model
//! version being served, swaps.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type CodeLabels = Vec<(String, String)>;

pub struct ServeMetrics {
    registry: Registry,
    pub requests: Family<CodeLabels, Counter>,
    pub grpc_requests: Family<CodeLabels, Counter>,
    pub latency: Histogram,
    pub batch_images: Histogram,
    pub model_version: Gauge,
    pub swaps: Counter,
    pub swap_failures: Counter,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        let grpc_requests = Family::<CodeLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let batch_images = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let model_version = Gauge::default();
        let swaps = Counter::default();
        let swap_failures = Counter::default();
        let mut registry = Registry::with_prefix("trainerd_serve");
        registry.register(
            "requests",
            "HTTP requests answered, by status code",
            requests.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC ModelInfer calls answered, by gRPC status code",
            grpc_requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response",
            latency.clone(),
        );
        registry.register(
            "batch_images",
            "Images per forward pass",
            batch_images.clone(),
        );
        registry.register(
            "model_version",
            "Version (promotion count) of the champion being served; 0: none",
            model_version.clone(),
        );
        registry.register(
            "swaps",
            "Champions swapped in after the first",
            swaps.clone(),
        );
        registry.register(
            "swap_failures",
            "Champions that could not be loaded (the old one kept serving)",
            swap_failures.clone(),
        );
        ServeMetrics {
            registry,
            requests,
            grpc_requests,
            latency,
            batch_images,
            model_version,
            swaps,
            swap_failures,
        }
    }
}

impl ServeMetrics {
    /// Counts one answered request.
    pub fn observe(&self, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![("code".to_string(), status.to_string())])
            .inc();
        self.latency.observe(seconds);
    }

    /// Counts one answered gRPC inference call.
    pub fn observe_grpc(&self, code: tonic::Code, seconds: f64) {
        let name = match code {
            tonic::Code::Ok => "OK".to_string(),
            other => format!("{other:?}"),
        };
        self.grpc_requests
            .get_or_create(&vec![("code".to_string(), name)])
            .inc();
        self.latency.observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode the serving metrics: {e}");
        }
        out
    }
}

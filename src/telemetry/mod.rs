//! Telemetry: logging, the heartbeat file and the watchdog, Prometheus
//! metrics and their endpoint, the progress bar.

pub mod bar;
pub mod heartbeat;
pub mod http;
pub mod logging;
pub mod metrics;

//! Telemetry: logging setup, the heartbeat file and the watchdog.

pub mod heartbeat;
pub mod logging;

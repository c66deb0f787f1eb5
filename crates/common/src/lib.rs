//! Pieces every brainbox-guard program shares: configuration loading (file + `BRAINBOX_*`
//! environment, exit code 64 on a bad key), JSON `tracing` logs, and the Prometheus endpoint.

pub mod config;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
pub mod telemetry;

/// Exit code for a bad configuration or command line (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code when a required part of the system (kernel feature, daemon) is unavailable
/// (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

//! The sidecar's one configuration struct.

use brainbox_common::{
    config::{ConfigError, Validate},
    metrics::MetricsConfig,
    telemetry::LogConfig,
};
use serde::Deserialize;

/// Everything the sidecar can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarConfig {
    /// The pod this sidecar serves (reported in logs and metrics).
    pub pod_name: String,
    /// `[log]`.
    pub log: LogConfig,
    /// `[metrics]`: `/metrics` and `/healthz`.
    pub metrics: MetricsConfig,
    /// `[sandbox]`: self-sandboxing (capabilities, no_new_privs, seccomp).
    pub sandbox: crate::sandbox::SandboxConfig,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            pod_name: String::new(),
            log: LogConfig::default(),
            metrics: MetricsConfig::on("127.0.0.1:9465"),
            sandbox: Default::default(),
        }
    }
}

impl Validate for SidecarConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate("log")?;
        self.metrics.addr("metrics")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainbox_common::config::load_from;

    #[test]
    fn unknown_key_is_refused() {
        let e = load_from::<SidecarConfig, _>(
            None,
            [("BRAINBOX_PODNAME".to_string(), "x".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("podname"), "{e}");
    }
}

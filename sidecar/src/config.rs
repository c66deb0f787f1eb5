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
    /// `[redact]`: log redaction.
    pub redact: RedactConfig,
    /// `[egress]`: the identity-keyed allowlist proxy.
    pub egress: crate::egress::EgressConfig,
    /// `[svid]`: the pod's SPIFFE identity.
    pub svid: crate::svid::SvidConfig,
    /// `[sandbox]`: self-sandboxing (capabilities, no_new_privs, seccomp).
    pub sandbox: crate::sandbox::SandboxConfig,
}

/// `[redact]`: where the redaction rules and the fingerprint key come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Directory of `kind: redact-rules` files (e.g. `/etc/brainbox/profiles/redact`).
    pub rules_dir: Option<std::path::PathBuf>,
    /// File whose content keys the fingerprints; pods that share it correlate findings.
    pub key_file: Option<std::path::PathBuf>,
    /// `[redact.pipeline]`: inputs and output of the pipeline `run` starts (absent: none).
    pub pipeline: Option<crate::redact::config::PipelineSection>,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            pod_name: String::new(),
            log: LogConfig::default(),
            metrics: MetricsConfig::on("127.0.0.1:9465"),
            redact: RedactConfig::default(),
            egress: crate::egress::EgressConfig::default(),
            svid: crate::svid::SvidConfig::default(),
            sandbox: Default::default(),
        }
    }
}

impl Validate for SidecarConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate("log")?;
        self.metrics.addr("metrics")?;
        self.egress.validate("egress")?;
        self.svid.validate()?;
        if let Some(p) = &self.redact.pipeline {
            p.validate("redact.pipeline")?;
        }
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

    #[test]
    fn egress_keys_are_checked() {
        let e = load_from::<SidecarConfig, _>(
            None,
            [("BRAINBOX_EGRESS__LISTEN".to_string(), "nowhere".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("egress.listen"), "{e}");
        let e = load_from::<SidecarConfig, _>(
            None,
            [(
                "BRAINBOX_EGRESS__LIMITS__MAX_CONNECTIONS".to_string(),
                "0".to_string(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
    }

    #[test]
    fn redact_pipeline_is_off_unless_configured_and_checked_when_it_is() {
        let c = load_from::<SidecarConfig, _>(None, []).unwrap();
        assert!(c.redact.pipeline.is_none());
        let e = load_from::<SidecarConfig, _>(
            None,
            [
                (
                    "BRAINBOX_REDACT__PIPELINE__SOCKET".to_string(),
                    "/tmp/l.sock".to_string(),
                ),
                (
                    "BRAINBOX_REDACT__PIPELINE__OUTPUT".to_string(),
                    "nats".to_string(),
                ),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("redact.pipeline.nats.url"), "{e}");
        let e = load_from::<SidecarConfig, _>(
            None,
            [(
                "BRAINBOX_REDACT__PIPELINE__OUTPUT".to_string(),
                "kafka".to_string(),
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("redact.pipeline.output"), "{e}");
    }
}

//! JSON `tracing` logs on stderr with stable field names.

use serde::Deserialize;
use tracing_subscriber::{fmt, EnvFilter};

/// Logging settings, embedded as `[log]` in every program's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// An `EnvFilter` directive such as `info` or `brainbox_node_agent=debug`.
    pub level: String,
    /// `json` (default, for machines) or `text` (for people at a terminal).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

impl LogConfig {
    /// Checks the filter directive so a typo is a configuration error, not silence.
    pub fn validate(&self, key: &str) -> Result<(), crate::config::ConfigError> {
        EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| crate::config::ConfigError::invalid(format!("{key}.level"), e.to_string()))
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

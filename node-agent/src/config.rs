//! The node agent's one configuration struct (`--config FILE` plus `BRAINBOX_*` variables).

use brainbox_common::{
    config::{ConfigError, Validate},
    metrics::MetricsConfig,
    telemetry::LogConfig,
};
use serde::Deserialize;
use std::path::PathBuf;

/// Everything the node agent can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Node name reported in events (default: the host name).
    pub node_name: String,
    /// Folder of brainbox profiles.
    pub profiles_dir: PathBuf,
    /// `[log]`: level and format.
    pub log: LogConfig,
    /// `[metrics]`: Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[sensor]`: eBPF settings.
    pub sensor: SensorConfig,
    /// `[docker]`: where containers come from.
    pub docker: DockerConfig,
    /// `[events]`: where events go.
    pub events: EventsConfig,
    /// `[zones]`: network zone enforcement.
    pub zones: ZonesConfig,
    /// `[privileges]`: the capabilities the agent keeps (docs/hardening.md).
    pub privileges: crate::safety::privileges::PrivilegesConfig,
    /// `[images]`: the known-good image baseline for brainboxes.
    pub images: crate::safety::baseline::ImagesConfig,
    /// `[rules]`: detection rules.
    pub rules: RulesConfig,
    /// `[response]`: freeze, capture, seal, recycle.
    pub response: crate::response::ResponseConfig,
    /// `[alerts]`: NATS JetStream and the spool.
    pub alerts: crate::alerting::AlertsConfig,
    /// `[identity]`: the SPIFFE Workload API server.
    pub identity: crate::identity::IdentityConfig,
    /// `[kubernetes]`: the API server, for recycling pods.
    pub kubernetes: crate::runtime::kube::KubeConfig,
}

/// Network zone enforcement settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZonesConfig {
    /// Enforce zones (default true).
    pub enabled: bool,
    /// bpffs directory for pinned maps, programs and links.
    pub pin_dir: PathBuf,
    /// Enforce only on containers with this `key=value` label (empty: every watched container).
    /// For sharing one host between independent labs and tests.
    pub only_label: String,
    /// Reload the policy when files in `profiles_dir` change (default true).
    pub watch_profiles: bool,
}

impl Default for ZonesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pin_dir: PathBuf::from("/sys/fs/bpf/brainbox/zones"),
            only_label: String::new(),
            watch_profiles: true,
        }
    }
}

impl ZonesConfig {
    /// `only_label` split at the first `=`.
    pub fn only_label(&self) -> Option<(String, String)> {
        self.only_label
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    }
}

/// Detection rule settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Evaluate rules (default true).
    pub enabled: bool,
    /// Falco rule files, loaded in order: upstream first, then overrides.
    pub files: Vec<PathBuf>,
    /// How often the host names rules compare `fd.sip.name`/`fd.cip.name` with are resolved
    /// again, seconds; 0 never resolves them (those checks then never match).
    pub dns_refresh_secs: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            files: vec![
                PathBuf::from("rules/falco/falco_rules.yaml"),
                PathBuf::from("profiles/rules/brainbox-overrides.yaml"),
            ],
            dns_refresh_secs: 30,
        }
    }
}

/// eBPF sensor settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Ring buffer size in bytes; a power of two, at least one page. The default, 8 MiB, holds
    /// about 100 ms of events at 300k syscalls/s (4 MiB dropped 0.1 % in the sensor bench). The
    /// consumer maps the data pages twice (for wrap-around), so the process's RSS counts the
    /// ring twice while the memory used is its size once.
    pub ring_buffer_bytes: u32,
    /// Seconds between reads of the kernel's event and drop counters.
    pub stats_interval_secs: u64,
    /// How the syscall programs attach: `raw` (two raw tracepoints, `raw_syscalls:sys_enter`
    /// and `sys_exit`, dispatching on the syscall number in BPF) or `tracepoints` (one
    /// `syscalls:sys_enter_*`/`sys_exit_*` tracepoint per syscall). See docs/sensor.md for which
    /// is the default and why.
    pub attach: SensorAttach,
    /// At most one `Sensor dropped events` alert per this many seconds (it counts every drop
    /// since the last one); 0 turns the alert off (drops are still logged and counted).
    pub drop_alert_secs: u64,
}

/// How the sensor attaches its syscall programs (see [`SensorConfig::attach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorAttach {
    /// `raw_syscalls:sys_enter`/`sys_exit` raw tracepoints with an in-kernel dispatch.
    #[default]
    Raw,
    /// One perf-event tracepoint per traced syscall.
    Tracepoints,
}

/// Docker runtime settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The Docker API socket.
    pub socket: PathBuf,
    /// Mount point of the cgroup v2 hierarchy; empty means "find it in /proc/self/mountinfo".
    pub cgroup2_mount: PathBuf,
}

/// Event output settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `-` for stdout (default) or a file path to append JSON lines to.
    pub output: String,
    /// Also report events of containers that disappeared before they could be identified.
    pub include_unattributed: bool,
    /// Write every watched syscall as an event, not only execs (verbose; for forensics and tests).
    pub syscalls: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            profiles_dir: PathBuf::from("profiles"),
            log: LogConfig::default(),
            metrics: MetricsConfig::on("127.0.0.1:9464"),
            sensor: SensorConfig::default(),
            docker: DockerConfig::default(),
            events: EventsConfig::default(),
            zones: ZonesConfig::default(),
            privileges: Default::default(),
            images: Default::default(),
            rules: RulesConfig::default(),
            response: crate::response::ResponseConfig::default(),
            alerts: crate::alerting::AlertsConfig::default(),
            identity: crate::identity::IdentityConfig::default(),
            kubernetes: crate::runtime::kube::KubeConfig::default(),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 8 * 1024 * 1024,
            stats_interval_secs: 2,
            attach: SensorAttach::default(),
            drop_alert_secs: 30,
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/var/run/docker.sock"),
            cgroup2_mount: PathBuf::new(),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            output: "-".into(),
            include_unattributed: false,
            syscalls: false,
        }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate("log")?;
        self.alerts
            .nats_auth
            .validate("alerts.nats_auth")
            .map_err(|e| ConfigError::invalid("alerts.nats_auth", e))?;
        self.metrics.addr("metrics")?;
        let rb = self.sensor.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(ConfigError::invalid(
                "sensor.ring_buffer_bytes",
                format!("{rb} must be a power of two and at least 4096"),
            ));
        }
        if self.sensor.stats_interval_secs == 0 {
            return Err(ConfigError::invalid(
                "sensor.stats_interval_secs",
                "must be at least 1",
            ));
        }
        if !self.zones.only_label.is_empty() && self.zones.only_label().is_none() {
            return Err(ConfigError::invalid(
                "zones.only_label",
                "must be `key=value` or empty",
            ));
        }
        if !self.zones.pin_dir.starts_with("/sys/fs/bpf") {
            return Err(ConfigError::invalid(
                "zones.pin_dir",
                "must be under /sys/fs/bpf (bpffs)",
            ));
        }
        if let Err(e) = self.privileges.keep_set() {
            return Err(ConfigError::invalid("privileges.keep", e.to_string()));
        }
        if let Err(e) = crate::safety::baseline::ImageBaseline::load(&self.images) {
            return Err(ConfigError::invalid("images", e.to_string()));
        }
        if self.rules.enabled && self.rules.files.is_empty() {
            return Err(ConfigError::invalid(
                "rules.files",
                "empty; list rule files or set rules.enabled = false",
            ));
        }
        self.identity.validate()?;
        if self.events.output.is_empty() {
            return Err(ConfigError::invalid(
                "events.output",
                "use `-` for stdout or a file path",
            ));
        }
        Ok(())
    }
}

impl AgentConfig {
    /// The node name, defaulting to the host name.
    pub fn node(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-node".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainbox_common::config::load_from;

    fn load(env: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
        load_from(
            None,
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn defaults_are_valid() {
        load(&[]).unwrap();
    }

    #[test]
    fn ring_buffer_must_be_power_of_two() {
        let e = load(&[("BRAINBOX_SENSOR__RING_BUFFER_BYTES", "5000")]).unwrap_err();
        assert!(e.to_string().contains("sensor.ring_buffer_bytes"), "{e}");
    }

    #[test]
    fn bad_metrics_address_is_named() {
        let e = load(&[("BRAINBOX_METRICS__LISTEN", "nope")]).unwrap_err();
        assert!(e.to_string().contains("metrics.listen"), "{e}");
    }

    #[test]
    fn bad_log_level_is_named() {
        let e = load(&[("BRAINBOX_LOG__LEVEL", "=[")]).unwrap_err();
        assert!(e.to_string().contains("log.level"), "{e}");
    }
}

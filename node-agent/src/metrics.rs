//! The node agent's Prometheus metrics, registered in one place.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Label set for per-kind sensor counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Event kind (`exec`, ...).
    pub kind: String,
}

/// Label set for alert counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Rule name.
    pub rule: String,
    /// Rule priority.
    pub priority: String,
}

/// All of the agent's metrics.
#[derive(Default)]
pub struct AgentMetrics {
    /// Events read and decoded in user space.
    pub events_read: Family<KindLabel, Counter>,
    /// Records that could not be decoded (size or kind mismatch).
    pub decode_errors: Counter,
    /// Events whose cgroup matched no known container.
    pub unattributed: Counter,
    /// Containers currently watched.
    pub watched_containers: Gauge,
    /// Processes in the process table.
    pub processes: Gauge,
    /// Alerts raised, by rule and priority.
    pub alerts: Family<RuleLabel, Counter>,
}

impl AgentMetrics {
    /// Registers every metric under the `brainbox` prefix; the kernel's counters are read at
    /// scrape time by [`crate::sensor::KernelStats`].
    pub fn register(&self, registry: &mut Registry, kernel: crate::sensor::KernelStats) {
        let r = registry.sub_registry_with_prefix("brainbox");
        r.register_collector(Box::new(kernel));
        r.register(
            "sensor_events_read",
            "Events read from the ring buffer by user space",
            self.events_read.clone(),
        );
        r.register(
            "sensor_decode_errors",
            "Ring buffer records that could not be decoded",
            self.decode_errors.clone(),
        );
        r.register(
            "sensor_unattributed_events",
            "Events from a watched cgroup that matched no known container",
            self.unattributed.clone(),
        );
        r.register(
            "alerts",
            "Alerts raised by rule and priority",
            self.alerts.clone(),
        );
        r.register(
            "process_table_processes",
            "Processes held in the process table",
            self.processes.clone(),
        );
        r.register(
            "watched_containers",
            "Containers whose cgroup the sensor watches",
            self.watched_containers.clone(),
        );
    }
}

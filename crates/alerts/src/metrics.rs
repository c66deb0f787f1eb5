//! Alert-path metrics, registered in the agent's Prometheus registry.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Counters and gauges of the alert path. Cloning shares the underlying values.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    /// Alerts acknowledged by JetStream on the direct path.
    pub published: Counter,
    /// Alerts written to the spool.
    pub spooled: Counter,
    /// Spooled alerts acknowledged by JetStream on replay.
    pub replayed: Counter,
    /// Publish attempts that failed (timeouts, no connection, server errors).
    pub publish_failures: Counter,
    /// Alerts refused because the spool was full.
    pub spool_full_refusals: Counter,
    /// Bytes of a torn final spool frame cut off after a crash.
    pub spool_torn: Counter,
    /// Undelivered bytes in the spool.
    pub spool_bytes: Gauge,
    /// Undelivered alerts in the spool.
    pub spool_records: Gauge,
    /// 1 while the spool is full (the node should be in safe mode).
    pub spool_full: Gauge,
    /// Breaker state: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Gauge,
    /// Alerts folded into a summary of identical alerts instead of being sent one by one.
    pub coalesced: Counter,
    /// Alerts sent unfolded because the coalescer held its most open windows (a storm of
    /// distinct alerts; nothing is lost, only not folded).
    pub coalesce_overflow: Counter,
}

impl AlertMetrics {
    /// Registers every metric under `brainbox_alerts_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("brainbox_alerts");
        r.register(
            "published",
            "Alerts acknowledged by JetStream directly",
            self.published.clone(),
        );
        r.register(
            "spooled",
            "Alerts written to the on-disk spool",
            self.spooled.clone(),
        );
        r.register(
            "replayed",
            "Spooled alerts acknowledged by JetStream on replay",
            self.replayed.clone(),
        );
        r.register(
            "publish_failures",
            "Failed JetStream publish attempts",
            self.publish_failures.clone(),
        );
        r.register(
            "spool_full_refusals",
            "Alerts refused because the spool was full",
            self.spool_full_refusals.clone(),
        );
        r.register_with_unit(
            "spool_torn",
            "Bytes of torn spool frames cut off after a crash",
            prometheus_client::registry::Unit::Bytes,
            self.spool_torn.clone(),
        );
        r.register_with_unit(
            "spool",
            "Undelivered bytes in the spool",
            prometheus_client::registry::Unit::Bytes,
            self.spool_bytes.clone(),
        );
        r.register(
            "coalesced",
            "Alerts folded into a summary of identical alerts (each still counted in it)",
            self.coalesced.clone(),
        );
        r.register(
            "coalesce_overflow",
            "Alerts sent unfolded because the coalescer held its most open windows",
            self.coalesce_overflow.clone(),
        );
        r.register(
            "spool_records",
            "Undelivered alerts in the spool",
            self.spool_records.clone(),
        );
        r.register(
            "spool_full",
            "1 while the spool is full",
            self.spool_full.clone(),
        );
        r.register(
            "breaker_state",
            "NATS circuit breaker: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
    }
}

//! The alert path off the node: alerts go to NATS JetStream through `brainbox-alerts`'
//! publisher (message id = alert id, so retries de-duplicate; an fsynced spool while NATS is
//! down, replayed in order). An alert whose response captures evidence is held until the
//! response finishes, so the operator gets one alert that carries its bundle id.

use crate::detect::Alert;
use brainbox_alerts::{
    coalesce::{CoalesceConfig, Coalescer},
    metrics::AlertMetrics,
    publisher::{Publisher, PublisherConfig, PublisherState},
    schema::{Alert as WireAlert, ContainerRef, Priority},
};
use serde::Deserialize;
use std::{
    collections::HashMap,
    path::PathBuf,
    str::FromStr,
    time::{Duration, Instant},
};

/// `[alerts]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Publish alerts to NATS JetStream (default true).
    pub enabled: bool,
    /// NATS server.
    pub nats_url: String,
    /// `[alerts.nats_auth]`: credentials (files) and the CA for a `tls://` server.
    pub nats_auth: brainbox_common::nats::NatsAuth,
    /// The on-disk spool used while NATS is unreachable.
    pub spool_dir: PathBuf,
    /// How often safe mode re-checks the dead-man clock and republishes the node's state (ms).
    pub safety_tick_ms: u64,
    /// Identical alerts (same container, rule, priority and output) within this many seconds
    /// of the first are sent as one summary with a count (0: every alert on its own). The
    /// first is always sent at once; the event output keeps every alert.
    pub coalesce_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_auth: Default::default(),
            spool_dir: PathBuf::from("/var/lib/brainbox/spool"),
            safety_tick_ms: 1000,
            coalesce_secs: 10,
        }
    }
}

/// Converts an agent alert to the wire schema.
pub fn to_wire(a: &Alert, evidence_id: Option<String>) -> WireAlert {
    let container = a.container.as_ref();
    WireAlert {
        id: a.id.clone(),
        time: a.time.clone(),
        node: a.node.clone(),
        container: ContainerRef {
            id: container
                .map(|c| c.id.clone())
                .unwrap_or_else(|| "host".into()),
            name: container.map(|c| c.name.clone()).unwrap_or_default(),
            image: container
                .map(|c| {
                    if c.image_id.is_empty() {
                        c.image.clone()
                    } else {
                        format!("{}@{}", c.image, c.image_id)
                    }
                })
                .unwrap_or_default(),
            pod: container.and_then(|c| c.pod.clone()),
            namespace: container.and_then(|c| c.namespace.clone()),
        },
        rule: a.rule.clone(),
        priority: Priority::from_str(&a.priority).unwrap_or(Priority::Warning),
        tags: a.tags.clone(),
        output: a.output.clone(),
        evidence_id,
        repeats: 0,
        repeats_since: None,
    }
}

/// The agent's side of the alert path.
pub struct AlertPath {
    publisher: Publisher,
    held: HashMap<String, Alert>,
    coalescer: Coalescer,
    metrics: AlertMetrics,
}

impl AlertPath {
    /// Starts the publisher (NATS need not be up: alerts are spooled until it is).
    pub async fn start(cfg: &AlertsConfig, metrics: AlertMetrics) -> Result<Self, String> {
        let mut pc = PublisherConfig::new(&cfg.nats_url, &cfg.spool_dir);
        pc.auth = cfg.nats_auth.clone();
        let (publisher, _task) = Publisher::start(pc, metrics.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            publisher,
            held: HashMap::new(),
            coalescer: Coalescer::new(CoalesceConfig {
                window: Duration::from_secs(cfg.coalesce_secs),
                ..Default::default()
            }),
            metrics,
        })
    }

    /// The publisher's state (breaker, spool), for safe mode.
    pub fn state(&self) -> tokio::sync::watch::Receiver<PublisherState> {
        self.publisher.state()
    }

    /// Sends an alert that no response holds, folding identical repeats (see
    /// `brainbox_alerts::coalesce`): the first goes now, repeats go as one summary later.
    pub async fn send(&mut self, a: &Alert) {
        let overflowed = self.coalescer.overflowed;
        let out = self.coalescer.offer(to_wire(a, None), Instant::now());
        if out.is_empty() {
            self.metrics.coalesced.inc();
        }
        self.metrics
            .coalesce_overflow
            .inc_by(self.coalescer.overflowed - overflowed);
        for w in out {
            self.submit(w).await;
        }
    }

    /// Sends the summaries of coalescing windows that have closed (call about once a second).
    pub async fn tick(&mut self) {
        for w in self.coalescer.expired(Instant::now()) {
            self.submit(w).await;
        }
    }

    /// At shutdown: sends every pending summary and every held alert (without its evidence:
    /// the response did not report), then waits up to `timeout` for delivery. What is not
    /// delivered by then is in the spool, sent by the next start.
    pub async fn finish(&mut self, timeout: Duration) {
        for w in self.coalescer.drain() {
            self.submit(w).await;
        }
        let held: Vec<Alert> = self.held.drain().map(|(_, a)| a).collect();
        for a in held {
            self.submit(to_wire(&a, None)).await;
        }
        if !self.publisher.flush(timeout).await {
            tracing::warn!(
                "alerts not all delivered at shutdown; the spool keeps them for the next start"
            );
        }
    }

    async fn submit(&self, wire: WireAlert) {
        let id = wire.id.clone();
        match self.publisher.submit(wire).await {
            Ok(receipt) => {
                tokio::spawn(async move {
                    if let Err(e) = receipt.wait().await {
                        tracing::error!(alert_id = %id, error = %e, "alert not delivered or spooled");
                    }
                });
            }
            Err(e) => {
                tracing::error!(alert_id = %id, error = %e, "alert refused by the publisher")
            }
        }
    }

    /// Holds an alert until its response reports (at most a bounded number are held).
    pub fn hold(&mut self, a: Alert) {
        self.held.insert(a.id.clone(), a);
    }

    /// Releases a held alert with the response's evidence id (never folded: it carries its own
    /// evidence).
    pub async fn release(&mut self, alert_id: &str, evidence_id: Option<String>) {
        if let Some(a) = self.held.remove(alert_id) {
            self.submit(to_wire(&a, evidence_id)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(output: &str) -> Alert {
        Alert {
            kind: "alert",
            id: blake3::hash(output.as_bytes()).to_hex()[..32].to_string(),
            time: "2026-11-25T00:00:00Z".into(),
            node: "n".into(),
            rule: "Netcat Remote Code Execution in Container".into(),
            priority: "critical".into(),
            tags: vec!["brainbox".into()],
            output: output.into(),
            container: None,
            process: crate::detect::AlertProcess {
                pid: 1,
                name: "nc".into(),
                cmdline: "nc".into(),
                exepath: "/bin/nc".into(),
                uid: 0,
            },
            evt_type: "execve",
        }
    }

    /// Folded repeats and alerts passed through past the open-window limit are both counted
    /// on `/metrics`; nothing is dropped (NATS is away: every sent alert lands in the spool).
    #[tokio::test]
    async fn coalescing_counts_folded_and_overflowing_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = AlertsConfig {
            nats_url: format!("nats://127.0.0.1:{port}"),
            spool_dir: dir.path().join("spool"),
            ..Default::default()
        };
        let metrics = AlertMetrics::default();
        let mut path = AlertPath::start(&cfg, metrics.clone()).await.unwrap();
        path.coalescer = Coalescer::new(CoalesceConfig {
            window: Duration::from_secs(600),
            max_keys: 2,
        });
        for out in ["a", "a", "b", "c", "d", "a"] {
            path.send(&alert(out)).await;
        }
        // `a` twice folded; `c` and `d` found both windows taken.
        assert_eq!(metrics.coalesced.get(), 2);
        assert_eq!(metrics.coalesce_overflow.get(), 2);
        path.finish(Duration::from_millis(100)).await;
        // a, b, c, d, and the summary of a's repeats.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.spooled.get() < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                metrics.spooled.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.spooled.get(), 5);
    }

    /// The Falco rule loader, the profiles' `priority_at_least` and the alert schema (and so
    /// `brainboxctl`) share one priority type: a rule's priority is the alert's, and a profile
    /// compares it with the same order.
    #[test]
    fn rules_profiles_and_alerts_share_one_priority() {
        let from_rules: brainbox_rules::Priority = Priority::Warning;
        assert_eq!(from_rules, brainbox_profile::Priority::Warning);
        let m = brainbox_profile::Match {
            priority_at_least: Some("WARN".into()),
            ..Default::default()
        };
        for p in Priority::ALL {
            assert_eq!(
                m.matches("r", &[], p.as_str()),
                p.at_least(Priority::Warning),
                "{p}"
            );
        }
    }

    #[test]
    fn wire_alert_checks_and_keeps_fields() {
        let a = alert("out");
        let w = to_wire(&a, Some("bundle".into()));
        assert!(w.check().is_ok());
        assert_eq!(w.priority, Priority::Critical);
        assert_eq!(w.evidence_id.as_deref(), Some("bundle"));
        assert_eq!(w.container.id, "host");
    }
}

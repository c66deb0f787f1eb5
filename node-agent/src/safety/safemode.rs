//! Safe mode on this node: the [`Actuator`] that `brainbox_alerts::monitor` drives when the
//! operator misses a check-in, the alert path is lost, or the operator asks for it.
//!
//! - `freeze`: every watched container's cgroup is frozen (`cgroup.freeze`), and containers
//!   that start while safe mode lasts are frozen as they appear. Lifting thaws only what safe
//!   mode froze: a container an `isolate` or `recycle` response froze stays frozen.
//! - `close_egress`: one update of the zones lock map (`LOCK_ALL`) cuts every enforced
//!   container to loopback; processes keep running. Without zones on this node the agent cannot
//!   close egress, so it freezes instead (fail closed) and says so.

use crate::{response::freeze, runtime::ContainerTable, zones::Zones};
use brainbox_alerts::{
    monitor::Actuator,
    safety::{Reason, SafeAction},
};
use prometheus_client::metrics::gauge::Gauge;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

/// How long one freeze may wait for the kernel to report the cgroup frozen.
const FREEZE_WAIT: Duration = Duration::from_millis(500);
/// How often safe mode `freeze` looks for containers that started since.
const SWEEP: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Inner {
    /// The action in force, if safe mode is on.
    active: Option<SafeAction>,
    /// Containers safe mode froze (id → cgroup dir), to thaw on leave.
    frozen: BTreeMap<String, PathBuf>,
}

/// The node agent's safe-mode actuator; cheap to clone.
#[derive(Clone)]
pub struct NodeActuator {
    table: ContainerTable,
    zones: Option<Zones>,
    inner: Arc<Mutex<Inner>>,
    /// `brainbox_safe_mode`: 1 while safe mode is on.
    gauge: Gauge,
}

impl NodeActuator {
    /// An actuator over the agent's container table and (if enforcing) its zones.
    pub fn new(table: ContainerTable, zones: Option<Zones>, gauge: Gauge) -> Self {
        let a = Self {
            table,
            zones,
            inner: Arc::default(),
            gauge,
        };
        a.sweeper();
        a
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("safe-mode state lock")
    }

    /// The action in force.
    pub fn active(&self) -> Option<SafeAction> {
        self.inner().active
    }

    /// Freezes every watched container not frozen yet; returns how many it froze now.
    fn freeze_all(&self) -> (usize, Vec<String>) {
        let mut froze = 0;
        let mut errors = vec![];
        for c in self.table.all() {
            if self.inner().frozen.contains_key(&c.id) {
                continue;
            }
            match freeze::is_frozen(&c.cgroup_dir) {
                // Frozen by someone else (a response): not ours to thaw later.
                Ok(true) => continue,
                Ok(false) => {}
                // The container went away between the table read and now.
                Err(_) if !c.cgroup_dir.exists() => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", c.name));
                    continue;
                }
            }
            match freeze::freeze(&c.cgroup_dir, FREEZE_WAIT) {
                Ok(_) => {
                    froze += 1;
                    tracing::warn!(container = %c.name, container_id = %c.id, "safe mode: container frozen");
                    self.inner()
                        .frozen
                        .insert(c.id.clone(), c.cgroup_dir.clone());
                }
                Err(e) => errors.push(format!("{}: {e}", c.name)),
            }
        }
        (froze, errors)
    }

    fn thaw_ours(&self) -> Vec<String> {
        let frozen = std::mem::take(&mut self.inner().frozen);
        let mut errors = vec![];
        for (id, dir) in frozen {
            if !dir.exists() {
                continue;
            }
            match freeze::thaw(&dir) {
                Ok(()) => tracing::info!(container_id = %id, "safe mode lifted: container thawed"),
                Err(e) => errors.push(format!("{id}: {e}")),
            }
        }
        errors
    }

    /// While safe mode `freeze` lasts, freezes containers that start after it began.
    fn sweeper(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(SWEEP);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                if me.active() != Some(SafeAction::Freeze) {
                    continue;
                }
                let m = me.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let (n, errors) = m.freeze_all();
                    if n > 0 {
                        tracing::warn!(
                            frozen = n,
                            "safe mode: froze containers that started since"
                        );
                    }
                    for e in errors {
                        tracing::error!(error = %e, "safe mode: cannot freeze");
                    }
                })
                .await;
            }
        });
    }
}

impl Actuator for NodeActuator {
    async fn enter(&mut self, action: SafeAction, reasons: &[Reason]) -> Result<(), String> {
        let why: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        self.gauge.set(1);
        let action = match (action, &self.zones) {
            (SafeAction::CloseEgress, Some(z)) => {
                self.inner().active = Some(SafeAction::CloseEgress);
                z.close_all(true).map_err(|e| e.to_string())?;
                tracing::error!(reasons = ?why, "safe mode: egress of every brainbox closed (loopback only)");
                return Ok(());
            }
            (SafeAction::CloseEgress, None) => {
                tracing::error!(
                    "safe mode wants close_egress but zones are not enforced on this node; freezing instead"
                );
                SafeAction::Freeze
            }
            (a, _) => a,
        };
        self.inner().active = Some(action);
        let me = self.clone();
        let (n, errors) = tokio::task::spawn_blocking(move || me.freeze_all())
            .await
            .map_err(|e| e.to_string())?;
        tracing::error!(frozen = n, reasons = ?why, "safe mode: brainboxes frozen");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("could not freeze: {}", errors.join("; ")))
        }
    }

    async fn leave(&mut self) -> Result<(), String> {
        let was = self.inner().active.take();
        self.gauge.set(0);
        match was {
            Some(SafeAction::CloseEgress) => {
                if let Some(z) = &self.zones {
                    z.close_all(false).map_err(|e| e.to_string())?;
                }
                tracing::warn!("safe mode lifted: egress reopened");
                Ok(())
            }
            Some(SafeAction::Freeze) => {
                let me = self.clone();
                let errors = tokio::task::spawn_blocking(move || me.thaw_ours())
                    .await
                    .map_err(|e| e.to_string())?;
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(format!("could not thaw: {}", errors.join("; ")))
                }
            }
            None => Ok(()),
        }
    }
}

/// Connects the node's control-plane client without waiting for NATS: when NATS is down at
/// start, the client keeps retrying in the background and safe mode still works from the clock
/// and the alert path's state.
pub async fn control_client(
    url: &str,
    auth: &brainbox_common::nats::NatsAuth,
) -> Result<async_nats::Client, String> {
    auth.apply(async_nats::ConnectOptions::new())?
        .name("brainbox-node-agent-safety")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| e.to_string())
}

//! Incident response: what the profile says to do when a rule fires, done in a fixed, audited
//! order. Recycle = (1) freeze the container's cgroup, (2) capture evidence from the host,
//! (3) seal it (content-addressed, BLAKE3 manifest, appended to the audit chain), (4) kill and
//! recreate the container from its known-good image digest, (5) alert with the bundle id.
//! A step that fails or runs out of time is recorded and the sequence goes on: capture never
//! delays the kill beyond its bound.

pub mod capture;
pub mod freeze;
pub mod recycle;
pub mod release;

use crate::{detect::Alert, runtime::ContainerInfo};
use bollard::Docker;
use brainbox_audit::{
    chain::{AuditLog, NewRecord},
    evidence::{Bounds, EvidenceStore},
};
use brainbox_profile::{Action, RateLimit};
use serde::Serialize;
use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Response settings (`[response]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Run responses (default true); false makes every alert alert-only.
    pub enabled: bool,
    /// Evidence store.
    pub evidence_dir: PathBuf,
    /// Audit log (hash chain).
    pub audit_log: PathBuf,
    /// Longest wait for the kernel to report a cgroup frozen, in milliseconds.
    pub freeze_timeout_ms: u64,
    /// Longest a capture may take before the kill goes ahead anyway, in seconds.
    pub capture_timeout_secs: u64,
    /// Most bytes of writable-layer content kept per bundle (every file is still hashed).
    pub max_layer_bytes: u64,
    /// Container log lines captured.
    pub log_lines: usize,
    /// Recent events kept per container for the bundle.
    pub recent_events: usize,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            evidence_dir: PathBuf::from("/var/lib/brainbox/evidence"),
            audit_log: PathBuf::from("/var/lib/brainbox/audit.log"),
            freeze_timeout_ms: 2_000,
            capture_timeout_secs: 20,
            max_layer_bytes: 256 << 20,
            log_lines: 1_000,
            recent_events: 256,
        }
    }
}

/// Errors opening the response machinery.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The audit log could not be opened.
    #[error("audit log {path}: {message}")]
    Audit { path: PathBuf, message: String },
    /// The evidence store could not be opened.
    #[error("evidence store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// Per-container, per-response-rule rate limiting.
#[derive(Default)]
pub struct RateLimiter {
    runs: HashMap<(String, String), VecDeque<Instant>>,
}

impl RateLimiter {
    /// Records a run at `now` if the limit allows it; returns whether it was allowed.
    pub fn allow(&mut self, container: &str, rule: &str, limit: RateLimit, now: Instant) -> bool {
        let window = Duration::from_secs(limit.per_secs);
        let q = self
            .runs
            .entry((container.to_owned(), rule.to_owned()))
            .or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= limit.max as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// What a response did, reported as a `"type":"response"` line and audited.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseReport {
    /// Always `response`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the response started, RFC 3339.
    pub time: String,
    /// The alert that triggered it.
    pub alert_id: String,
    /// The response rule.
    pub response: String,
    /// The action.
    pub action: String,
    /// The container acted on.
    pub container_id: String,
    /// Each step, in order.
    pub steps: Vec<Step>,
    /// The sealed evidence bundle, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_id: Option<String>,
    /// The replacement container, for recycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_container_id: Option<String>,
}

/// One step of a response.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `freeze`, `capture`, `seal`, `kill`, `recreate`.
    pub step: &'static str,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub ms: u64,
    /// Details or the error.
    pub detail: serde_json::Value,
    /// The audit record's sequence number.
    pub audit_seq: Option<u64>,
}

/// Runs responses.
pub struct Responder {
    docker: Docker,
    audit: Arc<Mutex<AuditLog>>,
    store: Arc<EvidenceStore>,
    cfg: ResponseConfig,
    limiter: Mutex<RateLimiter>,
    node: String,
    redactor: Arc<brainbox_redact::Engine>,
    isolation: Option<Isolation>,
    kube: Option<crate::runtime::kube::KubeClient>,
}

/// What `isolate` needs: the zones lock map, and the container table to find a container's
/// pod siblings (a pod shares one network namespace, so the whole pod is cut off).
pub struct Isolation {
    /// The agent's zones.
    pub zones: crate::zones::Zones,
    /// The agent's container table.
    pub table: crate::runtime::ContainerTable,
}

impl Responder {
    /// Opens the audit log and evidence store.
    pub fn open(
        docker: Docker,
        cfg: ResponseConfig,
        node: String,
        redactor: Arc<brainbox_redact::Engine>,
    ) -> Result<Self, ResponseError> {
        if let Some(parent) = cfg.audit_log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let audit = AuditLog::open(&cfg.audit_log).map_err(|e| ResponseError::Audit {
            path: cfg.audit_log.clone(),
            message: e.to_string(),
        })?;
        let store = EvidenceStore::open(&cfg.evidence_dir).map_err(|e| ResponseError::Store {
            path: cfg.evidence_dir.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            docker,
            audit: Arc::new(Mutex::new(audit)),
            store: Arc::new(store),
            cfg,
            limiter: Mutex::new(RateLimiter::default()),
            node,
            redactor,
            isolation: None,
            kube: None,
        })
    }

    /// Recycles Kubernetes pods through the API server (delete; the controller recreates).
    pub fn with_kube(mut self, kube: crate::runtime::kube::KubeClient) -> Self {
        self.kube = Some(kube);
        self
    }

    /// Lets `isolate` cut containers off through zones (without zones on this node, `isolate`
    /// keeps the container frozen instead).
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// Isolates `container` and its pod siblings: loopback only. Returns the cgroup ids locked.
    fn isolate(&self, container: &ContainerInfo) -> Result<Vec<u64>, String> {
        let Some(iso) = &self.isolation else {
            return Err("zones are not enforced on this node".into());
        };
        let mut cgroups = vec![container.cgroup_id];
        cgroups.extend(
            iso.table
                .all()
                .iter()
                .filter(|c| c.id != container.id && container.same_pod(c))
                .map(|c| c.cgroup_id),
        );
        for cg in &cgroups {
            iso.zones.isolate(*cg).map_err(|e| e.to_string())?;
        }
        Ok(cgroups)
    }

    /// The configuration.
    pub fn config(&self) -> &ResponseConfig {
        &self.cfg
    }

    /// Whether `rule`'s response may run for `container` now (consumes a rate-limit slot).
    pub fn admit(&self, container: &str, rule: &str, limit: RateLimit) -> bool {
        self.limiter
            .lock()
            .expect("limiter lock")
            .allow(container, rule, limit, Instant::now())
    }

    fn audit(&self, kind: &str, subject: &str, details: serde_json::Value) -> Option<u64> {
        let mut log = self.audit.lock().expect("audit lock");
        match log.append(NewRecord::new(kind, "node-agent", subject, details)) {
            Ok(r) => Some(r.seq),
            Err(e) => {
                tracing::error!(error = %e, kind, "cannot append to the audit log");
                None
            }
        }
    }

    fn step(
        &self,
        report: &mut ResponseReport,
        step: &'static str,
        start: Instant,
        result: Result<serde_json::Value, String>,
    ) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| serde_json::json!({ "error": e }));
        let seq = self.audit(
            &format!("response.{step}"),
            &report.container_id,
            serde_json::json!({ "alert_id": report.alert_id, "ok": ok, "detail": detail }),
        );
        report.steps.push(Step {
            step,
            ok,
            ms: start.elapsed().as_millis() as u64,
            detail,
            audit_seq: seq,
        });
        ok
    }

    /// Runs `action` for `alert` on `container`. Never panics; every step is in the report.
    pub async fn run(
        self: Arc<Self>,
        action: Action,
        response: String,
        alert: &Alert,
        container: Arc<ContainerInfo>,
        recent: Vec<serde_json::Value>,
    ) -> ResponseReport {
        let mut report = ResponseReport {
            kind: "response",
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            alert_id: alert.id.clone(),
            response,
            action: format!("{action:?}").to_lowercase(),
            container_id: container.id.clone(),
            steps: vec![],
            evidence_id: None,
            new_container_id: None,
        };
        self.audit(
            "response.start",
            &container.id,
            serde_json::json!({ "alert_id": alert.id, "rule": alert.rule, "action": report.action, "node": self.node }),
        );
        let dir = container.cgroup_dir.clone();
        if matches!(action, Action::Alert) {
            return report;
        }
        // Isolate cuts the network first, before anything else can be sent out.
        let mut isolated = false;
        if matches!(action, Action::Isolate) {
            let t = Instant::now();
            let r = self
                .isolate(&container)
                .map(|cgs| serde_json::json!({ "cgroups": cgs, "allowed": "loopback only" }));
            isolated = self.step(&mut report, "isolate", t, r);
        }
        if matches!(action, Action::Kill) {
            let t = Instant::now();
            let r = freeze::kill(&dir)
                .map(|_| serde_json::json!({}))
                .map_err(|e| e.to_string());
            self.step(&mut report, "kill", t, r);
            return report;
        }

        // (1) Freeze: nothing inside may act while we look.
        let t = Instant::now();
        let deadline = Duration::from_millis(self.cfg.freeze_timeout_ms);
        let d2 = dir.clone();
        let frozen = tokio::task::spawn_blocking(move || freeze::freeze(&d2, deadline))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(|took| serde_json::json!({ "frozen": true, "wait_ms": took.as_millis() as u64 }));
        self.step(&mut report, "freeze", t, frozen);

        // (2)+(3) Capture and seal, bounded in time.
        let t = Instant::now();
        let logs = tokio::time::timeout(
            Duration::from_secs(5),
            recycle::recent_logs(&self.docker, &container.id, self.cfg.log_lines, 4 << 20),
        )
        .await
        .unwrap_or_else(|_| b"[log read timed out]\n".to_vec());
        let me = self.clone();
        let c2 = container.clone();
        let alert_json = serde_json::to_value(alert).unwrap_or_default();
        let subject = serde_json::json!({
            "node": self.node,
            "container_id": container.id,
            "container_name": container.name,
            "image_id": container.image_id,
            "rule": alert.rule,
            "alert_id": alert.id,
        });
        let sealing = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
            let mut w = me
                .store
                .writer(subject, Bounds::default())
                .map_err(|e| e.to_string())?;
            let engine = me.redactor.clone();
            let redact = move |s: &str| engine.redact_text(s).text.into_owned();
            let input = capture::CaptureInput {
                container: &c2,
                alert: alert_json,
                recent_events: recent,
                logs,
                max_layer_bytes: me.cfg.max_layer_bytes,
                redact: &redact,
            };
            let summary = capture::capture(&mut w, &input);
            let mut log = me.audit.lock().expect("audit lock");
            let sealed = w.seal(&mut log, "node-agent").map_err(|e| e.to_string())?;
            Ok(serde_json::json!({ "summary": summary, "bundle": sealed }))
        });
        let captured =
            match tokio::time::timeout(Duration::from_secs(self.cfg.capture_timeout_secs), sealing)
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(format!("capture task failed: {e}")),
                Err(_) => Err(format!(
                    "capture did not finish within {} s; going on with the response",
                    self.cfg.capture_timeout_secs
                )),
            };
        if let Ok(v) = &captured {
            report.evidence_id = v["bundle"]["id"].as_str().map(str::to_owned);
        }
        self.step(&mut report, "capture", t, captured);

        if matches!(action, Action::Isolate) {
            if isolated {
                // Cut off, the container may run on under observation: the sensor and rules
                // still see it, and nothing it does leaves the pod.
                let t = Instant::now();
                let r = freeze::thaw(&dir)
                    .map(|_| serde_json::json!({}))
                    .map_err(|e| e.to_string());
                self.step(&mut report, "thaw", t, r);
            }
            // Without zones the container stays frozen: fail closed.
            return report;
        }

        // (4) Kill everything in the cgroup (frozen tasks die too), then recreate.
        let t = Instant::now();
        let killed = freeze::kill(&dir)
            .map(|_| serde_json::json!({}))
            .map_err(|e| e.to_string());
        self.step(&mut report, "kill", t, killed);
        // A Kubernetes pod is recreated by its controller: delete it (only if it is still the
        // same pod) and let the controller start a fresh one from its template.
        if let (Some(kube), Some(ns), Some(pod)) =
            (&self.kube, &container.namespace, &container.pod)
        {
            let t = Instant::now();
            let r = kube
                .delete_pod(ns, pod, container.pod_uid.as_deref())
                .await
                .map(|d| {
                    serde_json::json!({
                        "namespace": ns,
                        "pod": pod,
                        "outcome": match d {
                            crate::runtime::kube::Deleted::Accepted => "deleted".to_string(),
                            crate::runtime::kube::Deleted::AlreadyGone(code) => format!("already gone (HTTP {code})"),
                        },
                    })
                })
                .map_err(|e| e.to_string());
            self.step(&mut report, "delete_pod", t, r);
            return report;
        }
        let t = Instant::now();
        let recreated = recycle::recreate(&self.docker, &container.id, &container.image_id)
            .await
            .map_err(|e| e.to_string());
        if let Ok(id) = &recreated {
            report.new_container_id = Some(id.clone());
        }
        let detail = recreated.map(
            |id| serde_json::json!({ "new_container_id": id, "image_id": container.image_id }),
        );
        self.step(&mut report, "recreate", t, detail);
        report
    }
}

/// The last events of each container, for evidence bundles. Bounded per container; dropped with
/// the container.
pub struct RecentEvents<T> {
    per: HashMap<u64, VecDeque<T>>,
}

impl<T> Default for RecentEvents<T> {
    fn default() -> Self {
        Self {
            per: HashMap::new(),
        }
    }
}

impl<T: Clone> RecentEvents<T> {
    /// Records an event of cgroup `cg`, keeping at most `cap`.
    pub fn push(&mut self, cg: u64, ev: T, cap: usize) {
        let q = self.per.entry(cg).or_default();
        if q.len() >= cap {
            q.pop_front();
        }
        q.push_back(ev);
    }

    /// The events of `cg`, oldest first.
    pub fn get(&self, cg: u64) -> Vec<T> {
        self.per
            .get(&cg)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets cgroups not in `live`.
    pub fn retain(&mut self, live: impl Fn(u64) -> bool) {
        self.per.retain(|cg, _| live(*cg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_max_per_window() {
        let mut r = RateLimiter::default();
        let lim = RateLimit {
            max: 2,
            per_secs: 60,
        };
        let t0 = Instant::now();
        assert!(r.allow("c", "r", lim, t0));
        assert!(r.allow("c", "r", lim, t0));
        assert!(!r.allow("c", "r", lim, t0 + Duration::from_secs(1)));
        // Another container or rule has its own budget.
        assert!(r.allow("d", "r", lim, t0));
        assert!(r.allow("c", "other", lim, t0));
        // The window slides.
        assert!(r.allow("c", "r", lim, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn recent_events_are_bounded() {
        let mut e = RecentEvents::<serde_json::Value>::default();
        for i in 0..10 {
            e.push(1, serde_json::json!(i), 3);
        }
        assert_eq!(
            e.get(1),
            vec![
                serde_json::json!(7),
                serde_json::json!(8),
                serde_json::json!(9)
            ]
        );
        e.retain(|_| false);
        assert!(e.get(1).is_empty());
    }
}

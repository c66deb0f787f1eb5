//! `brainbox-node-agent run`: wires sensor, runtime and output together.

use crate::{
    config::AgentConfig,
    detect::Detector,
    enrich,
    events::{self, Sink},
    metrics::AgentMetrics,
    process::ProcessTable,
    response::{RecentEvents, Responder, ResponseReport},
    runtime::{cgroup, docker, ContainerTable},
    sensor::Sensor,
};
use brainbox_profile::ProfileSet;
use prometheus_client::registry::Registry;
use std::{sync::Arc, time::Duration};

/// A fatal start-up or run-time error, with the exit code `main` should use.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Configuration or profiles are wrong (exit 64).
    #[error("{0}")]
    Config(String),
    /// Something the agent needs is unavailable (exit 69).
    #[error("{0}")]
    Unavailable(String),
    /// Failure while running (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => brainbox_common::EXIT_CONFIG,
            RunError::Unavailable(_) => brainbox_common::EXIT_UNAVAILABLE,
            RunError::Runtime(_) => 1,
        }
    }
}

/// Runs the agent until SIGINT/SIGTERM or a fatal error.
pub async fn run(cfg: AgentConfig) -> Result<(), RunError> {
    let profiles = ProfileSet::load_dir(&cfg.profiles_dir)
        .map_err(|e| RunError::Config(format!("profiles: {e}")))?;
    let node = cfg.node();
    let detector = if cfg.rules.enabled {
        let d = Detector::load(&cfg.rules.files)
            .map_err(|e| RunError::Config(format!("rules: {e}")))?;
        let r = d.rules();
        tracing::info!(
            rules = r.rules.len(),
            evaluable = d.evaluable(),
            macros = r.macros,
            lists = r.lists,
            warnings = r.warnings.len(),
            files = ?cfg.rules.files,
            "rules loaded"
        );
        Some(d)
    } else {
        None
    };
    let metrics = Arc::new(AgentMetrics::default());
    let sensor = Sensor::load(cfg.sensor.ring_buffer_bytes)
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
    let mut registry = Registry::default();
    metrics.register(&mut registry, sensor.kernel_stats());
    let attached = sensor.attached();
    tracing::info!(
        programs = attached.programs,
        missing = ?attached.missing,
        "eBPF sensor loaded and attached"
    );
    let watch = sensor.watch_list();

    let cgroup2 = if cfg.docker.cgroup2_mount.as_os_str().is_empty() {
        cgroup::cgroup2_mount().map_err(|e| RunError::Unavailable(e.to_string()))?
    } else {
        cfg.docker.cgroup2_mount.clone()
    };
    let docker = docker::connect_with_retry(&cfg.docker.socket, Duration::from_secs(5))
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()))?;

    if let Some(addr) = cfg
        .metrics
        .addr("metrics")
        .map_err(|e| RunError::Config(e.to_string()))?
    {
        let (bound, _task) = brainbox_common::metrics::serve(
            addr,
            Arc::new(registry),
            Arc::new(|| (true, "ok".to_string())),
        )
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
        tracing::info!(listen = %bound, "metrics endpoint up");
    }

    let baseline = crate::safety::baseline::ImageBaseline::load(&cfg.images)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let (baseline_tx, mut baseline_rx) = tokio::sync::mpsc::channel::<serde_json::Value>(256);
    let baseline = baseline.enforced().then(|| docker::BaselineCheck {
        baseline,
        node: node.clone(),
        events: baseline_tx,
    });
    let profiles = Arc::new(profiles);
    let responder = if cfg.response.enabled {
        let r = Responder::open(docker.clone(), cfg.response.clone(), node.clone())
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        tracing::info!(
            audit_log = %cfg.response.audit_log.display(),
            evidence_dir = %cfg.response.evidence_dir.display(),
            "response ready"
        );
        Some(Arc::new(r))
    } else {
        None
    };
    let (resp_tx, mut resp_rx) = tokio::sync::mpsc::channel::<ResponseReport>(64);
    let mut recent: RecentEvents<crate::enrich::Enriched> = RecentEvents::default();

    let table = ContainerTable::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = docker::DockerWatcher {
        docker,
        table: table.clone(),
        watch,
        profiles: profiles.clone(),
        cgroup2,
        metrics: metrics.clone(),
        baseline,
    };
    let mut watcher_task = tokio::spawn(watcher.run(ready_tx));

    let (tx, mut rx) = tokio::sync::mpsc::channel(8192);
    let mut sensor_task = tokio::spawn(sensor.run(
        tx,
        metrics.clone(),
        Duration::from_secs(cfg.sensor.stats_interval_secs),
    ));

    if let Ok(n) = ready_rx.await {
        tracing::info!(watched_containers = n, node = %node, "agent ready");
    }

    let mut sink = Sink::open(&cfg.events.output)
        .map_err(|e| RunError::Config(format!("events.output `{}`: {e}", cfg.events.output)))?;
    let mut procs = ProcessTable::default();
    let mut last_expiry = std::time::Instant::now();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let Some(ev) = enrich::enrich(&ev, &mut procs, &table) else { continue };
                if last_expiry.elapsed() > Duration::from_secs(1) {
                    procs.expire(std::time::Instant::now());
                    recent.retain(|cg| table.get(cg).is_some());
                    metrics.processes.set(procs.len() as i64);
                    last_expiry = std::time::Instant::now();
                }
                if let (Some(_), Some(c)) = (&responder, &ev.container) {
                    recent.push(c.cgroup_id, ev.clone(), cfg.response.recent_events);
                }
                if ev.container.is_none() {
                    metrics.unattributed.inc();
                    if !cfg.events.include_unattributed {
                        continue;
                    }
                }
                if ev.is_exec() || cfg.events.syscalls {
                    let out = events::build(&ev, &node);
                    if let Err(e) = sink.write(&out) {
                        return Err(RunError::Runtime(format!("writing events: {e}")));
                    }
                }
                if let Some(d) = &detector {
                    for alert in d.evaluate(&ev, &node, &|s: &str| s.to_owned()) {
                        metrics.alerts.get_or_create(&crate::metrics::RuleLabel {
                            rule: alert.rule.clone(),
                            priority: alert.priority.clone(),
                        }).inc();
                        tracing::warn!(
                            rule = %alert.rule,
                            priority = %alert.priority,
                            container = alert.container.as_ref().map(|c| c.name.as_str()).unwrap_or("host"),
                            output = %alert.output,
                            "alert"
                        );
                        if let Err(e) = sink.write(&alert) {
                            return Err(RunError::Runtime(format!("writing alerts: {e}")));
                        }
                        respond(&alert, ev.container.as_ref(), &profiles, responder.as_ref(), &recent, &node, &resp_tx);
                    }
                }
            }
            report = resp_rx.recv() => {
                if let Some(report) = report {
                    tracing::warn!(
                        alert_id = %report.alert_id,
                        action = %report.action,
                        container_id = %report.container_id,
                        evidence_id = report.evidence_id.as_deref().unwrap_or(""),
                        new_container_id = report.new_container_id.as_deref().unwrap_or(""),
                        "response finished"
                    );
                    if let Err(e) = sink.write(&report) {
                        return Err(RunError::Runtime(format!("writing responses: {e}")));
                    }
                }
            }
            Some(v) = baseline_rx.recv() => {
                if let Err(e) = sink.write(&v) {
                    return Err(RunError::Runtime(format!("writing events: {e}")));
                }
            }
            r = &mut watcher_task => {
                return Err(RunError::Runtime(format!("Docker watcher stopped: {}", describe(r))));
            }
            r = &mut sensor_task => {
                return Err(RunError::Runtime(format!("sensor stopped: {}", describe(r))));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Starts the profile's response to `alert`, if it has one and the rate limit allows it.
fn respond(
    alert: &crate::detect::Alert,
    container: Option<&Arc<crate::runtime::ContainerInfo>>,
    profiles: &ProfileSet,
    responder: Option<&Arc<Responder>>,
    recent: &RecentEvents<crate::enrich::Enriched>,
    node: &str,
    done: &tokio::sync::mpsc::Sender<ResponseReport>,
) {
    let (Some(responder), Some(c)) = (responder, container) else {
        return;
    };
    let Some(profile) = profiles.get(&c.profile) else {
        return;
    };
    let Some(rule) = profile.response_for(&alert.rule, &alert.tags, &alert.priority) else {
        return;
    };
    if matches!(rule.action, brainbox_profile::Action::Alert) {
        return;
    }
    if !responder.admit(&c.id, &rule.name, rule.rate_limit) {
        tracing::warn!(container_id = %c.id, response = %rule.name, "response rate-limited; alert only");
        return;
    }
    tracing::warn!(container_id = %c.id, response = %rule.name, action = ?rule.action, "response starting");
    let recent: Vec<serde_json::Value> = recent
        .get(c.cgroup_id)
        .iter()
        .filter_map(|e| serde_json::to_value(events::build(e, node)).ok())
        .collect();
    let (responder, alert, c, done) = (responder.clone(), alert.clone(), c.clone(), done.clone());
    let (action, name) = (rule.action, rule.name.clone());
    tokio::spawn(async move {
        let report = responder.run(action, name, &alert, c, recent).await;
        let _ = done.send(report).await;
    });
}

fn describe<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "ended".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

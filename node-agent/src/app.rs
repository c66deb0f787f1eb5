//! `brainbox-node-agent run`: wires sensor, runtime and output together.

use crate::{
    config::AgentConfig,
    events::{self, Sink},
    metrics::AgentMetrics,
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
    let metrics = Arc::new(AgentMetrics::default());
    let sensor = Sensor::load(cfg.sensor.ring_buffer_bytes)
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
    let mut registry = Registry::default();
    metrics.register(&mut registry, sensor.kernel_stats());
    tracing::info!(programs = 4, "eBPF sensor loaded and attached");
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
    let table = ContainerTable::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = docker::DockerWatcher {
        docker,
        table: table.clone(),
        watch,
        profiles: Arc::new(profiles),
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
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let container = table.get(ev.header().cgroup_id);
                if container.is_none() {
                    metrics.unattributed.inc();
                    if !cfg.events.include_unattributed {
                        continue;
                    }
                }
                let out = events::build(&ev, &node, container.as_ref());
                if let Err(e) = sink.write(&out) {
                    return Err(RunError::Runtime(format!("writing events: {e}")));
                }
            }
            Some(v) = baseline_rx.recv() => {
                if let Err(e) = sink.write_json(&v) {
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

fn describe<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "ended".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

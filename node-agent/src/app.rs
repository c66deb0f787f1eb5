//! `brainbox-node-agent run`: wires sensor, runtime and output together.

use crate::{
    alerting::AlertPath,
    config::AgentConfig,
    detect::Detector,
    enrich,
    events::{self, Sink},
    metrics::AgentMetrics,
    process::ProcessTable,
    response::{RecentEvents, Responder, ResponseReport},
    runtime::{cgroup, docker, ContainerTable},
    sensor::Sensor,
    zones::{self, Zones, ZonesSettings},
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
    // One redaction engine for everything that leaves the node: alert outputs, command lines,
    // captured environments.
    let mut rb = brainbox_redact::Engine::builder();
    let redact_dir = cfg.profiles_dir.join("redact");
    if redact_dir.is_dir() {
        rb = rb
            .rules_dir(&redact_dir)
            .map_err(|e| RunError::Config(format!("redaction rules: {e}")))?;
    }
    let redactor = Arc::new(
        rb.build()
            .map_err(|e| RunError::Config(format!("redaction: {e}")))?,
    );
    let redact_fn = {
        let r = redactor.clone();
        move |s: &str| r.redact_text(s).text.into_owned()
    };
    let detector = if cfg.rules.enabled {
        let d = Detector::load(&cfg.rules.files)
            .map_err(|e| RunError::Config(format!("rules: {e}")))?;
        d.start_dns(Duration::from_secs(cfg.rules.dns_refresh_secs));
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
    let sensor = Sensor::load(cfg.sensor.ring_buffer_bytes, cfg.sensor.attach)
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
    let mut registry = Registry::default();
    metrics.register(&mut registry, sensor.kernel_stats());
    let identity_metrics = Arc::new(crate::identity::IdentityMetrics::default());
    identity_metrics.register(&mut registry);
    let mut alert_path = if cfg.alerts.enabled {
        let m = brainbox_alerts::metrics::AlertMetrics::default();
        m.register(&mut registry);
        let p = AlertPath::start(&cfg.alerts, m)
            .await
            .map_err(|e| RunError::Unavailable(format!("alert path: {e}")))?;
        tracing::info!(nats_url = %cfg.alerts.nats_url, spool_dir = %cfg.alerts.spool_dir.display(), "alert path ready");
        Some(p)
    } else {
        None
    };
    let attached = sensor.attached();
    tracing::info!(
        programs = attached.programs,
        attach = ?cfg.sensor.attach,
        missing = ?attached.missing,
        "eBPF sensor loaded and attached"
    );
    let watch = sensor.watch_list();

    let started = if cfg.zones.enabled {
        match Zones::start(ZonesSettings {
            pin_dir: cfg.zones.pin_dir.clone(),
            profiles_dir: cfg.profiles_dir.clone(),
            only_label: cfg.zones.only_label(),
        }) {
            Ok(v) => Some(v),
            // The other agent's pinned programs keep enforcing; this one must not fight it.
            Err(e @ zones::ZonesError::Busy { .. }) => {
                tracing::error!(error = %e, "zones not started in this agent");
                None
            }
            Err(zones::ZonesError::Policy(m)) => {
                return Err(RunError::Config(format!("zones: {m}")))
            }
            Err(e) => return Err(RunError::Unavailable(e.to_string())),
        }
    } else {
        None
    };
    let zones = if let Some((z, ring)) = started {
        registry
            .sub_registry_with_prefix("brainbox")
            .register_collector(Box::new(z.collector()));
        tracing::info!(pin_dir = %cfg.zones.pin_dir.display(), "zone programs loaded");
        Some((z, ring))
    } else {
        None
    };

    let cgroup2 = if cfg.docker.cgroup2_mount.as_os_str().is_empty() {
        cgroup::cgroup2_mount().map_err(|e| RunError::Unavailable(e.to_string()))?
    } else {
        cfg.docker.cgroup2_mount.clone()
    };
    let docker = docker::connect_with_retry(&cfg.docker.socket, Duration::from_secs(5))
        .await
        .map_err(|e| RunError::Unavailable(e.to_string()))?;

    let safe_mode_gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.sub_registry_with_prefix("brainbox").register(
        "safe_mode",
        "1 while this node is in safe mode (brainboxes frozen or their egress closed)",
        safe_mode_gauge.clone(),
    );
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
    let table = ContainerTable::default();
    let responder = if cfg.response.enabled {
        let r = Responder::open(
            docker.clone(),
            cfg.response.clone(),
            node.clone(),
            redactor.clone(),
        )
        .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let r = match crate::runtime::kube::KubeClient::from_config(&cfg.kubernetes)
            .map_err(|e| RunError::Config(e.to_string()))?
        {
            Some(k) => {
                tracing::info!(api_server = ?k, "recycling Kubernetes pods through the API server");
                r.with_kube(k)
            }
            None => r,
        };
        let r = match &zones {
            Some((z, _)) => r.with_isolation(crate::response::Isolation {
                zones: z.clone(),
                table: table.clone(),
            }),
            None => r,
        };
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

    let _identity = if cfg.identity.enabled {
        let attestor = crate::identity::attest::CgroupAttestor {
            cgroup2: cgroup2.clone(),
            table: table.clone(),
            profiles: profiles.clone(),
            trust_domain: cfg.identity.trust_domain.clone(),
            namespace: cfg.identity.namespace.clone(),
        };
        Some(
            crate::identity::start(
                &cfg.identity,
                Arc::new(attestor),
                identity_metrics,
                cfg.alerts.enabled,
            )
            .map_err(|e| RunError::Unavailable(format!("identity: {e}")))?,
        )
    } else {
        None
    };
    // One control-plane connection for revocations and safe mode, only with alerts on.
    let control_client = if cfg.alerts.enabled {
        Some(
            crate::safety::safemode::control_client(&cfg.alerts.nats_url, &cfg.alerts.nats_auth)
                .await
                .map_err(|e| RunError::Unavailable(format!("control plane: {e}")))?,
        )
    } else {
        None
    };
    if let (Some(r), Some(client)) = (&responder, &control_client) {
        // Operators lift an `isolate` response here (`brainboxctl isolation release`).
        tokio::spawn(crate::response::release::serve(
            client.clone(),
            node.clone(),
            r.clone(),
        ));
    }
    if let (Some(id), Some(client)) = (&_identity, &control_client) {
        tokio::spawn(crate::identity::revocations::follow(
            client.clone(),
            id.deny.clone(),
            id.ready.clone(),
            Duration::from_secs(cfg.identity.revocations_wait_secs),
        ));
    }
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = docker::DockerWatcher {
        docker,
        table: table.clone(),
        watch,
        profiles: profiles.clone(),
        cgroup2,
        metrics: metrics.clone(),
        observers: zones
            .iter()
            .map(|(z, _)| Arc::new(z.clone()) as Arc<dyn crate::runtime::ContainerObserver>)
            .collect(),
        baseline,
    };
    let _safety = start_safe_mode(
        cfg.alerts.safety_tick_ms,
        &profiles,
        &node,
        table.clone(),
        zones.as_ref().map(|(z, _)| z.clone()),
        alert_path.as_ref().map(|p| p.state()),
        safe_mode_gauge,
        control_client,
    )
    .await?;
    let (zone_tx, mut zone_rx) = tokio::sync::mpsc::channel(1024);
    if let Some((z, ring)) = zones {
        if cfg.zones.watch_profiles {
            let zw = z.clone();
            tokio::spawn(async move {
                if let Err(e) = zw.watch_profiles().await {
                    tracing::error!(error = %e, "cannot watch profiles; zone policy reload is off");
                }
            });
        }
        let (table, node) = (table.clone(), node.clone());
        tokio::spawn(async move {
            if let Err(e) = zones::run_reports(z, ring, table, node, zone_tx).await {
                tracing::error!(error = %e, "zone denial reader stopped");
            }
        });
    } else {
        drop(zone_tx);
    }
    let mut watcher_task = tokio::spawn(watcher.run(ready_tx));

    // Batches of up to `sensor::BATCH` events: at most 8192 events queued, as before batching.
    let (tx, mut rx) = tokio::sync::mpsc::channel(8192 / crate::sensor::BATCH);
    let processed = crate::metrics::PerKind::new(&metrics.events_processed);
    let (drop_tx, mut drop_rx) = tokio::sync::mpsc::channel(16);
    let mut drop_alerts =
        crate::detect::DropAlerts::new(Duration::from_secs(cfg.sensor.drop_alert_secs));
    let mut sensor_task = tokio::spawn(sensor.run(
        tx,
        metrics.clone(),
        Duration::from_secs(cfg.sensor.stats_interval_secs),
        (cfg.sensor.drop_alert_secs > 0).then_some(drop_tx),
    ));

    if let Ok(n) = ready_rx.await {
        tracing::info!(watched_containers = n, node = %node, "agent ready");
    }

    let mut sink = Sink::open(&cfg.events.output)
        .map_err(|e| RunError::Config(format!("events.output `{}`: {e}", cfg.events.output)))?;
    let mut procs = ProcessTable::default();
    let mut last_expiry = std::time::Instant::now();
    // Summaries of coalesced alerts go out within a second of their window closing.
    let mut coalesce_tick = tokio::time::interval(Duration::from_secs(1));
    coalesce_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                let mut response = ResponseState {
                    profiles: &profiles,
                    responder: responder.as_ref(),
                    recent: &mut recent,
                    done: &resp_tx,
                };
                let cx = EventContext {
                    table: &table,
                    cfg: &cfg,
                    node: &node,
                    detector: detector.as_ref(),
                    redact: &redact_fn,
                    metrics: &metrics,
                };
                let mut raised = Vec::new();
                for ev in &batch {
                    raised.extend(handle(ev, &cx, &mut procs, &mut sink, &mut response)?);
                    processed.inc_by(ev.kind_name(), 1);
                }
                if let Some(path) = alert_path.as_mut() {
                    for (alert, responding) in raised {
                        if responding {
                            path.hold(alert);
                        } else {
                            path.send(&alert).await;
                        }
                    }
                }
                if last_expiry.elapsed() > Duration::from_secs(1) {
                    procs.expire(std::time::Instant::now());
                    recent.retain(|cg| table.get(cg).is_some());
                    metrics.processes.set(procs.len() as i64);
                    last_expiry = std::time::Instant::now();
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
                    if let Some(path) = alert_path.as_mut() {
                        path.release(&report.alert_id, report.evidence_id.clone()).await;
                    }
                }
            }
            Some(ev) = zone_rx.recv() => {
                // Denials are alerts: logged like the rule engine's, written to the same output.
                tracing::warn!(
                    container = ev["container"]["name"].as_str().unwrap_or("unknown"),
                    hook = ev["hook"].as_str().unwrap_or(""),
                    destination = %ev["destination"],
                    rule = ev["rule"].as_str().unwrap_or(""),
                    "network flow denied"
                );
                if let Err(e) = sink.write(&ev) {
                    return Err(RunError::Runtime(format!("writing events: {e}")));
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
            Some(d) = drop_rx.recv() => drop_alerts.add(&d),
            _ = coalesce_tick.tick() => {
                // The sensor's own alert: at most one per `sensor.drop_alert_secs`.
                let by_cgroup = |cg: u64| table.get(cg).map(|c| (*c).clone());
                if let Some(alert) = drop_alerts.due(std::time::Instant::now(), &node, &by_cgroup) {
                    record_alert(&alert, &metrics, &mut sink)?;
                    if let Some(path) = alert_path.as_mut() {
                        path.send(&alert).await;
                    }
                }
                if let Some(path) = alert_path.as_mut() {
                    path.tick().await;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("shutting down");
    if let Some(path) = alert_path.as_mut() {
        path.finish(Duration::from_secs(3)).await;
    }
    Ok(())
}

/// What [`handle`] needs to start responses to alerts.
struct ResponseState<'a> {
    profiles: &'a ProfileSet,
    responder: Option<&'a Arc<Responder>>,
    recent: &'a mut RecentEvents<crate::enrich::Enriched>,
    done: &'a tokio::sync::mpsc::Sender<ResponseReport>,
}

/// What [`handle`] reads for every event: fixed for the agent's run.
struct EventContext<'a> {
    table: &'a ContainerTable,
    cfg: &'a AgentConfig,
    node: &'a str,
    detector: Option<&'a Detector>,
    redact: &'a dyn Fn(&str) -> String,
    metrics: &'a AgentMetrics,
}

/// Handles one sensor event: enrich, write it if wanted, evaluate the rules and write alerts.
fn handle(
    ev: &crate::sensor::decode::SensorEvent,
    cx: &EventContext<'_>,
    procs: &mut ProcessTable,
    sink: &mut Sink,
    response: &mut ResponseState<'_>,
) -> Result<Vec<(crate::detect::Alert, bool)>, RunError> {
    let EventContext {
        table,
        cfg,
        node,
        detector,
        redact,
        metrics,
    } = *cx;
    let mut raised = Vec::new();
    let Some(ev) = enrich::enrich(ev, procs, table) else {
        return Ok(raised);
    };
    if let (Some(_), Some(c)) = (response.responder, &ev.container) {
        response
            .recent
            .push(c.cgroup_id, ev.clone(), cfg.response.recent_events);
    }
    if ev.container.is_none() {
        metrics.unattributed.inc();
        if !cfg.events.include_unattributed {
            return Ok(raised);
        }
    }
    if ev.is_exec() || cfg.events.syscalls {
        let out = events::build(&ev, node);
        sink.write(&out)
            .map_err(|e| RunError::Runtime(format!("writing events: {e}")))?;
    }
    if let Some(d) = detector {
        for alert in d.evaluate(&ev, node, redact) {
            record_alert(&alert, metrics, sink)?;
            let responding = response.start(&alert, ev.container.as_ref(), node);
            raised.push((alert, responding));
        }
    }
    Ok(raised)
}

/// Counts, logs and writes one alert (to the event output; the NATS path is the caller's).
fn record_alert(
    alert: &crate::detect::Alert,
    metrics: &AgentMetrics,
    sink: &mut Sink,
) -> Result<(), RunError> {
    metrics
        .alerts
        .get_or_create(&crate::metrics::RuleLabel {
            rule: alert.rule.clone(),
            priority: alert.priority.clone(),
        })
        .inc();
    tracing::warn!(
        rule = %alert.rule,
        priority = %alert.priority,
        container = alert.container.as_ref().map(|c| c.name.as_str()).unwrap_or("host"),
        output = %alert.output,
        "alert"
    );
    sink.write(alert)
        .map_err(|e| RunError::Runtime(format!("writing alerts: {e}")))
}

impl ResponseState<'_> {
    /// Starts the profile's response to `alert`, if it has one and the rate limit allows it.
    /// Returns whether a response started.
    fn start(
        &self,
        alert: &crate::detect::Alert,
        container: Option<&Arc<crate::runtime::ContainerInfo>>,
        node: &str,
    ) -> bool {
        let (profiles, responder, recent, done) =
            (self.profiles, self.responder, &*self.recent, self.done);
        let (Some(responder), Some(c)) = (responder, container) else {
            return false;
        };
        let Some(profile) = profiles.get(&c.profile) else {
            return false;
        };
        let Some(rule) = profile.response_for(&alert.rule, &alert.tags, &alert.priority) else {
            return false;
        };
        if matches!(rule.action, brainbox_profile::Action::Alert) {
            return false;
        }
        if !responder.admit(&c.id, &rule.name, rule.rate_limit) {
            tracing::warn!(container_id = %c.id, response = %rule.name, "response rate-limited; alert only");
            return false;
        }
        tracing::warn!(container_id = %c.id, response = %rule.name, action = ?rule.action, "response starting");
        let recent: Vec<serde_json::Value> = recent
            .get(c.cgroup_id)
            .iter()
            .filter_map(|e| serde_json::to_value(events::build(e, node)).ok())
            .collect();
        let (responder, alert, c, done) =
            (responder.clone(), alert.clone(), c.clone(), done.clone());
        let (action, name) = (rule.action, rule.name.clone());
        tokio::spawn(async move {
            let report = responder.run(action, name, &alert, c, recent).await;
            let _ = done.send(report).await;
        });
        true
    }
}

fn describe<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "ended".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Starts the dead-man switch and safe mode when a profile has a `safety` section. It needs the
/// control plane (operator check-ins and commands come over NATS), so it runs only with alerts
/// on; NATS need not be up: the clock and the alert path's state still drive it.
#[allow(clippy::too_many_arguments)] // the pieces of the agent it ties together, as `handle`
async fn start_safe_mode(
    tick_ms: u64,
    profiles: &ProfileSet,
    node: &str,
    table: ContainerTable,
    zones: Option<Zones>,
    alert_state: Option<tokio::sync::watch::Receiver<brainbox_alerts::publisher::PublisherState>>,
    gauge: prometheus_client::metrics::gauge::Gauge,
    client: Option<async_nats::Client>,
) -> Result<Option<tokio::task::JoinHandle<()>>, RunError> {
    let Some(policy) = profiles.safety_policy() else {
        return Ok(None);
    };
    let Some(client) = client else {
        tracing::warn!(
            "profiles ask for a dead-man switch but alerts are off; safe mode is not armed"
        );
        return Ok(None);
    };
    if let Some(z) = &zones {
        // The lock map is pinned: a node-wide lock left by an earlier agent is this process's
        // to decide again. The monitor re-enters safe mode if the reasons still hold.
        if z.locks().contains(&brainbox_ebpf_common::zones::LOCK_ALL) {
            tracing::warn!("lifting a node-wide egress lock left by a previous agent; the safe-mode monitor decides afresh");
            z.close_all(false)
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
        }
    }
    let control = brainbox_alerts::control::ControlPlane::from_client(client.clone());
    let actuator = crate::safety::safemode::NodeActuator::new(table, zones, gauge);
    tracing::info!(
        action = policy.action.as_str(),
        checkin_interval_secs = ?policy.checkin_interval_secs,
        on_alert_path_lost = policy.on_alert_path_lost,
        "safe mode armed"
    );
    let (_state, task) = brainbox_alerts::monitor::spawn(
        brainbox_alerts::monitor::MonitorConfig {
            node: node.to_owned(),
            policy,
            tick: Duration::from_millis(tick_ms.max(100)),
        },
        control,
        client,
        alert_state,
        actuator,
    );
    Ok(Some(task))
}

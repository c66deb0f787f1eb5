//! The safe-mode monitor: feeds the [`SafetyMachine`] from the control plane (operator
//! check-ins and safe-mode commands), from the alert publisher's state and from a clock, applies
//! changes through an [`Actuator`] the node agent supplies (freeze, close egress), and announces
//! every change on each channel still working: a `tracing` error/info line, the node's state in
//! the `BRAINBOX_SAFE_MODE` bucket, and a core NATS message on `brainbox.safe_mode.<node>`.

use crate::{
    control::{
        command_key, ControlPlane, KvChange, NodeSafetyState, SafeModeCommand, CHECKIN_KEY,
        OPERATOR_BUCKET, SAFE_MODE_BUCKET,
    },
    publisher::PublisherState,
    safety::{Change, Reason, SafeAction, SafetyMachine, SafetyPolicy},
    schema::subject_token,
};
use futures_util::{Stream, StreamExt};
use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::watch;

/// Applies safe mode to the node's brainboxes. Implemented by the node agent.
pub trait Actuator: Send + 'static {
    /// Applies `action` (called once when safe mode is entered).
    fn enter(
        &mut self,
        action: SafeAction,
        reasons: &[Reason],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Undoes it (called once when safe mode is lifted).
    fn leave(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// This node's name.
    pub node: String,
    /// The policy (for several profiles on one node: the shortest interval, the strictest
    /// action).
    pub policy: SafetyPolicy,
    /// How often to re-check the clock and re-publish the state.
    pub tick: Duration,
}

type KvStream = Pin<Box<dyn Stream<Item = KvChange> + Send>>;

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Runs the monitor until the task is dropped; the returned watch carries the node's state.
pub fn spawn<A: Actuator>(
    cfg: MonitorConfig,
    control: ControlPlane,
    client: async_nats::Client,
    alert_path: Option<watch::Receiver<PublisherState>>,
    actuator: A,
) -> (
    watch::Receiver<NodeSafetyState>,
    tokio::task::JoinHandle<()>,
) {
    let initial = NodeSafetyState {
        node: cfg.node.clone(),
        safe_mode: false,
        reasons: vec![],
        action: cfg.policy.action.as_str().to_owned(),
        since: None,
        last_checkin: None,
        updated: now_rfc3339(),
        details: serde_json::Value::Null,
    };
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(run(cfg, control, client, alert_path, actuator, tx));
    (rx, task)
}

/// Longest a control-plane call may hold up the monitor: safe mode must not wait for NATS.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

fn connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

async fn open_watch(
    control: &ControlPlane,
    client: &async_nats::Client,
    bucket: &str,
) -> Option<KvStream> {
    if !connected(client) {
        return None;
    }
    match tokio::time::timeout(CONTROL_TIMEOUT, control.watch(bucket)).await {
        Ok(Ok(s)) => Some(Box::pin(s)),
        Ok(Err(e)) => {
            tracing::debug!(bucket, error = %e, "control-plane watch unavailable; retrying");
            None
        }
        Err(_) => None,
    }
}

async fn next_or_pending(s: &mut Option<KvStream>) -> Option<KvChange> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn run<A: Actuator>(
    cfg: MonitorConfig,
    control: ControlPlane,
    client: async_nats::Client,
    mut alert_path: Option<watch::Receiver<PublisherState>>,
    mut actuator: A,
    tx: watch::Sender<NodeSafetyState>,
) {
    let mut m = SafetyMachine::new(cfg.policy.clone(), Instant::now());
    let own_key = command_key(Some(&cfg.node));
    let all_key = command_key(None);
    let mut checkins: Option<KvStream> = None;
    let mut commands: Option<KvStream> = None;
    let mut last_checkin: Option<String> = None;
    let mut applied_checkin: Option<SystemTime> = None;
    // The last command applied from each key (own and all-nodes): its revision and bytes.
    let mut applied_commands: std::collections::HashMap<String, (u64, bytes::Bytes)> =
        Default::default();
    let mut since: Option<String> = None;
    // The server the watches were opened on. After a reconnect to another server, or to a
    // restarted one (a new id), the watches are opened afresh: a watch that resumes by itself
    // continues from the old stream's sequence, and on a server that lost its store it would
    // skip everything written since, until the new sequence caught up.
    let mut watched_server = String::new();
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut ticked = false;
        // Watches end when NATS goes away; re-open them on the next tick.
        let change = tokio::select! {
            _ = ticker.tick() => {
                ticked = true;
                if connected(&client) {
                    let id = client.server_info().server_id;
                    if id != watched_server {
                        if !watched_server.is_empty() {
                            tracing::info!(server = %id, "NATS server changed; re-reading the control plane");
                        }
                        watched_server = id;
                        checkins = None;
                        commands = None;
                    }
                }
                if checkins.is_none() {
                    checkins = open_watch(&control, &client, OPERATOR_BUCKET).await;
                }
                if commands.is_none() {
                    commands = open_watch(&control, &client, SAFE_MODE_BUCKET).await;
                }
                m.tick(Instant::now())
            }
            e = next_or_pending(&mut checkins) => match e {
                // The store replays its last value whenever a watch (re)opens: at agent start
                // and after every NATS outage. A check-in counts from its own time, and once.
                Some(KvChange { key: k, value: Some(v), .. }) if k == CHECKIN_KEY => {
                    match serde_json::from_slice::<crate::control::Checkin>(&v) {
                        Ok(c) => match humantime::parse_rfc3339_weak(&c.time) {
                            Ok(t) if applied_checkin.is_none_or(|a| t > a) => {
                                applied_checkin = Some(t);
                                last_checkin = Some(c.time);
                                m.checkin_aged(age_of(t), Instant::now())
                            }
                            Ok(_) => Change::None,
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring a check-in with a malformed time");
                                Change::None
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "ignoring a malformed check-in");
                            Change::None
                        }
                    }
                }
                Some(_) => Change::None,
                None => { checkins = None; Change::None }
            },
            e = next_or_pending(&mut commands) => match e {
                Some(KvChange { key: k, value: Some(v), revision }) if k == own_key || k == all_key => {
                    match serde_json::from_slice::<SafeModeCommand>(&v) {
                        Ok(c) => {
                            let t = humantime::parse_rfc3339_weak(&c.time).ok();
                            if applied_commands.get(&k) == Some(&(revision, v.clone())) {
                                // A replay of the command already applied (the watch reopened
                                // and delivered the key's latest value again). Told apart by
                                // the store's revision and the value, not by the command's
                                // time: an operator whose clock is behind is still obeyed. A
                                // lower revision is no replay either: the store was reset
                                // (new volume, bucket re-created) and this is what it holds.
                                Change::None
                            } else {
                                applied_commands.insert(k.clone(), (revision, v.clone()));
                                // Without a readable time, `off` is treated as stale (no
                                // check-in); `on` always holds.
                                let age = t.map_or(Duration::MAX, age_of);
                                tracing::info!(on = c.on, by = %c.by, reason = %c.reason, time = %c.time, "operator safe-mode command");
                                m.operator_aged(c.on, age, Instant::now())
                            }
                        }
                        Err(e) => {
                            tracing::warn!(key = %k, error = %e, "ignoring a malformed safe-mode command");
                            Change::None
                        }
                    }
                }
                Some(_) => Change::None,
                None => { commands = None; Change::None }
            },
            r = async {
                match alert_path.as_mut() {
                    Some(w) => w.changed().await.map(|()| w.borrow().alert_path_lost()),
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(lost) => m.alert_path(lost),
                Err(_) => { alert_path = None; Change::None }
            },
        };
        match &change {
            Change::Entered { action, reasons } => {
                since = Some(now_rfc3339());
                let why: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
                tracing::error!(node = %cfg.node, action = action.as_str(), reasons = ?why, "ENTERING SAFE MODE");
                if let Err(e) = actuator.enter(*action, reasons).await {
                    tracing::error!(error = %e, "safe-mode action failed");
                }
            }
            Change::Left => {
                since = None;
                tracing::warn!(node = %cfg.node, "leaving safe mode");
                if let Err(e) = actuator.leave().await {
                    tracing::error!(error = %e, "undoing the safe-mode action failed");
                }
            }
            Change::Reasons(r) => {
                tracing::warn!(node = %cfg.node, reasons = ?r, "still in safe mode, for other reasons");
            }
            Change::None => {}
        }
        let state = NodeSafetyState {
            node: cfg.node.clone(),
            safe_mode: m.active(),
            reasons: m.reasons().iter().map(|r| r.as_str().to_owned()).collect(),
            action: cfg.policy.action.as_str().to_owned(),
            since: since.clone(),
            last_checkin: last_checkin.clone(),
            updated: now_rfc3339(),
            details: serde_json::Value::Null,
        };
        let announce = change != Change::None;
        let _ = tx.send(state.clone());
        if (announce || ticked) && connected(&client) {
            // Best effort, bounded in time on purpose: when NATS is what failed, the log line
            // above is the channel that still works, and safe mode must not wait for NATS.
            match tokio::time::timeout(CONTROL_TIMEOUT, control.publish_state(&state)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot publish the safe-mode state"),
                Err(_) => tracing::debug!("publishing the safe-mode state timed out"),
            }
            if announce {
                let subject = format!("brainbox.safe_mode.{}", subject_token(&cfg.node));
                let body = serde_json::to_vec(&state).unwrap_or_default();
                let _ = tokio::time::timeout(CONTROL_TIMEOUT, client.publish(subject, body.into()))
                    .await;
            }
        }
    }
}

/// How long ago `t` was (zero if it is ahead of this clock: clocks differ a little).
fn age_of(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

//! The safe-mode monitor against a private `nats-server -js`: dead-man switch with a short
//! interval, check-in lift, operator commands, alert-path loss.

use anyhow::{ensure, Result};
use brainbox_alerts::{
    control::{Checkin, ControlPlane, SafeModeCommand},
    monitor::{self, MonitorConfig},
    publisher::PublisherState,
    safety::{Lift, SafeAction, SafetyPolicy},
    testkit::{NatsServer, RecordingActuator},
    BreakerState,
};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn lost(lost: bool) -> PublisherState {
    PublisherState {
        breaker: if lost {
            BreakerState::Open
        } else {
            BreakerState::Closed
        },
        nats_connected: !lost,
        spool_records: 0,
        spool_bytes: 0,
        spool_max_bytes: 1,
        spool_full: lost,
        spool_failed: false,
        last_error: None,
    }
}

/// The monitor for `node`, ticking every 100 ms, without an alert path to watch.
fn spawn_without_alert_path(
    node: &str,
    policy: SafetyPolicy,
    cp: &ControlPlane,
    client: &async_nats::Client,
    rec: &RecordingActuator,
) -> (
    watch::Receiver<brainbox_alerts::control::NodeSafetyState>,
    tokio::task::JoinHandle<()>,
) {
    monitor::spawn(
        MonitorConfig {
            node: node.into(),
            policy,
            tick: Duration::from_millis(100),
        },
        cp.clone(),
        client.clone(),
        None,
        rec.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_operator_and_alert_path_drive_safe_mode() -> Result<()> {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await?;
    let cp = ControlPlane::from_client(client.clone());
    let rec = RecordingActuator::default();
    let (path_tx, path_rx) = watch::channel(lost(false));
    let policy = SafetyPolicy {
        checkin_interval_secs: Some(3),
        action: SafeAction::Freeze,
        on_alert_path_lost: true,
        lift: Lift::Checkin,
    };
    let (state, task) = monitor::spawn(
        MonitorConfig {
            node: "node-a".into(),
            policy,
            tick: Duration::from_millis(100),
        },
        cp.clone(),
        client.clone(),
        Some(path_rx),
        rec.clone(),
    );

    // Nobody checks in: the dead-man switch fires.
    rec.wait_for(1, "enter freeze dead_man").await?;
    ensure!(state.borrow().safe_mode);
    // And the node says so in the control plane, for `brainboxctl safe-mode status`.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = cp.node_states().await?;
        if s.iter()
            .any(|s| s.node == "node-a" && s.safe_mode && s.reasons == ["dead_man"])
        {
            break;
        }
        ensure!(Instant::now() < deadline, "state not published: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A check-in lifts it (lift: checkin).
    cp.checkin(&Checkin {
        operator: "alice".into(),
        time: humantime::format_rfc3339(std::time::SystemTime::now()).to_string(),
    })
    .await?;
    rec.wait_for(2, "leave").await?;
    ensure!(state.borrow().last_checkin.is_some());

    // Operator on/off.
    let cmd = |on| SafeModeCommand {
        on,
        by: "alice".into(),
        time: humantime::format_rfc3339(std::time::SystemTime::now()).to_string(),
        reason: "drill".into(),
    };
    cp.command_safe_mode(Some("node-a"), &cmd(true)).await?;
    rec.wait_for(3, "enter freeze operator").await?;
    cp.command_safe_mode(None, &cmd(false)).await?;
    rec.wait_for(4, "leave").await?;

    // NATS down and spool full: safe mode until alerts flow again.
    path_tx.send(lost(true))?;
    rec.wait_for(5, "enter freeze alert_path_lost").await?;
    path_tx.send(lost(false))?;
    rec.wait_for(6, "leave").await?;

    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_and_spool_full_puts_the_node_into_safe_mode() -> Result<()> {
    use brainbox_alerts::{
        testkit::{free_port, load_alert},
        AlertMetrics, PublishError, Publisher, PublisherConfig, SpoolConfig,
    };
    // Nothing listens here: NATS is down for the publisher and for the control plane alike.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let spool = tempfile::tempdir()?;
    let mut cfg = PublisherConfig::new(&url, spool.path());
    cfg.ack_timeout = Duration::from_millis(300);
    cfg.initial_connect_wait = Duration::from_millis(100);
    cfg.spool = SpoolConfig {
        dir: spool.path().to_owned(),
        max_bytes: 2048,
        segment_bytes: 1024,
    };
    let (publisher, ptask) = Publisher::start(cfg, AlertMetrics::default()).await?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await?;
    let rec = RecordingActuator::default();
    let (state, mtask) = monitor::spawn(
        MonitorConfig {
            node: "node-a".into(),
            policy: SafetyPolicy {
                checkin_interval_secs: None,
                action: SafeAction::CloseEgress,
                on_alert_path_lost: true,
                lift: Lift::Checkin,
            },
            tick: Duration::from_millis(100),
        },
        ControlPlane::from_client(client.clone()),
        client,
        Some(publisher.state()),
        rec.clone(),
    );
    let mut refused = false;
    for i in 0..100 {
        if let Err(PublishError::SpoolFull(_)) =
            publisher.publish(load_alert("node-a", "full", i)).await
        {
            refused = true;
            break;
        }
    }
    ensure!(refused, "the spool never filled");
    rec.wait_for(1, "enter close_egress alert_path_lost")
        .await?;
    ensure!(state.borrow().safe_mode);
    mtask.abort();
    drop(publisher);
    ptask.join().await;
    Ok(())
}

/// The stored check-in counts from its own time: an agent (re)starting after the operator went
/// quiet enters safe mode at once instead of granting itself a fresh interval, so restarting the
/// agent (or NATS, which replays the stored value) cannot postpone the dead-man switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_stored_checkin_fires_the_dead_man_switch_at_start() -> Result<()> {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await?;
    let cp = ControlPlane::from_client(client.clone());
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    cp.checkin(&Checkin {
        operator: "alice".into(),
        time: humantime::format_rfc3339_millis(hour_ago).to_string(),
    })
    .await?;
    let rec = RecordingActuator::default();
    let policy = SafetyPolicy {
        checkin_interval_secs: Some(600),
        action: SafeAction::CloseEgress,
        on_alert_path_lost: false,
        lift: Lift::Checkin,
    };
    let (state, task) = spawn_without_alert_path("node-b", policy, &cp, &client, &rec);
    // Ten minutes of interval, but the last check-in is an hour old: safe mode now.
    rec.wait_for(1, "enter close_egress dead_man").await?;
    ensure!(state.borrow().safe_mode);
    // A fresh check-in lifts it.
    cp.checkin(&Checkin {
        operator: "alice".into(),
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    })
    .await?;
    rec.wait_for(2, "leave").await?;
    task.abort();
    Ok(())
}

/// Safe-mode commands are told apart from replays by the store's revision and value, not by
/// their own times: a `safe-mode on` from an operator whose clock runs ten minutes behind,
/// given after an `off` from one with a correct clock, still freezes the node (it was ignored
/// as a replay when commands were compared by time); and when NATS comes back with an empty
/// store (lost volume) the first command in it, whose revision is lower than the last one
/// applied, is obeyed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_obeyed_whatever_the_operators_clock_and_after_a_store_reset() -> Result<()> {
    let nats = NatsServer::start();
    let port = nats.port();
    let client = async_nats::connect(nats.url()).await?;
    let cp = ControlPlane::from_client(client.clone());
    let rec = RecordingActuator::default();
    let policy = SafetyPolicy {
        checkin_interval_secs: None,
        action: SafeAction::Freeze,
        on_alert_path_lost: false,
        lift: Lift::Checkin,
    };
    let (state, task) = spawn_without_alert_path("node-c", policy, &cp, &client, &rec);
    let cmd = |on, by: &str, behind: u64| SafeModeCommand {
        on,
        by: by.into(),
        time: humantime::format_rfc3339_millis(
            std::time::SystemTime::now() - Duration::from_secs(behind),
        )
        .to_string(),
        reason: "clock test".into(),
    };
    cp.command_safe_mode(Some("node-c"), &cmd(true, "alice", 0))
        .await?;
    rec.wait_for(1, "enter freeze operator").await?;
    cp.command_safe_mode(Some("node-c"), &cmd(false, "alice", 0))
        .await?;
    rec.wait_for(2, "leave").await?;
    // Bob's clock is ten minutes behind.
    cp.command_safe_mode(Some("node-c"), &cmd(true, "bob", 600))
        .await?;
    rec.wait_for(3, "enter freeze operator").await?;
    ensure!(state.borrow().safe_mode);

    // NATS comes back on the same address with an empty store: revisions start again at 1.
    drop(nats);
    let _nats = NatsServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The first writes may land before the client reconnected; retry until one is stored.
        if cp
            .command_safe_mode(Some("node-c"), &cmd(false, "alice", 0))
            .await
            .is_ok()
            && rec.events().len() >= 4
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "`off` into the new store was not obeyed: {:?}",
            rec.events()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rec.wait_for(4, "leave").await?;
    task.abort();
    Ok(())
}

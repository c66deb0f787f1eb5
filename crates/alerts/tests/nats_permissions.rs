//! The NATS users and permissions we ship (`deploy/kubernetes/20-nats.yaml`), run as they are by
//! a real `nats-server -js`, and tried the way a thief of each credential would: nobody gets in
//! anonymously; a node agent publishes alerts and its state and follows the control plane, but
//! cannot switch safe mode, check in, revoke, lift an isolation or purge the alert stream; a
//! sidecar publishes its logs and nothing else; the operator can do all of it.

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use brainbox_alerts::{
    control::{
        isolation_request, Checkin, ControlPlane, IsolationRequest, NodeSafetyState,
        SafeModeCommand,
    },
    monitor::{self, MonitorConfig},
    publisher::{PublisherConfig, DEFAULT_STREAM},
    safety::{Lift, SafeAction, SafetyPolicy},
    testkit::{free_port, RecordingActuator, ShippedNats},
    AlertMetrics, Delivery, Publisher,
};
use brainbox_common::nats::NatsAuth;
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn checkin(who: &str) -> Checkin {
    Checkin {
        operator: who.into(),
        time: now(),
    }
}

fn command(on: bool, by: &str) -> SafeModeCommand {
    SafeModeCommand {
        on,
        by: by.into(),
        time: now(),
        reason: "permissions test".into(),
    }
}

fn state(node: &str) -> NodeSafetyState {
    NodeSafetyState {
        node: node.into(),
        safe_mode: false,
        reasons: vec![],
        action: "close_egress".into(),
        since: None,
        last_checkin: None,
        updated: now(),
        details: serde_json::Value::Null,
    }
}

/// What a credential may not do to the control plane and the record.
async fn control_plane_is_closed_to(server: &ShippedNats, user: &str) -> Result<()> {
    let client = server.client(user).await?;
    let cp = ControlPlane::from_client(client.clone());
    ensure!(
        cp.command_safe_mode(None, &command(false, user))
            .await
            .is_err(),
        "{user} switched safe mode off for every node"
    );
    ensure!(
        cp.checkin(&checkin(user)).await.is_err(),
        "{user} checked in for the operator"
    );
    ensure!(
        cp.revoke(&serde_json::json!({"spiffe_id": "spiffe://x/y"}))
            .await
            .is_err(),
        "{user} published a revocation"
    );
    let lift = IsolationRequest::Release {
        container: "abcdef012345".into(),
        by: user.into(),
        reason: "thief".into(),
    };
    ensure!(
        isolation_request(&client, "node-a", &lift, Duration::from_secs(2))
            .await
            .is_err(),
        "{user} sent an isolation lift"
    );
    let js = jetstream::new(client.clone());
    if let Ok(mut s) = js.get_stream(DEFAULT_STREAM).await {
        ensure!(s.purge().await.is_err(), "{user} purged the alert stream");
        ensure!(
            js.delete_stream(DEFAULT_STREAM).await.is_err(),
            "{user} deleted the alert stream"
        );
        let _ = s.info().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_can_do_its_job_and_nothing_more() -> Result<()> {
    let server = ShippedNats::start();

    // Nobody gets in without TLS, even with the right password; nobody is anonymous; a wrong
    // password is refused.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        NatsAuth {
            ca_file: PathBuf::new(),
            ..server.auth("operator")
        }
        .apply(async_nats::ConnectOptions::new())
        .unwrap()
        .connect(server.url.replace("tls://", "nats://")),
    )
    .await;
    ensure!(
        !matches!(plain, Ok(Ok(_))),
        "a client without TLS was let in"
    );
    let anon = tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::new()
            .add_root_certificates(server.ca.clone())
            .connect(&server.url),
    )
    .await;
    ensure!(!matches!(anon, Ok(Ok(_))), "an anonymous client was let in");
    let wrong = NatsAuth {
        user: "operator".into(),
        password_file: server.password_file("sidecar"),
        ca_file: server.ca.clone(),
        ..Default::default()
    };
    let wrong = tokio::time::timeout(
        Duration::from_secs(5),
        wrong
            .apply(async_nats::ConnectOptions::new())
            .unwrap()
            .connect(&server.url),
    )
    .await;
    ensure!(!matches!(wrong, Ok(Ok(_))), "a wrong password was let in");

    // The operator: the whole control plane.
    let op = ControlPlane::connect_with(
        &server.url,
        &server.auth("operator"),
        Duration::from_secs(5),
    )
    .await
    .context("operator connect")?;
    op.checkin(&checkin("operator"))
        .await
        .context("operator checkin")?;

    // A node agent with its own credentials: the real publisher and the real safe-mode monitor.
    let spool = tempfile::tempdir()?;
    let mut pc = PublisherConfig::new(&server.url, spool.path());
    pc.auth = server.auth("node-agent");
    pc.ack_timeout = Duration::from_millis(1500);
    let (publisher, _ptask) = Publisher::start(pc, AlertMetrics::default()).await?;
    let d = publisher
        .publish(brainbox_alerts::testkit::load_alert("node-a", "perm", 0))
        .await?;
    ensure!(
        matches!(d, Delivery::Published { .. }),
        "the agent could not publish an alert: {d:?}"
    );
    let agent_cp = ControlPlane::from_client(server.client("node-agent").await?);
    agent_cp
        .publish_state(&state("node-a"))
        .await
        .context("the agent could not publish its safety state")?;
    let rec = RecordingActuator::default();
    let (_st, mtask) = monitor::spawn(
        MonitorConfig {
            node: "node-a".into(),
            policy: SafetyPolicy {
                checkin_interval_secs: Some(3600),
                action: SafeAction::CloseEgress,
                on_alert_path_lost: false,
                lift: Lift::Checkin,
            },
            tick: Duration::from_millis(100),
        },
        agent_cp.clone(),
        server.client("node-agent").await?,
        None,
        rec.clone(),
    );
    // The operator's command reaches the agent through the agent's own (read) permissions.
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.command_safe_mode(Some("node-a"), &command(true, "operator"))
        .await
        .context("operator safe-mode on")?;
    rec.wait_for(1, "enter close_egress operator").await?;
    // It answers the operator's isolation requests (replies go to the operator's inbox).
    let responder = server.client("node-agent").await?;
    let mut sub = responder
        .subscribe(brainbox_alerts::control::isolation_subject("node-a"))
        .await?;
    // A round trip, so the server has the subscription before the operator asks.
    responder.flush().await?;
    let answer = tokio::spawn(async move {
        use futures_util::StreamExt;
        if let Some(m) = sub.next().await {
            let reply = brainbox_alerts::control::IsolationReply {
                node: "node-a".into(),
                ok: true,
                error: None,
                isolated: vec![],
                released: vec![],
                node_locked: false,
                audit_seq: None,
            };
            if let Some(to) = m.reply {
                let _ = responder
                    .publish(to, serde_json::to_vec(&reply).unwrap().into())
                    .await;
                let _ = responder.flush().await;
            }
        }
    });
    let r = isolation_request(
        op.client(),
        "node-a",
        &IsolationRequest::List,
        Duration::from_secs(5),
    )
    .await
    .context("operator isolation list answered by the agent")?;
    ensure!(r.ok && r.node == "node-a", "{r:?}");
    answer.await?;
    // But the agent cannot write the control plane or destroy the record.
    control_plane_is_closed_to(&server, "node-agent").await?;

    // A sidecar: its logs, nothing else.
    let side = jetstream::new(server.client("sidecar").await?);
    side.get_or_create_stream(jetstream::stream::Config {
        name: "BRAINBOX_LOGS".into(),
        subjects: vec!["brainbox.logs.>".into()],
        ..Default::default()
    })
    .await
    .context("the sidecar could not ensure its log stream")?;
    side.publish("brainbox.logs.pod-a", "a redacted line".into())
        .await?
        .await
        .context("the sidecar could not publish a log line")?;
    let forged = side
        .publish("brainbox.alerts.node-a.critical", "{}".into())
        .await;
    let forged_acked = match forged {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    ensure!(!forged_acked, "the sidecar published an alert");
    control_plane_is_closed_to(&server, "sidecar").await?;

    // The stream still holds the agent's alert: nobody but the operator could touch it.
    let ops = jetstream::new(server.client("operator").await?);
    let mut alerts = ops.get_stream(DEFAULT_STREAM).await?;
    ensure!(
        alerts.info().await?.state.messages == 1,
        "the alert stream changed"
    );
    mtask.abort();
    Ok(())
}

/// TLS: with `ca_file` the client requires TLS and verifies the server against that CA; a
/// client that does not trust it is refused before any credential is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_configured_ca() -> Result<()> {
    brainbox_alerts::testkit::require_nats_server();
    let dir = tempfile::tempdir()?;
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    std::fs::write(dir.path().join("pw"), "tls-pw\n")?;
    let port = free_port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "port: {port}\nhost: 127.0.0.1\njetstream {{ store_dir: {} }}\n\
             tls {{ cert_file: {}, key_file: {} }}\n\
             authorization {{ users = [ {{ user: operator, password: tls-pw }} ] }}\n",
            dir.path().join("js").display(),
            cert.display(),
            key.display()
        ),
    )?;
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    ensure!(
        brainbox_alerts::testkit::wait_listening(port, Duration::from_secs(10)),
        "nats-server (TLS) did not start"
    );
    let url = format!("tls://127.0.0.1:{port}");
    let auth = NatsAuth {
        user: "operator".into(),
        password_file: dir.path().join("pw"),
        ca_file: cert.clone(),
        ..Default::default()
    };
    let trusted = ControlPlane::connect_with(&url, &auth, Duration::from_secs(5)).await;
    let untrusted = ControlPlane::connect_with(
        &url,
        &NatsAuth {
            ca_file: PathBuf::new(),
            ..auth.clone()
        },
        Duration::from_secs(5),
    )
    .await;
    let result = async {
        let cp = trusted.context("connect with the CA")?;
        cp.checkin(&checkin("operator"))
            .await
            .context("checkin over TLS")?;
        ensure!(untrusted.is_err(), "a client without the CA was let in");
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

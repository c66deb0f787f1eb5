//! Alert path against a real `nats-server -js`: outage, crash while spooling, crash while
//! replaying, full spool. Each test runs its own server on a free loopback port.

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer::pull};
use brainbox_alerts::{
    publisher::{PublisherConfig, DEFAULT_STREAM},
    testkit::{free_port, NatsServer},
    Alert, AlertMetrics, Delivery, PublishError, Publisher, SpoolConfig,
};
use futures_util::StreamExt;
use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn alert(run: &str, i: u64) -> Alert {
    brainbox_alerts::testkit::load_alert("node-a", run, i)
}

fn index_of(a: &Alert) -> u64 {
    a.output
        .strip_prefix("load #")
        .and_then(|s| s.parse().ok())
        .expect("test alert output")
}

fn config(url: &str, spool: &std::path::Path) -> PublisherConfig {
    let mut c = PublisherConfig::new(url, spool);
    c.ack_timeout = Duration::from_millis(500);
    c.initial_connect_wait = Duration::from_millis(500);
    c
}

/// Reads the whole stream with a fresh consumer; waits until `want` messages arrived or the
/// timeout passes, then checks that nothing more is there.
async fn read_stream(url: &str, want: usize) -> Result<Vec<(u64, Alert)>> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(DEFAULT_STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            let seq = m
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence;
            let a: Alert = serde_json::from_slice(&m.payload).context("alert JSON")?;
            let hdr = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned());
            ensure!(
                hdr.as_deref() == Some(a.id.as_str()),
                "message id header must be the alert id: {:?}",
                m.headers
            );
            out.push((seq, a));
        }
    }
    let mut stream = js.get_stream(DEFAULT_STREAM).await?;
    let stored = stream.info().await?.state.messages;
    ensure!(
        stored as usize == out.len(),
        "stream stores {stored} messages, consumer read {}",
        out.len()
    );
    Ok(out)
}

/// Checks that `got` is exactly alerts `first..first+n` of `run`, in order, each once.
fn check_exact(got: &[Alert], run: &str, first: u64, n: u64) -> Result<()> {
    let ids: HashSet<&str> = got.iter().map(|a| a.id.as_str()).collect();
    ensure!(ids.len() == got.len(), "duplicate alert ids delivered");
    ensure!(
        got.len() as u64 == n,
        "expected {n} alerts, got {}",
        got.len()
    );
    for (k, a) in got.iter().enumerate() {
        let want = alert(run, first + k as u64);
        ensure!(
            a.id == want.id,
            "position {k}: expected alert #{} got #{}",
            first + k as u64,
            index_of(a)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_spools_1000_alerts_and_replays_them_in_order_exactly_once() -> Result<()> {
    let mut nats = NatsServer::start();
    let spool = tempfile::tempdir()?;
    let metrics = AlertMetrics::default();
    let (p, task) = Publisher::start(config(&nats.url(), spool.path()), metrics.clone()).await?;

    // Before the outage: straight to JetStream.
    for i in 0..10 {
        let d = p.publish(alert("o", i)).await?;
        ensure!(matches!(d, Delivery::Published { .. }), "alert {i}: {d:?}");
    }
    nats.stop();

    // During the outage: 1,000 alerts, every one durably spooled.
    let mut receipts = Vec::new();
    for i in 10..1010 {
        receipts.push(p.submit(alert("o", i)).await?);
    }
    for (k, r) in receipts.into_iter().enumerate() {
        let d = r.wait().await?;
        ensure!(
            matches!(d, Delivery::Spooled { .. }),
            "alert {}: {d:?}",
            k + 10
        );
    }
    // The state watch is published after the receipts resolve (it lags by one group commit).
    let mut state = p.state();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while state.borrow().spool_records != 1000 {
            if state.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    let st = p.state().borrow().clone();
    ensure!(
        waited.is_ok() && st.spool_records == 1000,
        "spool holds {}",
        st.spool_records
    );
    ensure!(
        st.breaker != brainbox_alerts::BreakerState::Closed,
        "breaker must be open: {st:?}"
    );
    ensure!(!st.alert_path_lost(), "spool has room: not lost");

    // A new alert raised while NATS is back but before replay finished must queue behind.
    nats.restart();
    let late = p.publish(alert("o", 1010)).await?;
    ensure!(
        p.flush(Duration::from_secs(30)).await,
        "spool did not drain"
    );
    ensure!(
        matches!(late, Delivery::Spooled { .. } | Delivery::Published { .. }),
        "{late:?}"
    );

    let got: Vec<Alert> = read_stream(&nats.url(), 1011)
        .await?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    check_exact(&got, "o", 0, 1011)?;
    ensure!(metrics.published.get() >= 10);
    ensure!(metrics.spooled.get() >= 1000);
    ensure!(metrics.replayed.get() >= 1000);
    ensure!(metrics.spool_bytes.get() == 0);
    drop(p);
    task.join().await;
    Ok(())
}

fn load_bin() -> &'static str {
    env!("CARGO_BIN_EXE_brainbox-alert-load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_spool_loses_nothing_durable_and_duplicates_nothing() -> Result<()> {
    // NATS is down (nothing listens on the port yet) while the child spools.
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spool = tempfile::tempdir()?;
    let mut child = Command::new(load_bin())
        .args(["--nats", &url, "--spool"])
        .arg(spool.path())
        .args([
            "--node",
            "node-a",
            "--run",
            "k",
            "--count",
            "1000",
            "--sequential",
            "--print",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning brainbox-alert-load")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut durable = 0u64;
    while durable < 300 {
        let l = lines.next().context("child ended early")??;
        ensure!(
            l.starts_with(&format!("{durable} spooled ")),
            "unexpected line {l}"
        );
        durable += 1;
    }
    // SIGKILL: no destructor, no flush, mid-stream.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let _ = child.wait();

    let nats = NatsServer::start_on(port);
    let (p, task) = Publisher::start(config(&url, spool.path()), AlertMetrics::default()).await?;
    ensure!(
        p.flush(Duration::from_secs(30)).await,
        "spool did not drain"
    );
    let got: Vec<Alert> = read_stream(&nats.url(), durable as usize)
        .await?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    // Every alert the child was told is durable arrives; alerts spooled after the last printed
    // line may arrive too (they were fsynced); all in order, each once.
    ensure!(
        got.len() as u64 >= durable,
        "lost durable alerts: {} < {durable}",
        got.len()
    );
    ensure!(got.len() <= 1000);
    check_exact(&got, "k", 0, got.len() as u64)?;
    drop(p);
    task.join().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_replay_is_deduplicated_by_message_id() -> Result<()> {
    const N: u64 = 20_000;
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spool = tempfile::tempdir()?;
    // Spool N alerts with NATS down; the child exits normally.
    let st = Command::new(load_bin())
        .args(["--nats", &url, "--spool"])
        .arg(spool.path())
        .args(["--node", "node-a", "--run", "r", "--count", &N.to_string()])
        .args(["--ack-timeout-ms", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(st.success(), "spooling child failed");

    let nats = NatsServer::start_on(port);
    // A second child replays; kill it once part of the spool is in the stream.
    let mut child = Command::new(load_bin())
        .args(["--nats", &url, "--spool"])
        .arg(spool.path())
        .args(["--count", "0", "--flush-secs", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure!(Instant::now() < deadline, "replay did not start");
        ensure!(
            child.try_wait()?.is_none(),
            "replay child finished before it could be killed"
        );
        if let Ok(mut s) = js.get_stream(DEFAULT_STREAM).await {
            if s.info().await?.state.messages >= N / 10 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let _ = child.wait();

    let (p, task) =
        Publisher::start(config(&nats.url(), spool.path()), AlertMetrics::default()).await?;
    ensure!(
        p.flush(Duration::from_secs(60)).await,
        "spool did not drain"
    );
    let got: Vec<(u64, Alert)> = read_stream(&nats.url(), N as usize).await?;
    let alerts: Vec<Alert> = got.into_iter().map(|(_, a)| a).collect();
    check_exact(&alerts, "r", 0, N)?;
    drop(p);
    task.join().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_refuses_loudly_and_reports_the_alert_path_lost() -> Result<()> {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let spool = tempfile::tempdir()?;
    let mut cfg = config(&url, spool.path());
    cfg.spool = SpoolConfig {
        dir: spool.path().to_owned(),
        max_bytes: 4096,
        segment_bytes: 1024,
    };
    let metrics = AlertMetrics::default();
    let (p, task) = Publisher::start(cfg, metrics.clone()).await?;
    let mut spooled = 0;
    let mut refused = None;
    for i in 0..100 {
        match p.publish(alert("f", i)).await {
            Ok(Delivery::Spooled { .. }) => spooled += 1,
            Ok(d) => anyhow::bail!("unexpected {d:?}"),
            Err(PublishError::SpoolFull(a)) => {
                refused = Some(*a);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let refused = refused.context("spool never filled")?;
    ensure!(
        index_of(&refused) == spooled,
        "the refused alert is handed back"
    );
    ensure!(spooled > 3);
    let st = p.state().borrow().clone();
    ensure!(st.spool_full && st.alert_path_lost(), "{st:?}");
    ensure!(metrics.spool_full.get() == 1);
    ensure!(metrics.spool_full_refusals.get() == 1);
    drop(p);
    task.join().await;
    Ok(())
}

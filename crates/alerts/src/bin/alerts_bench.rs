//! Alert-path benchmark against a private `nats-server -js` (run by `bench/alerts/run.sh`).
//!
//! Measures, in one run on one server:
//! - baselines with the bare async-nats client: one publish in flight (the same protocol our
//!   publisher uses for strict ordering) and fully pipelined (the client's ceiling, no ordering
//!   guarantee across reconnects);
//! - our publisher with NATS up (direct JetStream path);
//! - our publisher with NATS down (every alert fsynced into the spool, group-committed);
//! - replay of that spool when NATS returns.
//!
//! Writes a JSON report with rates and ratios to the baselines.

use anyhow::Context;
use async_nats::{header::HeaderMap, jetstream};
use brainbox_alerts::{
    publisher::{stream_config, DEFAULT_PREFIX, DEFAULT_STREAM},
    testkit::{load_alert, NatsServer},
    AlertMetrics, Delivery, Publisher, PublisherConfig,
};
use bytes::Bytes;
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Alerts per measurement.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// Rounds (each measures everything once; medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Acked replayed alerts between two fsyncs of the spool's progress.
    #[arg(long)]
    commit_every: Option<u64>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench/results/alerts.json")]
    out: std::path::PathBuf,
}

fn rate(n: u64, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}

async fn raw(url: &str, n: u64, pipelined: bool, run: &str) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream_config(
        DEFAULT_STREAM,
        DEFAULT_PREFIX,
        Duration::from_secs(3600),
        -1,
    ))
    .await?;
    let alerts: Vec<_> = (0..n).map(|i| load_alert("bench-raw", run, i)).collect();
    let start = Instant::now();
    // Pipelined = up to WINDOW acks outstanding (the client's ack semaphore would otherwise
    // block with every future unpolled).
    const WINDOW: usize = 256;
    let mut pending = std::collections::VecDeque::new();
    for a in &alerts {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", a.id.as_str());
        let body = Bytes::from(serde_json::to_vec(a)?);
        let fut = js
            .publish_with_headers(a.subject(DEFAULT_PREFIX), h, body)
            .await?;
        if pipelined {
            pending.push_back(fut);
            if pending.len() >= WINDOW {
                if let Some(f) = pending.pop_front() {
                    f.await?;
                }
            }
        } else {
            fut.await?;
        }
    }
    for f in pending {
        f.await?;
    }
    Ok(rate(n, start.elapsed()))
}

async fn ours(p: &Publisher, n: u64, run: &str, want_spooled: bool) -> anyhow::Result<f64> {
    let alerts: Vec<_> = (0..n).map(|i| load_alert("bench-ours", run, i)).collect();
    let start = Instant::now();
    let mut receipts = Vec::with_capacity(alerts.len());
    for a in alerts {
        receipts.push(p.submit(a).await?);
    }
    for r in receipts {
        let d = r.wait().await?;
        let spooled = matches!(d, Delivery::Spooled { .. });
        anyhow::ensure!(spooled == want_spooled, "unexpected delivery {d:?}");
    }
    Ok(rate(n, start.elapsed()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let n = a.count;
    let mut nats = NatsServer::start();
    let url = nats.url();
    let spool = tempfile::tempdir()?;

    let mut cfg = PublisherConfig::new(&url, spool.path());
    cfg.ack_timeout = Duration::from_millis(500);
    cfg.spool.max_bytes = 256 << 20;
    if let Some(c) = a.commit_every {
        cfg.commit_every = c;
    }
    let commit_every = cfg.commit_every;
    let metrics = AlertMetrics::default();
    let (p, task) = Publisher::start(cfg, metrics.clone()).await?;

    // Rounds interleave every measurement, so a burst of load from other processes on a shared
    // machine hits all of them alike; medians are reported.
    let (mut raw_seq, mut raw_pipe, mut direct, mut spooled, mut replay, mut recovery) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let admin = jetstream::new(async_nats::connect(&url).await?);
    for round in 0..a.rounds {
        // Each round starts from an empty stream, so later rounds do not pay for a larger
        // store and de-duplication table (rebuilt by the server after each restart).
        if let Ok(s) = admin.get_stream(DEFAULT_STREAM).await {
            s.purge().await?;
        }
        raw_seq.push(raw(&url, n, false, &format!("raw-seq-{round}")).await?);
        raw_pipe.push(raw(&url, n, true, &format!("raw-pipe-{round}")).await?);
        direct.push(ours(&p, n, &format!("direct-{round}"), false).await?);

        nats.stop();
        // The first alert after the outage waits for the ack timeout before the breaker
        // opens; measure the spool in steady state, as during an outage.
        p.publish(load_alert("bench-ours", &format!("warmup-{round}"), 0))
            .await?;
        spooled.push(ours(&p, n, &format!("spool-{round}"), true).await?);

        let replayed_before = metrics.replayed.get();
        nats.restart();
        let restarted = Instant::now();
        // Recovery latency (reconnect + breaker probe) and replay throughput are reported apart.
        while metrics.replayed.get() == replayed_before {
            anyhow::ensure!(
                restarted.elapsed() < Duration::from_secs(60),
                "replay did not start"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = Instant::now();
        recovery.push((first - restarted).as_millis() as f64);
        anyhow::ensure!(
            p.flush(Duration::from_secs(300)).await,
            "spool did not drain"
        );
        replay.push(rate(n + 1, first.elapsed()));
    }
    drop(p);
    task.join().await;
    let (raw_seq, raw_pipe, direct, spooled, replay, recovery_ms) = (
        median(raw_seq),
        median(raw_pipe),
        median(direct),
        median(spooled),
        median(replay),
        median(recovery),
    );
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let report = serde_json::json!({
        "bench": "alerts",
        "alerts_per_run": n,
        "rounds": a.rounds,
        "statistic": "median of rounds",
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": { "cpus": std::thread::available_parallelism().map(|c| c.get()).unwrap_or(0) },
        "nats_server": "nats-server -js, loopback, file store",
        "rates_per_s": {
            "baseline_raw_jetstream_one_in_flight": raw_seq,
            "baseline_raw_jetstream_pipelined_256": raw_pipe,
            "publisher_direct_jetstream": direct,
            "publisher_spool_nats_down": spooled,
            "publisher_replay_after_restart": replay,
        },
        "replay_starts_after_restart_ms": recovery_ms,
        "replay_commit_every": commit_every,
        "ratios": {
            "direct_vs_raw_one_in_flight": r2(direct / raw_seq),
            "direct_vs_raw_pipelined": r2(direct / raw_pipe),
            "spool_vs_raw_one_in_flight": r2(spooled / raw_seq),
            "replay_vs_raw_one_in_flight": r2(replay / raw_seq),
        },
        "goal_per_s": 10000,
        "metrics": {
            "published": metrics.published.get(),
            "spooled": metrics.spooled.get(),
            "replayed": metrics.replayed.get(),
        },
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).context("creating the results folder")?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

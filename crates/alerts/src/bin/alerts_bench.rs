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
    let mut pending = Vec::new();
    for a in &alerts {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", a.id.as_str());
        let body = Bytes::from(serde_json::to_vec(a)?);
        let fut = js
            .publish_with_headers(a.subject(DEFAULT_PREFIX), h, body)
            .await?;
        if pipelined {
            pending.push(fut);
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let n = a.count;
    let mut nats = NatsServer::start();
    let url = nats.url();
    let spool = tempfile::tempdir()?;

    let raw_seq = raw(&url, n, false, "raw-seq").await?;
    let raw_pipe = raw(&url, n, true, "raw-pipe").await?;

    let mut cfg = PublisherConfig::new(&url, spool.path());
    cfg.ack_timeout = Duration::from_millis(500);
    cfg.spool.max_bytes = 256 << 20;
    let metrics = AlertMetrics::default();
    let (p, task) = Publisher::start(cfg, metrics.clone()).await?;
    let direct = ours(&p, n, "direct", false).await?;

    nats.stop();
    // The first alert after the outage waits for the ack timeout before the breaker opens;
    // measure the spool in steady state, as during an outage.
    p.publish(load_alert("bench-ours", "warmup", 0)).await?;
    let spooled = ours(&p, n, "spool", true).await?;

    nats.restart();
    let start = Instant::now();
    anyhow::ensure!(
        p.flush(Duration::from_secs(300)).await,
        "spool did not drain"
    );
    let replay = rate(n + 1, start.elapsed());
    drop(p);
    task.join().await;

    let report = serde_json::json!({
        "bench": "alerts",
        "alerts_per_run": n,
        "machine": { "cpus": std::thread::available_parallelism().map(|c| c.get()).unwrap_or(0) },
        "nats_server": "nats-server -js, loopback, file store",
        "rates_per_s": {
            "baseline_raw_jetstream_one_in_flight": raw_seq,
            "baseline_raw_jetstream_pipelined": raw_pipe,
            "publisher_direct_jetstream": direct,
            "publisher_spool_nats_down": spooled,
            "publisher_replay_after_restart": replay,
        },
        "ratios": {
            "direct_vs_raw_one_in_flight": (direct / raw_seq * 100.0).round() / 100.0,
            "direct_vs_raw_pipelined": (direct / raw_pipe * 100.0).round() / 100.0,
            "spool_vs_raw_one_in_flight": (spooled / raw_seq * 100.0).round() / 100.0,
            "replay_vs_raw_one_in_flight": (replay / raw_seq * 100.0).round() / 100.0,
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

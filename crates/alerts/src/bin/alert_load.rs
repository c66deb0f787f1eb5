//! Raises synthetic alerts through a [`Publisher`]: the child process of the crash tests and a
//! quick load tool. Prints one line per alert once it is durable (acked or fsynced in the
//! spool): `<index> <published|spooled> <id>`.

use anyhow::Context;
use brainbox_alerts::{Alert, AlertMetrics, Delivery, Publisher, PublisherConfig};
use clap::Parser;
use std::{io::Write, time::Duration};

#[derive(Parser)]
struct Args {
    /// NATS URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Spool directory.
    #[arg(long)]
    spool: std::path::PathBuf,
    /// Node name.
    #[arg(long, default_value = "load-node")]
    node: String,
    /// Alerts to raise.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Index of the first alert (alert i says `load #i`).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Distinguishes runs, so ids differ between runs with the same indexes.
    #[arg(long, default_value = "run")]
    run: String,
    /// Wait for each alert before raising the next (so every printed alert is durable and
    /// nothing later is in flight).
    #[arg(long)]
    sequential: bool,
    /// After raising, wait this long for the spool to drain.
    #[arg(long, default_value_t = 0)]
    flush_secs: u64,
    /// JetStream ack timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    ack_timeout_ms: u64,
    /// Print a line per durable alert.
    #[arg(long)]
    print: bool,
}

fn alert(node: &str, run: &str, i: u64) -> Alert {
    brainbox_alerts::testkit::load_alert(node, run, i)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = PublisherConfig::new(&a.nats, &a.spool);
    cfg.ack_timeout = Duration::from_millis(a.ack_timeout_ms);
    let (publisher, task) = Publisher::start(cfg, AlertMetrics::default())
        .await
        .context("starting the publisher")?;
    let out = std::io::stdout();
    let report = |i: u64, d: &Delivery, id: &str| {
        if a.print {
            let kind = match d {
                Delivery::Published { .. } => "published",
                Delivery::Spooled { .. } => "spooled",
            };
            let mut o = out.lock();
            let _ = writeln!(o, "{i} {kind} {id}");
            let _ = o.flush();
        }
    };
    let start = std::time::Instant::now();
    if a.sequential {
        for i in a.first..a.first + a.count {
            let al = alert(&a.node, &a.run, i);
            let id = al.id.clone();
            let d = publisher.publish(al).await?;
            report(i, &d, &id);
        }
    } else {
        let mut receipts = Vec::new();
        for i in a.first..a.first + a.count {
            let al = alert(&a.node, &a.run, i);
            let id = al.id.clone();
            receipts.push((i, id, publisher.submit(al).await?));
        }
        for (i, id, r) in receipts {
            let d = r.wait().await?;
            report(i, &d, &id);
        }
    }
    let raised = start.elapsed();
    let drained = if a.flush_secs > 0 {
        publisher.flush(Duration::from_secs(a.flush_secs)).await
    } else {
        true
    };
    eprintln!(
        "raised {} alerts in {:.3}s ({:.0}/s); spool drained: {drained}",
        a.count,
        raised.as_secs_f64(),
        a.count as f64 / raised.as_secs_f64().max(1e-9)
    );
    drop(publisher);
    task.join().await;
    if !drained {
        anyhow::bail!("the spool did not drain within {}s", a.flush_secs);
    }
    Ok(())
}

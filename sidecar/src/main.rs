//! brainbox-sidecar: identity, egress and redaction for one brainbox pod.

use brainbox_sidecar::config::SidecarConfig;
use clap::{Parser, Subcommand};
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use std::{path::PathBuf, sync::Arc};

/// brainbox-guard sidecar: the pod's SPIFFE identity, its only way out, and its log redactor.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). `BRAINBOX_*` environment variables override it.
    #[arg(long, short, env = "BRAINBOX_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the pod (the default).
    Run,
}

fn main() {
    let cli = Cli::parse();
    let cfg: SidecarConfig = match brainbox_common::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brainbox-sidecar: {e}");
            std::process::exit(brainbox_common::EXIT_CONFIG);
        }
    };
    brainbox_common::telemetry::init(&cfg.log);
    // Before the runtime starts any thread: capabilities are per thread.
    if let Err(e) = brainbox_sidecar::sandbox::drop_privileges(&cfg.sandbox) {
        eprintln!("brainbox-sidecar: {e}");
        std::process::exit(1);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brainbox-sidecar: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            if let Err(e) = rt.block_on(run(cfg)) {
                eprintln!("brainbox-sidecar: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

async fn run(cfg: SidecarConfig) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(1);
    registry.sub_registry_with_prefix("brainbox").register(
        "sidecar_up",
        "1 while the sidecar serves",
        up,
    );
    if let Some(addr) = cfg.metrics.addr("metrics")? {
        let (bound, _task) = brainbox_common::metrics::serve(
            addr,
            Arc::new(registry),
            Arc::new(|| (true, "ok".into())),
        )
        .await?;
        tracing::info!(listen = %bound, pod = %cfg.pod_name, "sidecar serving");
    }
    // Every listener is bound above this line: from here on the sidecar runs under its own
    // seccomp filter.
    brainbox_sidecar::sandbox::install_filter(&cfg.sandbox)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("sidecar stopping");
    Ok(())
}

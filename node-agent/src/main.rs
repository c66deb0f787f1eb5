//! brainbox-node-agent: the privileged per-node half of brainbox-guard.

use brainbox_node_agent::{app, config::AgentConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// brainbox-guard node agent: eBPF sensor, Falco-style rules, network zones and incident response.
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
    /// Run the agent (the default).
    Run,
    /// Print the effective configuration as JSON and exit.
    Config,
}

fn main() {
    let cli = Cli::parse();
    let cfg: AgentConfig = match brainbox_common::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brainbox-node-agent: {e}");
            std::process::exit(brainbox_common::EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Config => {
            println!("{cfg:#?}");
        }
        Command::Run => {
            brainbox_common::telemetry::init(&cfg.log);
            // Before the runtime starts its threads: capabilities are per thread.
            match brainbox_node_agent::safety::privileges::apply(&cfg.privileges) {
                Ok(a) => tracing::info!(
                    mode = ?a.mode,
                    bounding_dropped = a.bounding_dropped,
                    effective = ?a.effective,
                    "privileges narrowed"
                ),
                Err(e) => {
                    eprintln!("brainbox-node-agent: privileges: {e}");
                    std::process::exit(1);
                }
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("brainbox-node-agent: cannot start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = rt.block_on(app::run(cfg)) {
                tracing::error!(error = %e, "fatal");
                eprintln!("brainbox-node-agent: {e}");
                std::process::exit(e.exit_code());
            }
        }
    }
}

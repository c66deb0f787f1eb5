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
    /// Falco rule tools (need no agent configuration).
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rule files in order (upstream first, then overrides) and report rules, macros,
    /// lists, evaluable rules and warnings; exit 1 with file:line on an invalid file.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Rule files, loaded in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Convert a recorded events file (`events.output`, JSON lines; `-` for stdin) into the
    /// rule engine's event form (one JSON object per line, Falco field names as keys), e.g. to
    /// replay a real stream through the rules benchmark. Alerts and other lines are skipped.
    ConvertEvents {
        /// The recording.
        file: PathBuf,
    },
}

/// `rules convert-events`: returns the exit code.
fn convert_events(file: &std::path::Path) -> i32 {
    use std::io::{BufRead, Write};
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("brainbox-node-agent: {}: {e}", file.display());
                return 1;
            }
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut num = 0u64;
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("brainbox-node-agent: {}: {e}", file.display());
                return 1;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match brainbox_node_agent::replay::engine_event(&line, num + 1) {
            Ok(Some(ev)) => {
                num += 1;
                if writeln!(out, "{}", ev.to_json()).is_err() {
                    return 1;
                }
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("brainbox-node-agent: {}:{}: {e}", file.display(), i + 1);
                return 1;
            }
        }
    }
    if out.flush().is_err() {
        return 1;
    }
    0
}

fn main() {
    let cli = Cli::parse();
    // Rule tools run before the agent configuration is loaded: they must work anywhere.
    if let Some(Command::Rules { command }) = &cli.command {
        let code = match command {
            RulesCommand::Check { json, files } => brainbox_rules::check::run(
                *json,
                files,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ),
            RulesCommand::ConvertEvents { file } => convert_events(file),
        };
        std::process::exit(code);
    }
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
        Command::Rules { .. } => unreachable!("handled before the configuration is loaded"),
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

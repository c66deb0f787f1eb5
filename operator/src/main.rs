//! brainboxctl: the operator's command line.

mod events;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod alerts_cmd;
mod evidence_cmd;
mod exit;

/// brainbox-guard operator CLI: profiles, alerts, evidence, audit, safe mode, sidecar injection.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every profile in a folder and list them.
    Profiles {
        /// The profiles folder.
        #[arg(default_value = "profiles")]
        dir: PathBuf,
    },
    /// Show node agent events (JSON lines) readably, from a file or `-` for stdin.
    Events {
        /// The events file the agent writes (`events.output`), or `-`.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Keep reading as the file grows.
        #[arg(long, short)]
        follow: bool,
    },
    /// Follow and acknowledge alerts (JetStream).
    #[command(subcommand)]
    Alerts(alerts_cmd::AlertsCmd),
    /// Sealed evidence bundles: list, show, verify, export.
    #[command(subcommand)]
    Evidence(evidence_cmd::EvidenceCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(evidence_cmd::AuditCmd),
    /// Put nodes into safe mode, lift it, or show its state.
    SafeMode(alerts_cmd::SafeModeArgs),
    /// The operator's heartbeat for the dead-man switch.
    Checkin(alerts_cmd::CheckinArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Profiles { dir } => match brainbox_profile::ProfileSet::load_dir(&dir) {
            Ok(set) => {
                if cli.json {
                    let names: Vec<&str> = set.names().collect();
                    println!("{}", serde_json::json!({ "profiles": names }));
                } else {
                    for name in set.names() {
                        let p = set.get(name).expect("listed");
                        println!(
                            "{name:<20} zone={:<10} {}",
                            format!("{:?}", p.zone).to_lowercase(),
                            p.description
                        );
                    }
                }
                0
            }
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                65
            }
        },
        Command::Events { file, follow } => {
            let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                match std::fs::File::open(&file) {
                    Ok(f) => Box::new(std::io::BufReader::new(f)),
                    Err(e) => {
                        eprintln!("brainboxctl: {}: {e}", file.display());
                        std::process::exit(66);
                    }
                }
            };
            match events::run(input, &mut std::io::stdout().lock(), cli.json, follow) {
                Ok(()) => 0,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(e) => {
                    eprintln!("brainboxctl: {e}");
                    74
                }
            }
        }
        Command::Alerts(c) => alerts_cmd::alerts(c, cli.json),
        Command::Evidence(c) => evidence_cmd::evidence(c, cli.json),
        Command::Audit(c) => evidence_cmd::audit(c, cli.json),
        Command::SafeMode(a) => alerts_cmd::safe_mode(a, cli.json),
        Command::Checkin(a) => alerts_cmd::checkin(a, cli.json),
    };
    std::process::exit(code);
}

//! brainboxctl: the operator's command line.

mod events;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod alerts_cmd;
mod evidence_cmd;
mod exit;
mod isolation_cmd;

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
    /// SPIFFE identities: revoke one on every node (pushed over NATS JetStream).
    #[command(subcommand)]
    Identity(alerts_cmd::IdentityCmd),
    /// Containers the `isolate` response cut to loopback: list them, or lift one (its pod).
    #[command(subcommand)]
    Isolation(isolation_cmd::IsolationCmd),
    /// Inject the brainbox sidecar and hardening into Kubernetes objects (YAML), like
    /// `istioctl kube-inject`.
    Inject(InjectArgs),
    /// Serve sidecar injection as a Kubernetes mutating admission webhook (`POST /mutate`,
    /// TLS).
    Webhook(WebhookArgs),
}

/// `brainboxctl webhook`.
#[derive(clap::Args)]
struct WebhookArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: std::net::SocketAddr,
    /// Serving certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    inject: InjectOptions,
}

/// `brainboxctl inject`.
#[derive(clap::Args)]
struct InjectArgs {
    /// Input YAML (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob; other
    /// kinds pass through), or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Profile label for pods that have none.
    #[arg(long)]
    profile: Option<String>,
    #[command(flatten)]
    inject: InjectOptions,
}

/// What `inject` and `webhook` put into a pod.
#[derive(clap::Args)]
struct InjectOptions {
    /// The sidecar image (pin it by digest from deploy/images.lock).
    #[arg(long, env = "BRAINBOX_SIDECAR_IMAGE")]
    sidecar_image: Option<String>,
    /// Send the pod's redacted logs to this NATS server (JetStream stream `BRAINBOX_LOGS`,
    /// subject `brainbox.logs.<pod>`) instead of the sidecar's standard output.
    #[arg(long, env = "BRAINBOX_LOGS_NATS_URL")]
    logs_nats_url: Option<String>,
    /// With `--logs-nats-url`: the Secret, in the pod's namespace, with the NATS `sidecar`
    /// user's password (key `password`) and the CA of the server's certificate (key `ca.crt`).
    #[arg(
        long,
        env = "BRAINBOX_LOGS_NATS_SECRET",
        default_value = "brainbox-nats-sidecar"
    )]
    logs_nats_secret: String,
    /// The Secret, in the pod's namespace, whose key `key` is the redaction fingerprint key:
    /// pods given the same key fingerprint the same secret alike (default: a random key per
    /// sidecar).
    #[arg(long, env = "BRAINBOX_REDACT_KEY_SECRET")]
    redact_key_secret: Option<String>,
    /// Run each workload container's `command` under `brainbox-sidecar logwrap`: what the agent
    /// prints goes through the sidecar's redaction instead of to the node unredacted. A
    /// container without an explicit `command` is refused.
    #[arg(long, env = "BRAINBOX_WRAP_STDOUT")]
    wrap_stdout: bool,
}

impl InjectOptions {
    fn config(self) -> brainboxctl::inject::InjectConfig {
        let mut cfg = brainboxctl::inject::InjectConfig::default();
        if let Some(i) = self.sidecar_image {
            cfg.sidecar_image = i;
        }
        cfg.logs_nats = self.logs_nats_url.map(|url| brainboxctl::inject::LogsNats {
            url,
            secret: self.logs_nats_secret,
        });
        cfg.redact_key_secret = self.redact_key_secret;
        cfg.wrap_stdout = self.wrap_stdout;
        cfg
    }
}

fn main() {
    // `brainboxctl events | head` should stop quietly when `head` has read enough, like any
    // Unix tool, instead of panicking on the broken pipe (Rust ignores SIGPIPE by default).
    sigpipe::reset();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Inject(args) => run_inject(args),
        Command::Webhook(args) => run_webhook(args),
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
        Command::Identity(c) => alerts_cmd::identity(c, cli.json),
        Command::Isolation(c) => isolation_cmd::isolation(c, cli.json),
    };
    std::process::exit(code);
}

fn run_inject(args: InjectArgs) -> i32 {
    use std::io::Read;
    let mut input = String::new();
    let read = if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut input).map(|_| ())
    } else {
        std::fs::read_to_string(&args.file).map(|s| input = s)
    };
    if let Err(e) = read {
        eprintln!("brainboxctl: {}: {e}", args.file.display());
        return 66;
    }
    let mut cfg = args.inject.config();
    if let Some(p) = args.profile {
        cfg.default_profile = p;
    }
    match brainboxctl::inject::inject_yaml(&input, &cfg) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("brainboxctl inject: {e}");
            65
        }
    }
}

fn run_webhook(args: WebhookArgs) -> i32 {
    brainbox_common::telemetry::init(&Default::default());
    let tls = match brainboxctl::webhook::tls_config(&args.cert, &args.key) {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => {
            eprintln!("brainboxctl webhook: {e}");
            return 64;
        }
    };
    let cfg = args.inject.config();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brainboxctl webhook: {e}");
            return 70;
        }
    };
    let result = rt.block_on(webhook_main(args.listen, tls, cfg));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("brainboxctl webhook: {e}");
            69
        }
    }
}

async fn webhook_main(
    listen: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ServerConfig>,
    cfg: brainboxctl::inject::InjectConfig,
) -> Result<(), brainboxctl::webhook::WebhookError> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "webhook serving /mutate over TLS");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = brainboxctl::webhook::serve(listener, tls, cfg) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}

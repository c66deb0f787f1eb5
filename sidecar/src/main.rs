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
    /// Redact log lines: stdin to stdout (one line out per line in), or a socket/tailed files.
    Redact(brainbox_sidecar::redact::RedactArgs),
    /// Fetch this process's SVID once from the Workload API and print it as JSON (exit 1 and
    /// the server's error when refused).
    SvidFetch {
        /// Also fetch a JWT-SVID for this audience.
        #[arg(long)]
        audience: Option<String>,
        /// Ask for this SPIFFE ID (the server refuses another workload's).
        #[arg(long)]
        spiffe_id: Option<String>,
    },
    /// Run a command with its stdout and stderr going to the pod's log socket (through the
    /// sidecar's redaction) instead of the container log; exits with its status. Refuses to
    /// start the command without the socket.
    Logwrap {
        /// The log socket.
        #[arg(long, env = "BRAINBOX_LOG_SOCKET")]
        socket: PathBuf,
        /// Longest line sent whole, bytes (longer ones are sent in pieces).
        #[arg(long, default_value_t = 1 << 20)]
        max_line_bytes: usize,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Copy this binary to DIR/brainbox-sidecar (mode 0755), for `logwrap` in other
    /// containers of the pod (the injector's init container does this).
    InstallLogwrap {
        /// Target folder.
        dir: PathBuf,
    },
}

/// `install-logwrap`: this very binary, copied where the pod's other containers can run it.
fn install_logwrap(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let to = dir.join("brainbox-sidecar");
    let tmp = dir.join(".brainbox-sidecar.tmp");
    std::fs::copy("/proc/self/exe", &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &to)?;
    Ok(to)
}

fn main() {
    let cli = Cli::parse();
    // These two run in or for the agent's containers: no configuration, no sandbox (the
    // sidecar's seccomp filter forbids starting programs).
    match &cli.command {
        Some(Command::Logwrap {
            socket,
            max_line_bytes,
            command,
        }) => std::process::exit(brainbox_sidecar::logwrap::run(
            socket,
            command,
            *max_line_bytes,
        )),
        Some(Command::InstallLogwrap { dir }) => match install_logwrap(dir) {
            Ok(to) => {
                println!("installed {}", to.display());
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("brainbox-sidecar install-logwrap {}: {e}", dir.display());
                std::process::exit(1)
            }
        },
        _ => {}
    }
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
    // One multi-threaded runtime, a worker per core: the egress proxy is on the hot path.
    let rt = match tokio::runtime::Builder::new_multi_thread()
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
        Command::Logwrap { .. } | Command::InstallLogwrap { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
        Command::SvidFetch {
            audience,
            spiffe_id,
        } => {
            let Some(endpoint) = cfg.svid.endpoint() else {
                eprintln!("brainbox-sidecar: set SPIFFE_ENDPOINT_SOCKET or svid.endpoint");
                std::process::exit(brainbox_common::EXIT_CONFIG);
            };
            match rt.block_on(brainbox_sidecar::svid::fetch_once(
                &endpoint,
                audience.as_deref(),
                spiffe_id.as_deref(),
            )) {
                Ok(v) => println!("{v}"),
                Err(e) => {
                    eprintln!("brainbox-sidecar: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Redact(args) => {
            if let Err(e) =
                rt.block_on(brainbox_sidecar::redact::run(args.with_config(&cfg.redact)))
            {
                eprintln!("brainbox-sidecar redact: {e}");
                std::process::exit(match e {
                    brainbox_sidecar::redact::RedactError::Engine(_) => {
                        brainbox_common::EXIT_CONFIG
                    }
                    _ => 1,
                });
            }
        }
        Command::Run => {
            if let Err(e) = rt.block_on(run(cfg)) {
                eprintln!("brainbox-sidecar: {e:#}");
                // A rules file or key file the pipeline cannot use is a configuration error.
                let config = matches!(
                    e.downcast_ref::<brainbox_sidecar::redact::RedactError>(),
                    Some(brainbox_sidecar::redact::RedactError::Engine(_))
                );
                std::process::exit(if config {
                    brainbox_common::EXIT_CONFIG
                } else {
                    1
                });
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
    let identity = cfg
        .svid
        .is_enabled()
        .then(|| brainbox_sidecar::svid::Identity::new(cfg.svid.unhealthy_below));
    let health: Arc<dyn Fn() -> (bool, String) + Send + Sync> = match &identity {
        Some(id) => {
            id.metrics.register(&mut registry);
            let id = id.clone();
            Arc::new(move || id.health())
        }
        None => Arc::new(|| (true, "ok".into())),
    };
    let mut svid_task = match &identity {
        Some(id) => tokio::spawn(brainbox_sidecar::svid::run(cfg.svid.clone(), id.clone())),
        None => tokio::spawn(std::future::pending()),
    };
    // One redaction engine for the log pipeline and the proxy's audit records, built only when
    // one of them runs (an identity-only sidecar needs none).
    let engine = if cfg.egress.enabled || cfg.redact.pipeline.is_some() {
        Some(Arc::new(brainbox_sidecar::redact::engine_from_config(
            &cfg.redact,
        )?))
    } else {
        None
    };
    let _egress = match &engine {
        Some(e) if cfg.egress.enabled => Some(
            brainbox_sidecar::egress::start_from_config(&cfg.egress, e.clone(), &mut registry)
                .await?,
        ),
        _ => None,
    };
    // The redaction pipeline binds its socket here, before the seccomp filter goes on.
    let mut redact = match engine {
        Some(e) => {
            brainbox_sidecar::redact::start_from_config(
                &cfg.redact,
                e,
                &cfg.pod_name,
                &mut registry,
            )
            .await?
        }
        None => None,
    };
    if let Some(addr) = cfg.metrics.addr("metrics")? {
        let (bound, _task) =
            brainbox_common::metrics::serve(addr, Arc::new(registry), health).await?;
        tracing::info!(listen = %bound, pod = %cfg.pod_name, "sidecar serving");
    }
    // Every listener is bound above this line: from here on the sidecar runs under its own
    // seccomp filter.
    brainbox_sidecar::sandbox::install_filter(&cfg.sandbox)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        e = async {
            match redact.as_mut() {
                Some(p) => p.failure().await,
                None => std::future::pending().await,
            }
        } => anyhow::bail!("redaction pipeline: {e}"),
        r = &mut svid_task => {
            match r {
                Ok(Err(e)) => anyhow::bail!("identity: {e}"),
                Ok(Ok(())) => anyhow::bail!("identity: rotation stopped"),
                Err(e) => anyhow::bail!("identity: {e}"),
            }
        }
    }
    tracing::info!("sidecar stopping");
    if let Some(p) = redact {
        // Write out (or publish) every line already read before exiting.
        p.shutdown().await?;
    }
    Ok(())
}

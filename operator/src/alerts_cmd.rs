//! `brainboxctl alerts tail|ack`, `checkin` and `safe-mode on|off|status`: the NATS side.

use crate::exit;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use brainbox_alerts::{
    control::{AlertAck, Checkin, ControlPlane, SafeModeCommand},
    publisher::{stream_config, DEFAULT_PREFIX, DEFAULT_STREAM},
    schema::subject_token,
    Alert, ContainerRef, Priority,
};
use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use serde_json::json;
use std::{
    io::Write,
    time::{Duration, Instant},
};

/// How to reach NATS.
#[derive(Args, Clone)]
pub struct NatsArg {
    /// NATS server URL.
    #[arg(
        long,
        env = "BRAINBOX_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats: String,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
    /// NATS user (with --nats-password-file).
    #[arg(long, env = "BRAINBOX_NATS_USER")]
    nats_user: Option<String>,
    /// File holding the NATS user's password.
    #[arg(long, env = "BRAINBOX_NATS_PASSWORD_FILE")]
    nats_password_file: Option<std::path::PathBuf>,
    /// File holding a NATS token (instead of a user and password).
    #[arg(long, env = "BRAINBOX_NATS_TOKEN_FILE")]
    nats_token_file: Option<std::path::PathBuf>,
    /// PEM CA of the NATS server's certificate (TLS becomes required).
    #[arg(long, env = "BRAINBOX_NATS_CA")]
    nats_ca: Option<std::path::PathBuf>,
}

impl NatsArg {
    /// The credentials the flags give; a combination that does not go together is a usage error.
    fn auth(&self) -> Result<brainbox_common::nats::NatsAuth, i32> {
        let auth = brainbox_common::nats::NatsAuth {
            user: self.nats_user.clone().unwrap_or_default(),
            password_file: self.nats_password_file.clone().unwrap_or_default(),
            token_file: self.nats_token_file.clone().unwrap_or_default(),
            ca_file: self.nats_ca.clone().unwrap_or_default(),
        };
        auth.validate_named(|field| format!("--nats-{}", field.replace('_', "-")))
            .map_err(|e| {
                eprintln!("brainboxctl: {e}");
                exit::USAGE
            })?;
        Ok(auth)
    }
}

/// Who is speaking (recorded in check-ins, commands and acknowledgements).
#[derive(Args, Clone)]
pub struct OperatorArg {
    /// Operator name (default: $USER).
    #[arg(long, env = "BRAINBOX_OPERATOR")]
    operator: Option<String>,
}

impl OperatorArg {
    pub(crate) fn name(&self) -> String {
        self.operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".to_owned())
    }
}

/// `alerts` subcommands.
#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Follow alerts with a durable JetStream consumer; each alert is acked after it is printed,
    /// so an interrupted tail resumes where it stopped.
    Tail {
        #[command(flatten)]
        nats: NatsArg,
        /// Show only alerts at least this severe (others are acked and skipped for this
        /// durable consumer).
        #[arg(long)]
        priority: Option<Priority>,
        /// Show only alerts from this node (a subject filter on the consumer).
        #[arg(long)]
        node: Option<String>,
        /// Durable consumer name; its position is kept by the server.
        #[arg(long, default_value = "brainboxctl")]
        durable: String,
        /// Stop after printing this many alerts.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds without a new alert (default: follow forever).
        #[arg(long)]
        idle_exit: Option<u64>,
        /// Stream name.
        #[arg(long, default_value = DEFAULT_STREAM)]
        stream: String,
    },
    /// Publish synthetic test alerts (rule `brainboxctl test alert`, tag `test`) to check the
    /// alert path end to end; they are acked by JetStream before this returns.
    Test {
        #[command(flatten)]
        nats: NatsArg,
        /// Node name to publish as.
        #[arg(long, default_value = "brainboxctl")]
        node: String,
        /// Priority of the test alerts.
        #[arg(long, default_value = "informational")]
        priority: Priority,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[command(flatten)]
        operator: OperatorArg,
    },
    /// Record that an operator has seen and handled an alert (kept in the BRAINBOX_ALERT_ACKS
    /// bucket). This is not the JetStream delivery ack, which `tail` sends itself.
    Ack {
        /// Alert id.
        id: String,
        /// A note for the record.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        nats: NatsArg,
        #[command(flatten)]
        operator: OperatorArg,
    },
}

/// `safe-mode` actions.
#[derive(Clone, Copy, ValueEnum)]
pub enum SafeModeAction {
    /// Put nodes into safe mode.
    On,
    /// Lift safe mode.
    Off,
    /// Show every node's reported state and the commands in force.
    Status,
}

/// `safe-mode` arguments.
#[derive(Args)]
pub struct SafeModeArgs {
    /// on, off or status.
    action: SafeModeAction,
    /// Only this node (default: all nodes).
    #[arg(long)]
    node: Option<String>,
    /// Why, for the record.
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    nats: NatsArg,
    #[command(flatten)]
    operator: OperatorArg,
}

/// `brainboxctl identity`.
#[derive(clap::Subcommand)]
pub enum IdentityCmd {
    /// Revoke a SPIFFE ID or an X.509-SVID serial on every node: no longer issued, open streams
    /// end, `ValidateJWTSVID` refuses it. Durable (JetStream); add it to the deny-list file to
    /// keep it past a purge of the stream.
    Revoke(RevokeArgs),
}

/// `identity revoke` arguments.
#[derive(Args)]
pub struct RevokeArgs {
    /// The SPIFFE ID to revoke.
    #[arg(long, required_unless_present = "serial")]
    spiffe_id: Option<String>,
    /// The certificate serial (hex, colons allowed) to revoke.
    #[arg(long)]
    serial: Option<String>,
    #[command(flatten)]
    nats: NatsArg,
    #[command(flatten)]
    operator: OperatorArg,
}

/// `brainboxctl identity ...`.
pub fn identity(cmd: IdentityCmd, json_out: bool) -> i32 {
    let IdentityCmd::Revoke(args) = cmd;
    // The same check every node applies to what it reads: refuse here what they would drop.
    if let Err(e) = brainbox_alerts::control::check_revocation(
        args.spiffe_id.as_deref(),
        args.serial.as_deref(),
    ) {
        eprintln!("brainboxctl: identity revoke: {e}");
        return exit::USAGE;
    }
    runtime().block_on(async move {
        let cp = match control(&args.nats).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let mut r = serde_json::Map::new();
        if let Some(id) = &args.spiffe_id {
            r.insert("spiffe_id".into(), id.clone().into());
        }
        if let Some(s) = &args.serial {
            r.insert("serial".into(), s.clone().into());
        }
        let r = serde_json::Value::Object(r);
        match cp.revoke(&r).await {
            Ok(seq) => {
                if json_out {
                    println!("{}", json!({"ok": true, "revocation": r, "sequence": seq, "by": args.operator.name()}));
                } else {
                    println!("revoked {r} (stream sequence {seq}) by {}", args.operator.name());
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                exit::UNAVAILABLE
            }
        }
    })
}

/// `checkin` arguments.
#[derive(Args)]
pub struct CheckinArgs {
    #[command(flatten)]
    nats: NatsArg,
    #[command(flatten)]
    operator: OperatorArg,
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) async fn control(n: &NatsArg) -> Result<ControlPlane, i32> {
    ControlPlane::connect_with(&n.nats, &n.auth()?, Duration::from_secs(n.connect_timeout))
        .await
        .map_err(|e| {
            eprintln!("brainboxctl: {e}");
            exit::UNAVAILABLE
        })
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Runs an `alerts` subcommand.
pub fn alerts(cmd: AlertsCmd, json_out: bool) -> i32 {
    runtime().block_on(async move {
        match cmd {
            AlertsCmd::Tail {
                nats,
                priority,
                node,
                durable,
                count,
                idle_exit,
                stream,
            } => tail(TailOpts {
                nats,
                priority,
                node,
                durable,
                count,
                idle_exit,
                stream,
                json_out,
            })
            .await
            .unwrap_or_else(|c| c),
            AlertsCmd::Test {
                nats,
                node,
                priority,
                count,
                operator,
            } => test_alerts(&nats, &node, priority, count, &operator.name(), json_out)
                .await
                .unwrap_or_else(|c| c),
            AlertsCmd::Ack {
                id,
                note,
                nats,
                operator,
            } => {
                let cp = match control(&nats).await {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let ack = AlertAck {
                    alert_id: id.clone(),
                    by: operator.name(),
                    time: now(),
                    note,
                };
                match cp.ack_alert(&ack).await {
                    Ok(rev) => {
                        if json_out {
                            println!("{}", json!({"ok": true, "ack": ack, "revision": rev}));
                        } else {
                            println!("alert {id} acknowledged by {} at {}", ack.by, ack.time);
                        }
                        exit::OK
                    }
                    Err(e) => {
                        eprintln!("brainboxctl: {e}");
                        exit::UNAVAILABLE
                    }
                }
            }
        }
    })
}

async fn test_alerts(
    n: &NatsArg,
    node: &str,
    priority: Priority,
    count: u32,
    operator: &str,
    json_out: bool,
) -> Result<i32, i32> {
    let unavailable = |e: String| {
        eprintln!("brainboxctl: {e}");
        exit::UNAVAILABLE
    };
    let cp = control(n).await?;
    let js = cp.jetstream();
    js.get_or_create_stream(stream_config(
        DEFAULT_STREAM,
        DEFAULT_PREFIX,
        Duration::from_secs(3600),
        -1,
    ))
    .await
    .map_err(|e| unavailable(format!("cannot ensure stream {DEFAULT_STREAM}: {e}")))?;
    for _ in 0..count {
        let alert = Alert::for_event(
            node,
            ContainerRef {
                id: "test".into(),
                name: "brainboxctl-test".into(),
                image: String::new(),
                ..Default::default()
            },
            "brainboxctl test alert",
            priority,
            vec!["test".into()],
            format!("test alert from brainboxctl, operator {operator}"),
            std::time::SystemTime::now(),
            std::process::id(),
        );
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", alert.id.as_str());
        let body = serde_json::to_vec(&alert).unwrap_or_default();
        let ack = js
            .publish_with_headers(alert.subject(DEFAULT_PREFIX), h, body.into())
            .await
            .map_err(|e| unavailable(format!("publish: {e}")))?
            .await
            .map_err(|e| unavailable(format!("no JetStream ack: {e}")))?;
        if json_out {
            println!("{}", json!({"id": alert.id, "stream_seq": ack.sequence}));
        } else {
            println!(
                "published test alert {} (stream sequence {})",
                alert.id, ack.sequence
            );
        }
    }
    Ok(exit::OK)
}

struct TailOpts {
    nats: NatsArg,
    priority: Option<Priority>,
    node: Option<String>,
    durable: String,
    count: Option<u64>,
    idle_exit: Option<u64>,
    stream: String,
    json_out: bool,
}

async fn tail(o: TailOpts) -> Result<i32, i32> {
    let unavailable = |e: String| {
        eprintln!("brainboxctl: {e}");
        exit::UNAVAILABLE
    };
    let opts = o
        .nats
        .auth()?
        .apply(async_nats::ConnectOptions::new())
        .map_err(|e| {
            eprintln!("brainboxctl: {e}");
            exit::USAGE
        })?;
    let client = tokio::time::timeout(
        Duration::from_secs(o.nats.connect_timeout),
        opts.name("brainboxctl")
            .connection_timeout(Duration::from_secs(o.nats.connect_timeout))
            .connect(o.nats.nats.as_str()),
    )
    .await
    .map_err(|_| unavailable(format!("cannot reach NATS at {}: timed out", o.nats.nats)))?
    .map_err(|e| unavailable(format!("cannot reach NATS at {}: {e}", o.nats.nats)))?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&o.stream).await.map_err(|e| {
        unavailable(format!(
            "alert stream {} not available ({e}); has a node agent published to this NATS yet?",
            o.stream
        ))
    })?;
    let filter = format!(
        "{DEFAULT_PREFIX}.{}.*",
        o.node
            .as_deref()
            .map_or_else(|| "*".to_owned(), subject_token)
    );
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &o.durable,
            pull::Config {
                durable_name: Some(o.durable.clone()),
                filter_subject: filter.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| unavailable(format!("cannot open durable consumer {}: {e}", o.durable)))?;
    let existing = consumer.cached_info().config.filter_subject.clone();
    if existing != filter {
        eprintln!(
            "brainboxctl: durable consumer `{}` already exists with filter `{existing}`, not `{filter}`; \
             choose another --durable for this view",
            o.durable
        );
        return Err(exit::USAGE);
    }
    let mut printed = 0u64;
    let mut last_seen = Instant::now();
    let stdout = std::io::stdout();
    loop {
        if o.count.is_some_and(|c| printed >= c) {
            break;
        }
        if o.idle_exit
            .is_some_and(|s| last_seen.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        let want = o.count.map_or(256, |c| (c - printed).min(256)) as usize;
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| unavailable(format!("fetching alerts: {e}")))?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| unavailable(format!("fetching alerts: {e}")))?;
            last_seen = Instant::now();
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let alert: Alert = match serde_json::from_slice(&m.payload) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("brainboxctl: stream message {seq} is not an alert ({e}); terminating its delivery");
                    let _ = m.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            if o.priority.is_some_and(|p| !alert.priority.at_least(p)) {
                m.double_ack()
                    .await
                    .map_err(|e| unavailable(format!("acking message {seq}: {e}")))?;
                continue;
            }
            {
                let mut out = stdout.lock();
                let line = if o.json_out {
                    json!({"stream_seq": seq, "alert": alert}).to_string()
                } else {
                    human(&alert)
                };
                // Printed (and flushed) before the ack: a crash in between shows the alert
                // again rather than losing it.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(exit::OK);
                }
            }
            m.double_ack()
                .await
                .map_err(|e| unavailable(format!("acking message {seq}: {e}")))?;
            printed += 1;
            if o.count.is_some_and(|c| printed >= c) {
                break;
            }
        }
    }
    Ok(exit::OK)
}

fn human(a: &Alert) -> String {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    // A summary of identical alerts (coalesced by the node agent) says how many and since when.
    let repeats = match (a.repeats, &a.repeats_since) {
        (0, _) => String::new(),
        (n, Some(since)) => format!(" +{n} identical since {since}"),
        (n, None) => format!(" +{n} identical"),
    };
    // Everything here came over the network: no control character reaches the terminal, and
    // the only line break is ours.
    let pod = match (&a.container.namespace, &a.container.pod) {
        (Some(ns), Some(p)) => format!(" pod={ns}/{p}"),
        (None, Some(p)) => format!(" pod={p}"),
        _ => String::new(),
    };
    let head = format!(
        "{} {:<13} node={}{pod} container={}({}) rule=\"{}\"{repeats} evidence={} id={}",
        a.time,
        a.priority.as_str().to_uppercase(),
        a.node,
        a.container.name,
        short(&a.container.id),
        a.rule,
        a.evidence_id.as_deref().unwrap_or("-"),
        a.id,
    );
    format!(
        "{}\n    {}",
        crate::events::sanitize(&head),
        crate::events::sanitize(&a.output)
    )
}

/// Runs `checkin`.
pub fn checkin(args: CheckinArgs, json_out: bool) -> i32 {
    runtime().block_on(async move {
        let cp = match control(&args.nats).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let c = Checkin {
            operator: args.operator.name(),
            time: now(),
        };
        match cp.checkin(&c).await {
            Ok(rev) => {
                if json_out {
                    println!("{}", json!({"ok": true, "checkin": c, "revision": rev}));
                } else {
                    println!("checked in as {} at {}", c.operator, c.time);
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                exit::UNAVAILABLE
            }
        }
    })
}

/// Prints a line made of what came over the network, without its control characters.
pub(crate) fn say(line: &str) {
    println!("{}", crate::events::sanitize(line));
}

/// Runs `safe-mode on|off|status`.
pub fn safe_mode(args: SafeModeArgs, json_out: bool) -> i32 {
    runtime().block_on(async move {
        let cp = match control(&args.nats).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let on = match args.action {
            SafeModeAction::On => true,
            SafeModeAction::Off => false,
            SafeModeAction::Status => return status(&cp, json_out).await,
        };
        let cmd = SafeModeCommand {
            on,
            by: args.operator.name(),
            time: now(),
            reason: args.reason,
        };
        match cp.command_safe_mode(args.node.as_deref(), &cmd).await {
            Ok(rev) => {
                let scope = args.node.as_deref().unwrap_or("all nodes");
                if json_out {
                    println!(
                        "{}",
                        json!({"ok": true, "command": cmd, "scope": scope, "revision": rev})
                    );
                } else {
                    println!(
                        "safe mode {} requested for {scope}; `brainboxctl safe-mode status` shows when the agents have applied it",
                        if on { "ON" } else { "OFF" }
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                exit::UNAVAILABLE
            }
        }
    })
}

async fn status(cp: &ControlPlane, json_out: bool) -> i32 {
    let states = match cp.node_states().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("brainboxctl: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let checkin = cp.last_checkin().await.ok().flatten();
    let commands = cp.commands().await.unwrap_or_default();
    if json_out {
        let cmds: serde_json::Map<String, serde_json::Value> = commands
            .iter()
            .map(|(k, c)| (k.clone(), json!(c)))
            .collect();
        println!(
            "{}",
            json!({"nodes": states, "last_checkin": checkin, "commands": cmds})
        );
        return exit::OK;
    }
    match &checkin {
        Some(c) => say(&format!(
            "last operator check-in: {} by {}",
            c.time, c.operator
        )),
        None => say("last operator check-in: never"),
    }
    for (k, c) in &commands {
        say(&format!(
            "command {:<16} safe mode {} by {} at {}{}",
            k.trim_start_matches("command."),
            if c.on { "ON " } else { "OFF" },
            c.by,
            c.time,
            if c.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.reason)
            }
        ));
    }
    if states.is_empty() {
        println!("no node agent has reported its safety state");
    }
    for s in states {
        say(&format!(
            "{:<20} {}  action={}  reasons={}  since={}  updated={}",
            s.node,
            if s.safe_mode {
                "SAFE MODE"
            } else {
                "normal   "
            },
            s.action,
            if s.reasons.is_empty() {
                "-".to_owned()
            } else {
                s.reasons.join(",")
            },
            s.since.as_deref().unwrap_or("-"),
            s.updated
        ));
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_show_repeats_and_no_control_characters() {
        let mut a = Alert::for_event(
            "node\u{1b}[2J",
            brainbox_alerts::ContainerRef {
                id: "0123456789abcdef".into(),
                name: "agent".into(),
                image: "img".into(),
                ..Default::default()
            },
            "Redirect STDOUT/STDIN to Network Connection in Container",
            Priority::Critical,
            vec![],
            "nc -e /bin/sh\nFORGED 2026 CRITICAL".into(),
            std::time::UNIX_EPOCH,
            1,
        );
        a.repeats = 3;
        a.repeats_since = Some("2026-11-26T01:57:46Z".into());
        a.container.pod = Some("agent-0".into());
        a.container.namespace = Some("team-a".into());
        let h = human(&a);
        assert!(h.contains(" pod=team-a/agent-0 container=agent("), "{h}");
        assert!(
            h.contains(" +3 identical since 2026-11-26T01:57:46Z "),
            "{h}"
        );
        assert!(!h.contains('\u{1b}'), "{h}");
        // One line for the header, one for the output: the forged newline is gone.
        assert_eq!(h.lines().count(), 2, "{h}");
    }
}

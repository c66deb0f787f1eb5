//! `brainboxctl isolation`: see and lift the `isolate` response's network locks on a node.

use crate::{
    alerts_cmd::{control, runtime, NatsArg, OperatorArg},
    exit,
};
use brainbox_alerts::control::{isolation_request, IsolatedContainer, IsolationRequest};
use clap::{Args, Subcommand};
use std::time::Duration;

/// `isolation` subcommands.
#[derive(Subcommand)]
pub enum IsolationCmd {
    /// The containers the `isolate` response has cut to loopback on a node.
    List(NodeArgs),
    /// Lift a container's isolation (its whole pod), after looking at the evidence. Recorded in
    /// the node's audit chain with who and why.
    Release {
        /// Container ID (or a unique prefix of 6+ characters) or name, as in the alert.
        container: String,
        /// Why, for the audit log (required: a lift is a decision someone may ask about).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        operator: OperatorArg,
    },
}

/// The node to ask.
#[derive(Args)]
pub struct NodeArgs {
    /// The node (as in the alert's `node` field).
    #[arg(long)]
    node: String,
    /// Seconds to wait for the node's answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    #[command(flatten)]
    nats: NatsArg,
}

/// One container of a reply, without control characters (names come from the node).
fn line(c: &IsolatedContainer) -> String {
    let id: String = c.container_id.chars().take(12).collect();
    crate::events::sanitize(&match (&c.namespace, &c.pod) {
        (Some(ns), Some(p)) => format!("{id}  {}  (pod {ns}/{p})", c.name),
        (None, Some(p)) => format!("{id}  {}  (pod {p})", c.name),
        (_, None) => format!("{id}  {}", c.name),
    })
}

/// Runs an `isolation` subcommand.
pub fn isolation(cmd: IsolationCmd, json_out: bool) -> i32 {
    let (args, req) = match cmd {
        IsolationCmd::List(a) => (a, IsolationRequest::List),
        IsolationCmd::Release {
            container,
            reason,
            node,
            operator,
        } => {
            if reason.trim().is_empty() {
                eprintln!("brainboxctl: --reason must say why the isolation is lifted");
                return exit::USAGE;
            }
            let req = IsolationRequest::Release {
                container,
                by: operator.name(),
                reason,
            };
            (node, req)
        }
    };
    let release = matches!(req, IsolationRequest::Release { .. });
    runtime().block_on(async move {
        let cp = match control(&args.nats).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let reply = match isolation_request(
            cp.client(),
            &args.node,
            &req,
            Duration::from_secs(args.timeout.max(1)),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("brainboxctl: {e}");
                return exit::UNAVAILABLE;
            }
        };
        if json_out {
            println!("{}", serde_json::to_string(&reply).unwrap_or_default());
        } else {
            if let Some(e) = &reply.error {
                eprintln!(
                    "{}",
                    crate::events::sanitize(&format!("brainboxctl: node {}: {e}", reply.node))
                );
            }
            if release {
                for c in &reply.released {
                    println!("released: {}", line(c));
                }
                if let Some(seq) = reply.audit_seq {
                    println!("recorded in the audit log (record {seq})");
                }
            }
            if reply.isolated.is_empty() {
                crate::alerts_cmd::say(&format!("node {}: no container is isolated", reply.node));
            } else {
                crate::alerts_cmd::say(&format!("node {}: isolated now:", reply.node));
                for c in &reply.isolated {
                    println!("  {}", line(c));
                }
            }
            if reply.node_locked {
                crate::alerts_cmd::say(&format!(
                    "node {}: egress of every brainbox is closed by safe mode (lift it with a check-in or `safe-mode off`)",
                    reply.node
                ));
            }
        }
        if reply.ok {
            exit::OK
        } else {
            exit::USAGE
        }
    })
}

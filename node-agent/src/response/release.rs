//! Lifting an `isolate` response by hand: the node agent answers operator requests on
//! `brainbox.isolation.<node>` (core NATS request/reply, see `brainbox_alerts::control`).
//!
//! `isolate` locks a container's pod to loopback in the pinned zones lock map and lets it run on
//! under observation; the lock lasts as long as the container. An operator who has looked at the
//! evidence and judged the alert a false positive lifts it with `brainboxctl isolation release`:
//! the lock goes for every container of the pod (they share one network namespace, so a
//! half-lifted pod would still be cut off), the release is recorded in the audit chain with who
//! and why, and the reply says what was released. A safe-mode node lock (`close_egress`) is not
//! touched: that one is lifted by a check-in or `safe-mode off`.

use super::{Isolation, Responder};
use crate::runtime::ContainerInfo;
use brainbox_alerts::control::{
    isolation_subject, IsolatedContainer, IsolationReply, IsolationRequest,
    MAX_ISOLATION_REQUEST_BYTES,
};
use futures_util::StreamExt;
use std::{collections::BTreeSet, sync::Arc};

/// Shortest container-ID prefix accepted (Docker's short IDs are 12).
const MIN_PREFIX: usize = 6;

/// Answers isolation requests for `node` until the connection is closed.
pub async fn serve(client: async_nats::Client, node: String, responder: Arc<Responder>) {
    let subject = isolation_subject(&node);
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, %subject, "cannot serve isolation requests");
            return;
        }
    };
    tracing::info!(%subject, "serving isolation requests");
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let reply = if msg.payload.len() > MAX_ISOLATION_REQUEST_BYTES {
            refused(&node, "request too large")
        } else {
            match serde_json::from_slice::<IsolationRequest>(&msg.payload) {
                Ok(req) => handle(&responder, &node, req),
                Err(e) => refused(&node, &format!("malformed request: {e}")),
            }
        };
        let body = serde_json::to_vec(&reply).unwrap_or_default();
        if let Err(e) = client.publish(reply_to, body.into()).await {
            tracing::warn!(error = %e, "cannot answer an isolation request");
        }
    }
}

fn refused(node: &str, why: &str) -> IsolationReply {
    IsolationReply {
        node: node.to_owned(),
        ok: false,
        error: Some(why.to_owned()),
        isolated: vec![],
        released: vec![],
        node_locked: false,
        audit_seq: None,
    }
}

fn describe(c: &ContainerInfo) -> IsolatedContainer {
    IsolatedContainer {
        container_id: c.id.clone(),
        name: c.name.clone(),
        pod: c.pod.clone(),
        namespace: c.namespace.clone(),
        cgroup_id: c.cgroup_id,
    }
}

/// The containers whose cgroup is locked now.
fn isolated(iso: &Isolation, locks: &BTreeSet<u64>) -> Vec<IsolatedContainer> {
    let mut v: Vec<IsolatedContainer> = iso
        .table
        .all()
        .iter()
        .filter(|c| locks.contains(&c.cgroup_id))
        .map(|c| describe(c))
        .collect();
    v.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    v
}

/// Finds a container by exact ID, exact name, or a unique ID prefix.
pub(crate) fn find<'a>(
    all: &'a [Arc<ContainerInfo>],
    key: &str,
) -> Result<&'a Arc<ContainerInfo>, String> {
    let key = key.trim().trim_start_matches('/');
    if key.is_empty() {
        return Err("no container named".into());
    }
    if let Some(c) = all.iter().find(|c| c.id == key || c.name == key) {
        return Ok(c);
    }
    if key.len() < MIN_PREFIX {
        return Err(format!(
            "no container {key:?} on this node (ID prefixes need at least {MIN_PREFIX} characters)"
        ));
    }
    let mut hits = all.iter().filter(|c| c.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(format!("{key:?} matches more than one container")),
        (None, _) => Err(format!("no container {key:?} on this node")),
    }
}

/// What a request did: the containers released, the audit record, and what went wrong.
#[derive(Default)]
struct Outcome {
    released: Vec<IsolatedContainer>,
    audit_seq: Option<u64>,
    error: Option<String>,
}

impl Outcome {
    fn failed(why: String) -> Self {
        Outcome {
            error: Some(why),
            ..Outcome::default()
        }
    }
}

fn handle(responder: &Responder, node: &str, req: IsolationRequest) -> IsolationReply {
    let Some(iso) = &responder.isolation else {
        return refused(
            node,
            "zones are not enforced on this node: nothing is isolated",
        );
    };
    let out = match req {
        IsolationRequest::List => Outcome::default(),
        IsolationRequest::Release {
            container,
            by,
            reason,
        } => release(responder, iso, &container, &by, &reason),
    };
    // Every answer says what is isolated now (after a release: what stays isolated).
    let locks = iso.zones.locks();
    IsolationReply {
        node: node.to_owned(),
        ok: out.error.is_none(),
        error: out.error,
        isolated: isolated(iso, &locks),
        released: out.released,
        node_locked: locks.contains(&brainbox_ebpf_common::zones::LOCK_ALL),
        audit_seq: out.audit_seq,
    }
}

/// Lifts the lock of `container`'s whole pod and records who did it and why.
fn release(
    responder: &Responder,
    iso: &Isolation,
    container: &str,
    by: &str,
    reason: &str,
) -> Outcome {
    let all = iso.table.all();
    let target = match find(&all, container) {
        Ok(c) => c.clone(),
        Err(e) => return Outcome::failed(e),
    };
    let locks = iso.zones.locks();
    if !locks.contains(&target.cgroup_id) {
        return Outcome::failed(format!("container {} is not isolated", target.name));
    }
    // The whole pod: its containers share the network namespace the lock cut.
    let pod = all
        .iter()
        .filter(|c| c.id == target.id || target.same_pod(c))
        .filter(|c| locks.contains(&c.cgroup_id));
    let mut out = Outcome::default();
    for c in pod {
        if let Err(e) = iso.zones.release(c.cgroup_id) {
            // Partly released is reported as such; the audit record says what went.
            out.error = Some(format!("cannot release {}: {e}", c.name));
            break;
        }
        out.released.push(describe(c));
    }
    let details = serde_json::json!({
        "by": by,
        "reason": reason,
        "released": out.released,
        "error": out.error,
    });
    out.audit_seq = responder.audit("isolation_released", &target.id, details);
    tracing::warn!(
        container_id = %target.id,
        pod = ?target.pod,
        by = %by,
        released = out.released.len(),
        "isolation lifted by the operator"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, name: &str) -> Arc<ContainerInfo> {
        Arc::new(ContainerInfo {
            id: id.into(),
            name: name.into(),
            ..ContainerInfo::default()
        })
    }

    #[test]
    fn finds_by_id_name_and_unique_prefix_only() {
        let all = vec![
            c("abcdef0123456789", "agent-a"),
            c("abcdef9999999999", "agent-b"),
            c("0123456789abcdef", "sidecar"),
        ];
        assert_eq!(find(&all, "agent-b").unwrap().id, "abcdef9999999999");
        assert_eq!(find(&all, "/sidecar").unwrap().id, "0123456789abcdef");
        assert_eq!(find(&all, "0123456789abcdef").unwrap().name, "sidecar");
        assert_eq!(find(&all, "012345").unwrap().name, "sidecar");
        assert!(find(&all, "abcdef").unwrap_err().contains("more than one"));
        assert!(find(&all, "01234").unwrap_err().contains("at least 6"));
        assert!(find(&all, "ffffff").unwrap_err().contains("no container"));
        assert!(find(&all, "  ").is_err());
    }

    #[test]
    fn requests_are_strict_json() {
        let r: IsolationRequest = serde_json::from_str(
            r#"{"op":"release","container":"abc","by":"op","reason":"false positive"}"#,
        )
        .unwrap();
        assert!(matches!(r, IsolationRequest::Release { .. }));
        assert!(serde_json::from_str::<IsolationRequest>(r#"{"op":"list"}"#).is_ok());
        assert!(serde_json::from_str::<IsolationRequest>(r#"{"op":"delete"}"#).is_err());
        assert!(serde_json::from_str::<IsolationRequest>(r#"{"op":"release"}"#).is_err());
        assert!(serde_json::from_str::<IsolationRequest>("not json").is_err());
    }

    proptest::proptest! {
        /// Hostile request bodies get an error, never a panic; a container is found only by
        /// its ID, its name, or a unique ID prefix of at least 6 characters.
        #[test]
        fn hostile_requests_and_names(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256), key in ".{0,40}") {
            let _ = serde_json::from_slice::<IsolationRequest>(&body);
            let all = vec![c("abcdef0123456789", "agent-a"), c("0123456789abcdef", "sidecar")];
            if let Ok(found) = find(&all, &key) {
                let k = key.trim().trim_start_matches('/');
                proptest::prop_assert!(
                    found.id == k || found.name == k || (k.len() >= MIN_PREFIX && found.id.starts_with(k))
                );
            }
        }
    }
}

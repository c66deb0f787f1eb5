//! The operator control plane, kept in JetStream key-value buckets so that it survives restarts
//! of either side and the latest value is always readable:
//!
//! | bucket | key | written by | value |
//! |---|---|---|---|
//! | `BRAINBOX_OPERATOR` | `checkin` | `brainboxctl checkin` | [`Checkin`] (the dead-man heartbeat) |
//! | `BRAINBOX_SAFE_MODE` | `command.all`, `command.<node>` | `brainboxctl safe-mode on/off` | [`SafeModeCommand`] |
//! | `BRAINBOX_SAFE_MODE` | `state.<node>` | the node agent | [`NodeSafetyState`] |
//! | `BRAINBOX_ALERT_ACKS` | `<alert id>` | `brainboxctl alerts ack` | [`AlertAck`] |
//!
//! Isolation lifts are not stored: they are core NATS requests to one node
//! ([`isolation_subject`]), answered by that node's agent with an [`IsolationReply`], so the
//! operator learns at once whether the lift took effect (and a stored lift can never be replayed
//! onto a later isolation of the same container).

use crate::schema::subject_token;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;

/// Bucket of operator heartbeats.
pub const OPERATOR_BUCKET: &str = "BRAINBOX_OPERATOR";
/// Bucket of safe-mode commands and node states.
pub const SAFE_MODE_BUCKET: &str = "BRAINBOX_SAFE_MODE";
/// Bucket of operator acknowledgements of alerts.
pub const ACKS_BUCKET: &str = "BRAINBOX_ALERT_ACKS";
/// Key of the operator heartbeat.
pub const CHECKIN_KEY: &str = "checkin";

/// An operator heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkin {
    /// Who checked in.
    pub operator: String,
    /// When (RFC 3339).
    pub time: String,
}

/// An operator's safe-mode command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeModeCommand {
    /// True: enter safe mode; false: leave it.
    pub on: bool,
    /// Who gave it.
    pub by: String,
    /// When (RFC 3339).
    pub time: String,
    /// Why, for the record.
    #[serde(default)]
    pub reason: String,
}

/// What a node agent reports about its safety state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSafetyState {
    /// The node.
    pub node: String,
    /// Whether the node is in safe mode.
    pub safe_mode: bool,
    /// Why (`dead_man`, `alert_path_lost`, `operator`).
    pub reasons: Vec<String>,
    /// The profile's safe-mode action (`freeze`, `close_egress`).
    pub action: String,
    /// When the node entered safe mode, if it is in it.
    #[serde(default)]
    pub since: Option<String>,
    /// The last operator check-in the node saw.
    #[serde(default)]
    pub last_checkin: Option<String>,
    /// When this state was published.
    pub updated: String,
    /// Anything else (alert path state, frozen containers...).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// An operator's acknowledgement of an alert: "seen, handled". Distinct from the JetStream
/// delivery ack, which only means one consumer received the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertAck {
    /// The alert.
    pub alert_id: String,
    /// Who acknowledged it.
    pub by: String,
    /// When.
    pub time: String,
    /// A note.
    #[serde(default)]
    pub note: String,
}

/// Control-plane errors.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// NATS could not be reached.
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A JetStream or KV operation failed.
    #[error("{op}: {reason}")]
    Op { op: String, reason: String },
    /// A stored value is not what we wrote.
    #[error("{bucket}/{key}: malformed value: {reason}")]
    Malformed {
        bucket: String,
        key: String,
        reason: String,
    },
}

fn op(what: impl Into<String>) -> impl FnOnce(String) -> ControlError {
    let what = what.into();
    move |reason| ControlError::Op { op: what, reason }
}

/// The JetStream stream of identity revocations (every node replays it from the start, so a
/// revocation outlives restarts of the agents and of NATS).
pub const REVOCATIONS_STREAM: &str = "BRAINBOX_REVOCATIONS";
/// Its subject.
pub const REVOCATIONS_SUBJECT: &str = "brainbox.revocations";
/// Largest revocation message a node accepts.
pub const MAX_REVOCATION_BYTES: usize = 4096;

/// What makes a revocation acceptable, checked by `brainboxctl` before it publishes one and by
/// every node agent on each one it reads: it names a SPIFFE ID (`spiffe://…`), a certificate
/// serial (hex, colons allowed), or both. Errors quote the offending value escaped.
pub fn check_revocation(spiffe_id: Option<&str>, serial: Option<&str>) -> Result<(), String> {
    match (spiffe_id, serial) {
        (None, None) => Err("names neither a spiffe_id nor a serial".into()),
        (Some(id), _) if !id.starts_with("spiffe://") => Err(format!(
            "`{}` is not a SPIFFE ID (spiffe://...)",
            id.escape_debug()
        )),
        (_, Some(s)) if s.is_empty() || !s.chars().all(|c| c.is_ascii_hexdigit() || c == ':') => {
            Err(format!("serial `{}` is not hex", s.escape_debug()))
        }
        _ => Ok(()),
    }
}

/// Largest isolation request a node accepts.
pub const MAX_ISOLATION_REQUEST_BYTES: usize = 4096;

/// The subject a node's agent answers isolation requests on.
pub fn isolation_subject(node: &str) -> String {
    format!("brainbox.isolation.{}", subject_token(node))
}

/// An operator's request about the `isolate` response's network locks on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum IsolationRequest {
    /// Which containers are isolated now.
    List,
    /// Lifts the isolation of a container and of its pod (the lock covers the whole pod).
    Release {
        /// Container ID (full, or a unique prefix of at least 6 characters) or name.
        container: String,
        /// Who lifts it.
        by: String,
        /// Why, for the audit log.
        #[serde(default)]
        reason: String,
    },
}

/// One isolated container, as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolatedContainer {
    /// Container ID.
    pub container_id: String,
    /// Container name.
    pub name: String,
    /// Pod, if the container is in one.
    #[serde(default)]
    pub pod: Option<String>,
    /// The pod's Kubernetes namespace, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its cgroup v2 id (the key in the zones lock map).
    pub cgroup_id: u64,
}

/// A node's answer to an [`IsolationRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReply {
    /// The node that answered.
    pub node: String,
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default)]
    pub error: Option<String>,
    /// The containers isolated now (after a release: those still isolated).
    #[serde(default)]
    pub isolated: Vec<IsolatedContainer>,
    /// The containers a release set free.
    #[serde(default)]
    pub released: Vec<IsolatedContainer>,
    /// Whether the whole node is locked by safe mode (`close_egress`), which a release does not
    /// lift.
    #[serde(default)]
    pub node_locked: bool,
    /// The audit-log record of a release.
    #[serde(default)]
    pub audit_seq: Option<u64>,
}

/// Sends `req` to `node`'s agent and waits up to `timeout` for its answer.
pub async fn isolation_request(
    client: &async_nats::Client,
    node: &str,
    req: &IsolationRequest,
    timeout: Duration,
) -> Result<IsolationReply, ControlError> {
    let subject = isolation_subject(node);
    let body = serde_json::to_vec(req).map_err(|e| ControlError::Op {
        op: "encode isolation request".into(),
        reason: e.to_string(),
    })?;
    let msg = tokio::time::timeout(timeout, client.request(subject.clone(), body.into()))
        .await
        .map_err(|_| ControlError::Op {
            op: format!("request {subject}"),
            reason: format!("no answer from node {node} within {timeout:?}"),
        })?
        .map_err(|e| ControlError::Op {
            op: format!("request {subject}"),
            reason: match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    format!("no agent answers for node {node} (is it running, with alerts on?)")
                }
                _ => e.to_string(),
            },
        })?;
    serde_json::from_slice(&msg.payload).map_err(|e| ControlError::Malformed {
        bucket: "isolation".into(),
        key: subject,
        reason: e.to_string(),
    })
}

/// The key of a safe-mode command for `node` (`None`: every node).
pub fn command_key(node: Option<&str>) -> String {
    match node {
        Some(n) => format!("command.{}", subject_token(n)),
        None => "command.all".to_owned(),
    }
}

/// The key of `node`'s reported state.
pub fn state_key(node: &str) -> String {
    format!("state.{}", subject_token(node))
}

/// A handle on the control plane.
#[derive(Clone)]
pub struct ControlPlane {
    js: jetstream::Context,
    client: async_nats::Client,
}

impl ControlPlane {
    /// Connects to NATS at `url` anonymously, failing after `timeout` rather than waiting
    /// forever.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, ControlError> {
        Self::connect_with(url, &Default::default(), timeout).await
    }

    /// Connects to NATS at `url` with `auth`, failing after `timeout`.
    pub async fn connect_with(
        url: &str,
        auth: &brainbox_common::nats::NatsAuth,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let err = |reason: String| ControlError::Connect {
            url: url.to_owned(),
            reason,
        };
        let opts = auth.apply(async_nats::ConnectOptions::new()).map_err(err)?;
        let client = tokio::time::timeout(
            timeout,
            opts.name("brainbox-control")
                .connection_timeout(timeout)
                .connect(url),
        )
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
        Ok(Self::from_client(client))
    }

    /// Uses an existing client.
    pub fn from_client(client: async_nats::Client) -> Self {
        Self {
            js: jetstream::new(client.clone()),
            client,
        }
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    async fn bucket(&self, name: &str) -> Result<kv::Store, ControlError> {
        if let Ok(s) = self.js.get_key_value(name).await {
            return Ok(s);
        }
        // The bucket's backing stream, laid out as the KV API expects. We create it directly:
        // `create_key_value` first reads the account info, whose reply from nats-server 2.9
        // (Debian's) async-nats 0.46 cannot parse.
        let cfg = jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 16,
            storage: jetstream::stream::StorageType::File,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(cfg)
            .await
            .map_err(|e| op(format!("create bucket {name}"))(e.to_string()))?;
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| op(format!("open bucket {name}"))(e.to_string()))
    }

    async fn put<T: Serialize>(&self, bucket: &str, key: &str, v: &T) -> Result<u64, ControlError> {
        let b = self.bucket(bucket).await?;
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        b.put(key, Bytes::from(bytes))
            .await
            .map_err(|e| op(format!("put {bucket}/{key}"))(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<T>, ControlError> {
        let b = self.bucket(bucket).await?;
        let v = b
            .get(key)
            .await
            .map_err(|e| op(format!("get {bucket}/{key}"))(e.to_string()))?;
        v.map(|v| {
            serde_json::from_slice(&v).map_err(|e| ControlError::Malformed {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// The revocations stream, created when absent.
    pub async fn revocations_stream(&self) -> Result<jetstream::stream::Stream, ControlError> {
        let cfg = jetstream::stream::Config {
            name: REVOCATIONS_STREAM.into(),
            subjects: vec![REVOCATIONS_SUBJECT.into()],
            storage: jetstream::stream::StorageType::File,
            // Revocations are never aged out: refusing a revoked identity must not expire.
            discard: jetstream::stream::DiscardPolicy::New,
            max_message_size: MAX_REVOCATION_BYTES as i32,
            deny_delete: true,
            deny_purge: true,
            num_replicas: 1,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(cfg)
            .await
            .map_err(|e| op(format!("create stream {REVOCATIONS_STREAM}"))(e.to_string()))
    }

    /// Publishes one revocation (a JSON object: `spiffe_id` and/or `serial`) and waits for
    /// JetStream's ack. Returns the stream sequence.
    pub async fn revoke(&self, revocation: &serde_json::Value) -> Result<u64, ControlError> {
        self.revocations_stream().await?;
        let body = serde_json::to_vec(revocation).unwrap_or_default();
        let ack = self
            .js
            .publish(REVOCATIONS_SUBJECT, Bytes::from(body))
            .await
            .map_err(|e| op("publish revocation")(e.to_string()))?
            .await
            .map_err(|e| op("publish revocation (ack)")(e.to_string()))?;
        Ok(ack.sequence)
    }

    /// Every revocation from the first, then new ones as they come (an ordered consumer, which
    /// re-creates itself across reconnects), with the stream's last sequence at the time of the
    /// call: once an item's sequence reaches it, the caller has seen every earlier revocation.
    /// Items are (stream sequence, raw message body).
    pub async fn follow_revocations(
        &self,
    ) -> Result<
        (
            u64,
            impl futures_util::Stream<Item = Result<(u64, Bytes), ControlError>>,
        ),
        ControlError,
    > {
        let mut stream = self.revocations_stream().await?;
        let last = stream
            .info()
            .await
            .map_err(|e| op("revocations stream info")(e.to_string()))?
            .state
            .last_sequence;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| op("revocations consumer")(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| op("revocations messages")(e.to_string()))?;
        Ok((
            last,
            messages.map(|m| {
                let m = m.map_err(|e| op("revocations message")(e.to_string()))?;
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                Ok((seq, m.payload.clone()))
            }),
        ))
    }

    /// Records an operator heartbeat.
    pub async fn checkin(&self, c: &Checkin) -> Result<u64, ControlError> {
        self.put(OPERATOR_BUCKET, CHECKIN_KEY, c).await
    }

    /// The latest heartbeat.
    pub async fn last_checkin(&self) -> Result<Option<Checkin>, ControlError> {
        self.get(OPERATOR_BUCKET, CHECKIN_KEY).await
    }

    /// Stores a safe-mode command for `node` (`None`: all nodes).
    pub async fn command_safe_mode(
        &self,
        node: Option<&str>,
        c: &SafeModeCommand,
    ) -> Result<u64, ControlError> {
        self.put(SAFE_MODE_BUCKET, &command_key(node), c).await
    }

    /// The command in force for `node`: the newer of its own and the all-nodes command.
    pub async fn safe_mode_command(
        &self,
        node: &str,
    ) -> Result<Option<SafeModeCommand>, ControlError> {
        let own: Option<SafeModeCommand> =
            self.get(SAFE_MODE_BUCKET, &command_key(Some(node))).await?;
        let all: Option<SafeModeCommand> = self.get(SAFE_MODE_BUCKET, &command_key(None)).await?;
        Ok(match (own, all) {
            (Some(a), Some(b)) => Some(if newer(&a.time, &b.time) { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    /// Publishes a node's safety state.
    pub async fn publish_state(&self, s: &NodeSafetyState) -> Result<u64, ControlError> {
        self.put(SAFE_MODE_BUCKET, &state_key(&s.node), s).await
    }

    /// Every safe-mode command in force, by key (`command.all`, `command.<node>`).
    pub async fn commands(&self) -> Result<Vec<(String, SafeModeCommand)>, ControlError> {
        let mut out = Vec::new();
        for k in self.keys_with_prefix("command.").await? {
            if let Some(c) = self.get(SAFE_MODE_BUCKET, &k).await? {
                out.push((k, c));
            }
        }
        Ok(out)
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, ControlError> {
        let b = self.bucket(SAFE_MODE_BUCKET).await?;
        let mut keys = b
            .keys()
            .await
            .map_err(|e| op("list safe-mode keys")(e.to_string()))?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| op("list safe-mode keys")(e.to_string()))?;
            if k.starts_with(prefix) {
                names.push(k);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every node's reported state.
    pub async fn node_states(&self) -> Result<Vec<NodeSafetyState>, ControlError> {
        let mut out = Vec::new();
        for k in self.keys_with_prefix("state.").await? {
            if let Some(s) = self.get(SAFE_MODE_BUCKET, &k).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Records an operator acknowledgement of an alert.
    pub async fn ack_alert(&self, a: &AlertAck) -> Result<u64, ControlError> {
        self.put(ACKS_BUCKET, &subject_token(&a.alert_id), a).await
    }

    /// The acknowledgement of alert `id`, if any.
    pub async fn alert_ack(&self, id: &str) -> Result<Option<AlertAck>, ControlError> {
        self.get(ACKS_BUCKET, &subject_token(id)).await
    }

    /// Watches a bucket: the latest value of every key, then every change; `value` is `None`
    /// for deletes.
    pub async fn watch(
        &self,
        bucket: &str,
    ) -> Result<impl futures_util::Stream<Item = KvChange>, ControlError> {
        let b = self.bucket(bucket).await?;
        // The latest value of every key first, then changes: a starting agent (or one whose
        // watch reopens after an outage) learns a `safe-mode on` or a check-in made while it
        // was away. Replays carry the revision they had (see the monitor).
        let w = b
            .watch_with_history(">")
            .await
            .map_err(|e| op(format!("watch {bucket}"))(e.to_string()))?;
        Ok(w.filter_map(|e| async move {
            let e = e.ok()?;
            let value = matches!(e.operation, kv::Operation::Put).then_some(e.value);
            Some(KvChange {
                key: e.key,
                value,
                revision: e.revision,
            })
        }))
    }
}

/// One change seen by [`ControlPlane::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChange {
    /// The key.
    pub key: String,
    /// The new value; `None` when the key was deleted or purged.
    pub value: Option<Bytes>,
    /// The bucket's revision of this change: it grows with every write to the bucket, and a
    /// watch that reopens replays the latest value of each key with the revision it had, so a
    /// replay is the same revision with the same value, whatever clocks the writers had (a
    /// store that was reset starts counting again).
    pub revision: u64,
}

/// True if RFC 3339 time `a` is later than `b` (unparseable times lose).
pub fn newer(a: &str, b: &str) -> bool {
    match (humantime::parse_rfc3339(a), humantime::parse_rfc3339(b)) {
        (Ok(x), Ok(y)) => x > y,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

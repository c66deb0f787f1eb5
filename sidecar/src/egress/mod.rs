//! The egress proxy: the pod's only way out, keyed by its SPIFFE identity.
//!
//! A forward proxy on the pod's loopback for `CONNECT` tunnels and absolute-form HTTP/1.1
//! requests. For each request it takes the pod's current SPIFFE ID, refuses everything if that ID
//! is revoked, selects the ID's egress policy, decides by host, port, method and path, resolves the
//! name itself, checks every resolved address with the SSRF classifier, dials only a checked
//! address, and in a TLS tunnel checks that the ClientHello's SNI is the `CONNECT` host. Every
//! decision is audited and counted.
//!
//! Layout: `http` (request/response heads, chunked bodies), `client_hello` (SNI), `classify`
//! (address classes), `policy` (compiled rules, decisions), `identity` (SPIFFE ID, revocations),
//! `audit` (records, metrics), `proxy` (the server), `config` (`[egress]`).

pub mod audit;
pub mod classify;
pub mod client_hello;
pub mod config;
pub mod http;
pub mod identity;
pub mod policy;
mod proxy;
mod state;

pub use config::{EgressConfig, Limits};
pub use proxy::{start, EgressHandle};
pub use state::Egress;

use std::{path::PathBuf, sync::Arc};

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The listen address could not be bound.
    #[error("cannot listen for egress on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The policy folder could not be loaded.
    #[error("egress policy: {0}")]
    Policy(#[from] brainbox_profile::ProfileError),
    /// The resolver could not be configured.
    #[error("egress resolver: {0}")]
    Resolver(String),
    /// The audit log could not be opened.
    #[error("cannot open egress audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] brainbox_common::config::ConfigError),
}

/// Starts the proxy as `[egress]` says: identity from the SVID file or `spiffe_id`, audit records
/// as JSON lines (their host and path redacted by `engine`), metrics registered in `registry`.
pub async fn start_from_config(
    cfg: &EgressConfig,
    engine: Arc<brainbox_redact::Engine>,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<EgressHandle, EgressError> {
    let identity: Arc<dyn identity::IdentitySource> = if cfg.svid_file.is_empty() {
        Arc::new(identity::StaticIdentity(cfg.spiffe_id.clone()))
    } else {
        Arc::new(identity::SvidFileIdentity::new(&cfg.svid_file))
    };
    let metrics = audit::EgressMetrics::default();
    metrics.register(registry);
    let sink = audit::JsonLinesAudit::start(
        &cfg.audit_log,
        cfg.limits.audit_queue,
        metrics.audit_dropped.clone(),
        Some(engine),
    )
    .map_err(|source| EgressError::Audit {
        path: PathBuf::from(&cfg.audit_log),
        source,
    })?;
    start(cfg, identity, Arc::new(sink), metrics).await
}

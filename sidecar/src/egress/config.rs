//! `[egress]` in the sidecar configuration.

use brainbox_common::config::ConfigError;
use serde::Deserialize;
use std::{net::SocketAddr, time::Duration};

/// The egress proxy's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Serve the proxy (default true). With no identity or no policy it refuses everything.
    pub enabled: bool,
    /// Proxy address on the pod's loopback.
    pub listen: String,
    /// The pod's SPIFFE ID, when no SVID file is given.
    pub spiffe_id: String,
    /// An X.509 SVID (PEM) whose URI SAN is the pod's SPIFFE ID; wins over `spiffe_id`.
    pub svid_file: String,
    /// Folder of `kind: egress-policy` files.
    pub policy_dir: String,
    /// File of revoked SPIFFE IDs, one per line (optional).
    pub revocation_file: String,
    /// Where audit records go: empty or `-` for stdout, else a file (appended).
    pub audit_log: String,
    /// DNS servers (`ip:port`) to resolve with; empty uses the system's resolv.conf.
    pub nameservers: Vec<String>,
    /// How often identity, revocations and policy are re-read, in milliseconds.
    pub refresh_ms: u64,
    /// `[egress.limits]`.
    pub limits: Limits,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:15001".into(),
            spiffe_id: String::new(),
            svid_file: String::new(),
            policy_dir: "/etc/brainbox/profiles/egress".into(),
            revocation_file: String::new(),
            audit_log: String::new(),
            nameservers: Vec::new(),
            refresh_ms: 1000,
            limits: Limits::default(),
        }
    }
}

/// Bounds that keep a hostile agent from exhausting the proxy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Largest upstream response head, in bytes.
    pub max_response_header_bytes: usize,
    /// Time to receive a whole request head once its first byte arrived (slowloris), ms.
    pub header_timeout_ms: u64,
    /// Time a client connection may sit between requests, ms.
    pub idle_timeout_ms: u64,
    /// Time a tunnel may carry nothing in either direction, ms.
    pub tunnel_idle_timeout_ms: u64,
    /// Time to receive a tunnel's ClientHello, ms.
    pub client_hello_timeout_ms: u64,
    /// Largest ClientHello handshake message, bytes.
    pub max_client_hello_bytes: usize,
    /// Time to resolve and connect upstream, ms.
    pub connect_timeout_ms: u64,
    /// Time to wait for upstream response bytes, ms.
    pub upstream_timeout_ms: u64,
    /// Client connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// Upstream connections to one host:port at once.
    pub max_per_destination: usize,
    /// Audit records queued before new ones are dropped (and counted).
    pub audit_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_response_header_bytes: 64 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            tunnel_idle_timeout_ms: 300_000,
            client_hello_timeout_ms: 10_000,
            max_client_hello_bytes: 16 * 1024,
            connect_timeout_ms: 5_000,
            upstream_timeout_ms: 60_000,
            max_connections: 4096,
            max_per_destination: 256,
            audit_queue: 4096,
        }
    }
}

impl Limits {
    /// Milliseconds to a duration.
    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

impl EgressConfig {
    /// Checks addresses and ranges, naming the key under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.listen_addr(prefix)?;
        for (i, ns) in self.nameservers.iter().enumerate() {
            ns.parse::<SocketAddr>().map_err(|e| {
                ConfigError::invalid(
                    format!("{prefix}.nameservers[{i}]"),
                    format!("`{ns}` is not ip:port: {e}"),
                )
            })?;
        }
        if !self.spiffe_id.is_empty() {
            brainbox_profile::egress::check_spiffe_pattern(&self.spiffe_id)
                .map_err(|r| ConfigError::invalid(format!("{prefix}.spiffe_id"), r))?;
        }
        let l = &self.limits;
        let k = |f: &str| format!("{prefix}.limits.{f}");
        let checks: [(&str, bool, &str); 8] = [
            (
                "max_header_bytes",
                (256..=1 << 20).contains(&l.max_header_bytes),
                "256..=1048576",
            ),
            (
                "max_response_header_bytes",
                (256..=1 << 20).contains(&l.max_response_header_bytes),
                "256..=1048576",
            ),
            (
                "max_client_hello_bytes",
                (512..=1 << 17).contains(&l.max_client_hello_bytes),
                "512..=131072",
            ),
            ("max_connections", l.max_connections >= 1, ">= 1"),
            ("max_per_destination", l.max_per_destination >= 1, ">= 1"),
            ("audit_queue", l.audit_queue >= 1, ">= 1"),
            ("header_timeout_ms", l.header_timeout_ms >= 1, ">= 1"),
            ("connect_timeout_ms", l.connect_timeout_ms >= 1, ">= 1"),
        ];
        for (f, ok, want) in checks {
            if !ok {
                return Err(ConfigError::invalid(k(f), format!("must be {want}")));
            }
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self, prefix: &str) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| {
            ConfigError::invalid(
                format!("{prefix}.listen"),
                format!("`{}` is not a socket address: {e}", self.listen),
            )
        })
    }
}

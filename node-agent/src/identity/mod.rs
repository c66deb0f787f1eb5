//! The node agent's SPIFFE Workload API server: the embedded alternative to a SPIRE agent.
//!
//! `attest` maps a caller to its identity, `server` speaks the `SpiffeWorkloadAPI` gRPC service
//! over a Unix socket; the CA, JWT, deny-list and replay pieces come from `brainbox-identity`.

pub mod attest;
pub mod revocations;
pub mod server;

use brainbox_identity::{ca::Ca, denylist::SharedDenyList, jwt::JwtSigner, replay::ReplayCache};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::Deserialize;
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// `[identity]`: the Workload API server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Serve the Workload API (default true). Turn off where a SPIRE agent serves it instead.
    pub enabled: bool,
    /// The Unix socket workloads connect to; its folder is mounted into pods.
    pub socket: PathBuf,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// `{namespace}` in SPIFFE ID templates.
    pub namespace: String,
    /// `[identity.ca]`.
    pub ca: CaConfig,
    /// A YAML deny-list file (`spiffe_ids`, `serials`), watched for changes; empty for none.
    pub deny_list: PathBuf,
    /// Most JWT `jti`s remembered for replay protection (live tokens; full means refuse).
    pub replay_capacity: usize,
    /// With alerts on, how long a starting agent withholds identities while it replays the
    /// revocations pushed over NATS; past it, it serves with the file deny-list and a warning.
    pub revocations_wait_secs: u64,
}

/// Where the root CA key lives.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RootKind {
    /// Generated in memory at start and dropped after signing the intermediate (a lab, or a
    /// single node with no other trust anchor).
    Ephemeral,
    /// A PKCS#8 PEM key file (kept off the node: mounted only for start-up).
    File,
    /// A key inside a PKCS#11 token (HSM, SoftHSM2).
    Pkcs11,
}

/// `[identity.ca]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// `ephemeral`, `file` or `pkcs11`.
    pub root: RootKind,
    /// Root certificate PEM (`file`, `pkcs11`).
    pub root_cert: PathBuf,
    /// Root key PEM (`file`).
    pub root_key: PathBuf,
    /// PKCS#11 module (`pkcs11`), e.g. /usr/lib/softhsm/libsofthsm2.so.
    pub pkcs11_module: PathBuf,
    /// Token label (`pkcs11`).
    pub pkcs11_token: String,
    /// Key label in the token (`pkcs11`).
    pub pkcs11_key_label: String,
    /// Environment variable holding the user PIN (`pkcs11`); never in the file.
    pub pkcs11_pin_env: String,
    /// Lifetime of the intermediate CA in seconds.
    pub intermediate_ttl_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: PathBuf::from("/run/brainbox/identity/agent.sock"),
            trust_domain: "brainbox.local".into(),
            namespace: "default".into(),
            ca: CaConfig::default(),
            deny_list: PathBuf::new(),
            replay_capacity: 100_000,
            revocations_wait_secs: 10,
        }
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            root: RootKind::Ephemeral,
            root_cert: PathBuf::new(),
            root_key: PathBuf::new(),
            pkcs11_module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            pkcs11_token: "brainbox".into(),
            pkcs11_key_label: "brainbox-root".into(),
            pkcs11_pin_env: "BRAINBOX_PKCS11_PIN".into(),
            intermediate_ttl_secs: 7 * 86_400,
        }
    }
}

impl IdentityConfig {
    /// Checks the section; errors name the key.
    pub fn validate(&self) -> Result<(), brainbox_common::config::ConfigError> {
        use brainbox_common::config::ConfigError;
        if !self.enabled {
            return Ok(());
        }
        brainbox_identity::spiffe_id::check_trust_domain(&self.trust_domain)
            .map_err(|e| ConfigError::invalid("identity.trust_domain", e.to_string()))?;
        if self.namespace.is_empty() || self.namespace.contains('/') {
            return Err(ConfigError::invalid(
                "identity.namespace",
                "must be one path segment",
            ));
        }
        if self.socket.as_os_str().is_empty() {
            return Err(ConfigError::invalid("identity.socket", "must be a path"));
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::invalid(
                "identity.replay_capacity",
                "must be at least 1",
            ));
        }
        if self.ca.intermediate_ttl_secs < 600 {
            return Err(ConfigError::invalid(
                "identity.ca.intermediate_ttl_secs",
                "must be at least 600",
            ));
        }
        match self.ca.root {
            RootKind::Ephemeral => {}
            RootKind::File => {
                if self.ca.root_cert.as_os_str().is_empty()
                    || self.ca.root_key.as_os_str().is_empty()
                {
                    return Err(ConfigError::invalid(
                        "identity.ca.root_key",
                        "root = file needs root_cert and root_key",
                    ));
                }
            }
            RootKind::Pkcs11 => {
                if self.ca.root_cert.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        "identity.ca.root_cert",
                        "root = pkcs11 needs root_cert",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Identity counters (`brainbox_identity_*`).
#[derive(Debug, Default)]
pub struct IdentityMetrics {
    /// X.509-SVIDs issued.
    pub x509_issued: Counter,
    /// JWT-SVIDs issued.
    pub jwt_issued: Counter,
    /// JWT-SVIDs refused by `ValidateJWTSVID` (bad, expired, revoked, replayed).
    pub jwt_refused: Counter,
    /// Requests refused for attestation or revocation.
    pub denied: Counter,
}

impl IdentityMetrics {
    /// Registers under `brainbox_identity_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("brainbox_identity");
        r.register(
            "x509_svids_issued",
            "X.509-SVIDs issued",
            self.x509_issued.clone(),
        );
        r.register(
            "jwt_svids_issued",
            "JWT-SVIDs issued",
            self.jwt_issued.clone(),
        );
        r.register(
            "jwt_svids_refused",
            "JWT-SVIDs refused by ValidateJWTSVID",
            self.jwt_refused.clone(),
        );
        r.register(
            "requests_denied",
            "Workload API requests refused (attestation, revocation)",
            self.denied.clone(),
        );
    }
}

/// Errors starting the identity service.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The CA could not be set up.
    #[error("CA: {0}")]
    Ca(String),
    /// The socket could not be bound.
    #[error("Workload API socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The deny-list could not be loaded.
    #[error("deny-list: {0}")]
    DenyList(#[from] brainbox_identity::denylist::DenyListError),
}

/// Builds the CA from the configuration.
pub fn build_ca(cfg: &IdentityConfig) -> Result<Ca, IdentityError> {
    let validity = Duration::from_secs(cfg.ca.intermediate_ttl_secs);
    let err = |e: &dyn std::fmt::Display| IdentityError::Ca(e.to_string());
    match cfg.ca.root {
        RootKind::Ephemeral => Ca::ephemeral(&cfg.trust_domain, validity).map_err(|e| err(&e)),
        RootKind::File => {
            let (cert, key) =
                brainbox_identity::ca::load_root_files(&cfg.ca.root_cert, &cfg.ca.root_key)
                    .map_err(|e| err(&e))?;
            Ca::new_intermediate(&cfg.trust_domain, &cert, &key, validity).map_err(|e| err(&e))
        }
        RootKind::Pkcs11 => {
            let pin = std::env::var(&cfg.ca.pkcs11_pin_env).map_err(|_| {
                IdentityError::Ca(format!("PIN variable {} is not set", cfg.ca.pkcs11_pin_env))
            })?;
            let key = brainbox_identity::pkcs11::Pkcs11Key::open(
                &cfg.ca.pkcs11_module,
                &cfg.ca.pkcs11_token,
                &pin,
                &cfg.ca.pkcs11_key_label,
            )
            .map_err(|e| err(&e))?;
            let text = std::fs::read_to_string(&cfg.ca.root_cert).map_err(|e| err(&e))?;
            let cert = brainbox_identity::ca::pem_decode_first(&text, "CERTIFICATE")
                .ok_or_else(|| IdentityError::Ca("root_cert has no CERTIFICATE".into()))?;
            Ca::new_intermediate(&cfg.trust_domain, &cert, &key, validity).map_err(|e| err(&e))
        }
    }
}

/// A running Workload API server.
pub struct IdentityService {
    /// The server task.
    pub task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// The deny-list (revocations can be pushed into it).
    pub deny: SharedDenyList,
    /// Opens the server once pushed revocations are loaded (see [`start`]'s `hold`).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    _watcher: Option<notify::RecommendedWatcher>,
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, IdentityError> {
    let e = |source| IdentityError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(e)?;
        // Workloads must reach the socket through the mounted folder.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(e)?;
    }
    // A socket left by a previous run would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(x) if x.kind() == std::io::ErrorKind::NotFound => {}
        Err(x) => return Err(e(x)),
    }
    let l = tokio::net::UnixListener::bind(path).map_err(e)?;
    // Anyone may connect: authorisation is attestation, not file permissions (as in SPIRE).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(e)?;
    Ok(l)
}

/// Starts the Workload API server. With `hold`, it answers `Unavailable` until
/// [`IdentityService::ready`] is set (the agent sets it once the revocations pushed over NATS
/// are replayed).
pub fn start(
    cfg: &IdentityConfig,
    attestor: Arc<dyn attest::Attest>,
    metrics: Arc<IdentityMetrics>,
    hold: bool,
) -> Result<IdentityService, IdentityError> {
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(!hold));
    let ca = Arc::new(build_ca(cfg)?);
    let jwt = Arc::new(JwtSigner::generate().map_err(|e| IdentityError::Ca(e.to_string()))?);
    let deny = SharedDenyList::default();
    let watcher = if cfg.deny_list.as_os_str().is_empty() {
        None
    } else {
        Some(deny.watch_file(&cfg.deny_list)?)
    };
    let listener = bind(&cfg.socket)?;
    let api = Arc::new(server::WorkloadApi {
        attestor,
        ca: ca.clone(),
        jwt,
        deny: deny.clone(),
        replay: Arc::new(ReplayCache::new(cfg.replay_capacity)),
        metrics,
        ready: ready.clone(),
    });
    let svc = brainbox_identity::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer::new(
        server::Service(api),
    );
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming),
    );
    tracing::info!(
        socket = %cfg.socket.display(),
        trust_domain = %cfg.trust_domain,
        root = ?cfg.ca.root,
        intermediate_not_after = ca.intermediate_not_after(),
        "Workload API serving"
    );
    Ok(IdentityService {
        task,
        deny,
        ready,
        _watcher: watcher,
    })
}

#[cfg(test)]
mod tests;

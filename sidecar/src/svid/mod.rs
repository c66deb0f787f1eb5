//! The pod's SPIFFE identity: X.509 and JWT SVIDs from the Workload API at
//! `SPIFFE_ENDPOINT_SOCKET` (a SPIRE agent or the brainbox node agent, unchanged), written to a
//! tmpfs atomically (`files`), fed to the sidecar's own rustls configurations (`tls`), with a
//! health check that fails before the SVID expires and metrics for expiry and rotations.
//!
//! When the source fails, the last good SVID stays in place (files, TLS) until it expires;
//! health turns bad once less than `unhealthy_below` of its lifetime remains.

pub mod files;
pub mod tls;

use brainbox_common::config::ConfigError;
use brainbox_identity::{ca::pem_encode, now_unix, x509::parse_svid};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;
use std::{
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::Duration,
};

/// `[svid]`: identity settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SvidConfig {
    /// Fetch and rotate SVIDs (default: on when a Workload API endpoint is known).
    pub enabled: Option<bool>,
    /// Workload API endpoint (`unix:///path`); empty means `SPIFFE_ENDPOINT_SOCKET`.
    pub endpoint: String,
    /// Folder (a tmpfs) for `svid.pem`, `svid_key.pem`, `bundle.pem` and JWTs.
    pub dir: PathBuf,
    /// Audiences to keep a JWT-SVID for, written as `jwt_<audience>.token`.
    pub jwt_audiences: Vec<String>,
    /// Signal sent after each rotation to the process in `reload_pid_file` (e.g. `SIGHUP`).
    pub reload_signal: String,
    /// File holding the pid to signal.
    pub reload_pid_file: PathBuf,
    /// Command run after each rotation (argv; not through a shell).
    pub reload_command: Vec<String>,
    /// `/healthz` fails when less than this fraction of the SVID's lifetime remains.
    pub unhealthy_below: f64,
}

impl Default for SvidConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: String::new(),
            dir: PathBuf::from("/run/svid"),
            jwt_audiences: Vec::new(),
            reload_signal: String::new(),
            reload_pid_file: PathBuf::new(),
            reload_command: Vec::new(),
            unhealthy_below: 0.25,
        }
    }
}

impl SvidConfig {
    /// The endpoint to use, if any.
    pub fn endpoint(&self) -> Option<String> {
        if !self.endpoint.is_empty() {
            return Some(self.endpoint.clone());
        }
        std::env::var("SPIFFE_ENDPOINT_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Whether SVIDs are fetched.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or_else(|| self.endpoint().is_some())
    }

    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.is_enabled() {
            return Ok(());
        }
        match self.endpoint() {
            Some(e) if e.starts_with("unix:") || e.starts_with("tcp:") => {}
            Some(e) => {
                return Err(ConfigError::invalid(
                    "svid.endpoint",
                    format!("`{e}` must be unix:///path or tcp://ip:port"),
                ))
            }
            None => {
                return Err(ConfigError::invalid(
                    "svid.endpoint",
                    "set it or SPIFFE_ENDPOINT_SOCKET",
                ))
            }
        }
        if !(0.0..1.0).contains(&self.unhealthy_below) {
            return Err(ConfigError::invalid(
                "svid.unhealthy_below",
                "must be in [0, 1)",
            ));
        }
        if !self.reload_signal.is_empty() {
            parse_signal(&self.reload_signal)
                .map_err(|e| ConfigError::invalid("svid.reload_signal", e))?;
            if self.reload_pid_file.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    "svid.reload_pid_file",
                    "needed with reload_signal",
                ));
            }
        }
        for a in &self.jwt_audiences {
            if a.is_empty() || a.len() > 128 {
                return Err(ConfigError::invalid(
                    "svid.jwt_audiences",
                    "audiences are 1-128 characters",
                ));
            }
        }
        Ok(())
    }
}

fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    name.parse().map_err(|_| format!("unknown signal `{s}`"))
}

/// Errors of the rotation loop.
#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    /// The Workload API source could not be created.
    #[error("Workload API: {0}")]
    Source(String),
}

/// Identity metrics (`brainbox_sidecar_svid_*`).
#[derive(Debug, Default, Clone)]
pub struct SvidMetrics {
    /// Seconds until the current X.509-SVID expires.
    pub expiry_seconds: Gauge<f64, AtomicU64>,
    /// SVIDs installed.
    pub rotations: Counter,
    /// Failed updates (bad SVID from the source, failed writes).
    pub errors: Counter,
    /// JWT-SVIDs written.
    pub jwt_writes: Counter,
}

impl SvidMetrics {
    /// Registers under `brainbox_sidecar_svid`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("brainbox_sidecar_svid");
        r.register(
            "expiry_seconds",
            "Seconds until the current X.509-SVID expires",
            self.expiry_seconds.clone(),
        );
        r.register("rotations", "X.509-SVIDs installed", self.rotations.clone());
        r.register(
            "errors",
            "Failed SVID updates (kept the last good SVID)",
            self.errors.clone(),
        );
        r.register("jwt_writes", "JWT-SVIDs written", self.jwt_writes.clone());
    }
}

#[derive(Debug, Clone, Default)]
struct Current {
    spiffe_id: String,
    not_after: i64,
    received_at: i64,
}

/// The pod's identity: current SVID for TLS, status for health and metrics.
#[derive(Debug)]
pub struct Identity {
    /// The store the TLS resolver and verifier read.
    pub store: Arc<tls::SvidStore>,
    /// The crypto provider (ring) used for everything.
    pub provider: Arc<rustls::crypto::CryptoProvider>,
    /// Metrics.
    pub metrics: SvidMetrics,
    current: Mutex<Option<Current>>,
    unhealthy_below: f64,
}

impl Identity {
    /// A new, empty identity.
    pub fn new(unhealthy_below: f64) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::default(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            metrics: SvidMetrics::default(),
            current: Mutex::new(None),
            unhealthy_below,
        })
    }

    /// `/healthz`: healthy while an SVID is installed and more than `unhealthy_below` of its
    /// lifetime remains.
    pub fn health(&self) -> (bool, String) {
        let cur = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(c) = cur else {
            return (false, "no SVID yet".into());
        };
        let now = now_unix() as i64;
        let remaining = c.not_after - now;
        let lifetime = (c.not_after - c.received_at).max(1);
        self.metrics.expiry_seconds.set(remaining as f64);
        if (remaining as f64) < self.unhealthy_below * lifetime as f64 {
            (
                false,
                format!("SVID {} expires in {remaining} s", c.spiffe_id),
            )
        } else {
            (
                true,
                format!("SVID {} valid for {remaining} s", c.spiffe_id),
            )
        }
    }

    /// The current SPIFFE ID.
    pub fn spiffe_id(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.spiffe_id.clone())
    }

    /// Installs an SVID from the Workload API: checks it, swaps it into TLS, writes the files.
    /// On any error the previous SVID stays.
    pub fn install(
        &self,
        cfg: &SvidConfig,
        chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
        bundle: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let leaf = chain.first().ok_or("empty chain")?;
        let parsed = parse_svid(leaf).map_err(|e| e.to_string())?;
        let now = now_unix() as i64;
        if parsed.not_after <= now {
            return Err("SVID already expired".into());
        }
        let chain_pem = pem_encode(
            "CERTIFICATE",
            &chain.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        let bundle_pem = pem_encode(
            "CERTIFICATE",
            &bundle.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        let key_pem = pem_encode("PRIVATE KEY", &[&key_pkcs8]);
        self.store
            .install(&self.provider, chain, key_pkcs8, bundle)
            .map_err(|e| e.to_string())?;
        files::publish(&cfg.dir, &chain_pem, &key_pem, &bundle_pem)
            .map_err(|e| format!("writing {}: {e}", cfg.dir.display()))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            spiffe_id: parsed.spiffe_id.to_string(),
            not_after: parsed.not_after,
            received_at: now,
        });
        self.metrics.rotations.inc();
        self.metrics
            .expiry_seconds
            .set((parsed.not_after - now) as f64);
        tracing::info!(spiffe_id = %parsed.spiffe_id, serial = %parsed.serial_hex, expires_in_s = parsed.not_after - now, "SVID installed");
        Ok(())
    }
}

fn run_reload_hooks(cfg: &SvidConfig) {
    if !cfg.reload_signal.is_empty() {
        let sent = parse_signal(&cfg.reload_signal).and_then(|sig| {
            let text = std::fs::read_to_string(&cfg.reload_pid_file).map_err(|e| e.to_string())?;
            let pid: i32 = text
                .trim()
                .parse()
                .map_err(|_| format!("bad pid `{}`", text.trim()))?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| e.to_string())
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "reload signal not sent");
        }
    }
    if let Some((prog, args)) = cfg.reload_command.split_first() {
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args).kill_on_drop(true);
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(30), cmd.status()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => tracing::warn!(status = %s, "reload command failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "reload command did not start"),
                Err(_) => tracing::warn!("reload command timed out"),
            }
        });
    }
}

fn sanitize(aud: &str) -> String {
    aud.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Keeps the X.509-SVID current until the process ends: every update from the source is
/// installed; a failed or withdrawn update keeps the last good one.
pub async fn run(cfg: SvidConfig, identity: Arc<Identity>) -> Result<(), SvidError> {
    let endpoint = cfg
        .endpoint()
        .ok_or_else(|| SvidError::Source("no endpoint".into()))?;
    // The Workload API may refuse us until the node agent has seen our container start, or be
    // down for a while: keep trying (health says why) instead of exiting.
    let mut backoff = Duration::from_millis(500);
    let source = loop {
        match spiffe::X509Source::builder()
            .endpoint(&endpoint)
            .build()
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                identity.metrics.errors.inc();
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Workload API not ready");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let mut updates = source.updated();
    if !cfg.jwt_audiences.is_empty() {
        tokio::spawn(run_jwt(cfg.clone(), endpoint.clone(), identity.clone()));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                r = updates.changed() => {
                    if r.is_err() {
                        identity.metrics.errors.inc();
                        tracing::error!("Workload API source closed; keeping the last SVID");
                        // Keep serving health and metrics until the SVID runs out.
                        loop { tick.tick().await; identity.health(); }
                    }
                }
                _ = tick.tick() => { identity.health(); continue; }
            }
        }
        first = false;
        let update = source.svid().and_then(|svid| {
            let bundle = source
                .bundle_set()?
                .get(svid.spiffe_id().trust_domain())
                .map(|b| {
                    b.authorities()
                        .iter()
                        .map(|c| c.as_bytes().to_vec())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            Ok((svid, bundle))
        });
        match update {
            Ok((svid, bundle)) => {
                let chain = svid
                    .cert_chain()
                    .iter()
                    .map(|c| c.as_bytes().to_vec())
                    .collect();
                let key = svid.private_key().as_bytes().to_vec();
                match identity.install(&cfg, chain, key, bundle) {
                    Ok(()) => run_reload_hooks(&cfg),
                    Err(e) => {
                        identity.metrics.errors.inc();
                        tracing::warn!(error = %e, "SVID update refused; keeping the last good SVID");
                    }
                }
            }
            Err(e) => {
                identity.metrics.errors.inc();
                tracing::warn!(error = %e, "no SVID from the source; keeping the last good SVID");
            }
        }
    }
}

/// Keeps one JWT-SVID per configured audience on disk, refreshed at half its lifetime.
async fn run_jwt(cfg: SvidConfig, endpoint: String, identity: Arc<Identity>) {
    let source = match spiffe::JwtSource::builder()
        .endpoint(&endpoint)
        .build()
        .await
    {
        Ok(s) => s,
        Err(e) => {
            identity.metrics.errors.inc();
            tracing::error!(error = %e, "JWT source unavailable");
            return;
        }
    };
    loop {
        let mut next = Duration::from_secs(30);
        for aud in &cfg.jwt_audiences {
            match source.fetch_jwt_svid([aud.as_str()]).await {
                Ok(svid) => {
                    let path = cfg.dir.join(format!("jwt_{}.token", sanitize(aud)));
                    match files::write_atomic(&path, svid.token().as_bytes(), 0o600) {
                        Ok(()) => {
                            identity.metrics.jwt_writes.inc();
                        }
                        Err(e) => {
                            identity.metrics.errors.inc();
                            tracing::warn!(error = %e, "writing JWT-SVID");
                        }
                    }
                    let left = svid.expiry().unix_timestamp() - now_unix() as i64;
                    next = next.min(Duration::from_secs((left.max(2) / 2) as u64));
                }
                Err(e) => {
                    identity.metrics.errors.inc();
                    next = Duration::from_secs(2);
                    tracing::warn!(error = %e, audience = %aud, "JWT-SVID fetch failed; keeping the last one");
                }
            }
        }
        tokio::time::sleep(next).await;
    }
}

/// One fetch from the Workload API, for operators and probes (`brainbox-sidecar svid-fetch`):
/// the X.509-SVID's ID and remaining lifetime, and with `audience` a JWT-SVID (for `spiffe_id`
/// if given). Errors carry the server's status (e.g. `PermissionDenied`).
pub async fn fetch_once(
    endpoint: &str,
    audience: Option<&str>,
    spiffe_id: Option<&str>,
) -> Result<serde_json::Value, String> {
    let client = spiffe::WorkloadApiClient::connect_to(endpoint)
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let mut out = serde_json::Map::new();
    if let Some(aud) = audience {
        let want = spiffe_id
            .map(|s| s.parse::<spiffe::SpiffeId>().map_err(|e| e.to_string()))
            .transpose()?;
        let jwt = client
            .fetch_jwt_svid([aud], want.as_ref())
            .await
            .map_err(|e| format!("FetchJWTSVID: {e}"))?;
        out.insert("jwt_spiffe_id".into(), jwt.spiffe_id().to_string().into());
        out.insert(
            "jwt_expires_in_s".into(),
            (jwt.expiry().unix_timestamp() - now_unix() as i64).into(),
        );
    }
    let svid = client
        .fetch_x509_svid()
        .await
        .map_err(|e| format!("FetchX509SVID: {e}"))?;
    let leaf = parse_svid(svid.leaf().as_bytes()).map_err(|e| e.to_string())?;
    out.insert("spiffe_id".into(), svid.spiffe_id().to_string().into());
    out.insert("serial".into(), leaf.serial_hex.into());
    out.insert(
        "expires_in_s".into(),
        (leaf.not_after - now_unix() as i64).into(),
    );
    Ok(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse() {
        assert_eq!(
            parse_signal("HUP").unwrap(),
            nix::sys::signal::Signal::SIGHUP
        );
        assert_eq!(
            parse_signal("SIGUSR1").unwrap(),
            nix::sys::signal::Signal::SIGUSR1
        );
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let c = SvidConfig {
            enabled: Some(true),
            endpoint: "http://x".into(),
            ..SvidConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("svid.endpoint"));
        let c = SvidConfig {
            enabled: Some(true),
            endpoint: "unix:///tmp/x.sock".into(),
            reload_signal: "HUP".into(),
            ..SvidConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("svid.reload_pid_file"));
    }

    #[test]
    fn install_refuses_garbage_and_keeps_the_last_good_svid() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SvidConfig {
            dir: dir.path().to_owned(),
            ..SvidConfig::default()
        };
        let id = Identity::new(0.25);
        assert!(!id.health().0);
        let ca = brainbox_identity::ca::Ca::ephemeral("t.test", Duration::from_secs(3600)).unwrap();
        let sid = brainbox_identity::spiffe_id::SpiffeId::parse("spiffe://t.test/a").unwrap();
        let s = ca.issue_x509(&sid, Duration::from_secs(100)).unwrap();
        id.install(
            &cfg,
            s.chain.clone(),
            s.key_pkcs8.clone(),
            vec![ca.root_der().to_vec()],
        )
        .unwrap();
        assert!(id.health().0, "{:?}", id.health());
        // A key that does not match the certificate is refused; the good SVID stays.
        let other = ca.issue_x509(&sid, Duration::from_secs(100)).unwrap();
        assert!(id
            .install(
                &cfg,
                s.chain.clone(),
                other.key_pkcs8,
                vec![ca.root_der().to_vec()]
            )
            .is_err());
        assert!(id
            .install(&cfg, vec![b"junk".to_vec()], vec![], vec![])
            .is_err());
        let on_disk = std::fs::read_to_string(dir.path().join(files::SVID_FILE)).unwrap();
        assert_eq!(
            on_disk,
            pem_encode("CERTIFICATE", &[&s.chain[0], &s.chain[1]])
        );
        assert_eq!(id.metrics.rotations.get(), 1);
        // Health turns bad before expiry: with 12 s of a 100 s lifetime left, it is bad.
        let short = ca.issue_x509(&sid, Duration::from_secs(12)).unwrap();
        id.install(
            &cfg,
            short.chain,
            short.key_pkcs8,
            vec![ca.root_der().to_vec()],
        )
        .unwrap();
        {
            let mut c = id.current.lock().unwrap();
            c.as_mut().unwrap().received_at -= 88;
        }
        let (ok, why) = id.health();
        assert!(!ok, "{why}");
    }
}

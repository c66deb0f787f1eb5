//! What every request reads first: the pod's identity, whether it is revoked, and its policy.

use super::{
    identity::{IdentitySource, RevocationList},
    policy::Policy,
    EgressConfig,
};
use brainbox_profile::egress::{EgressPolicy, EgressPolicySet};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

/// The pod's current identity and policy, swapped as a whole when anything changes.
#[derive(Debug, Default)]
pub struct Current {
    /// The pod's SPIFFE ID.
    pub id: Option<Arc<str>>,
    /// The ID is on the deny-list.
    pub revoked: bool,
    /// The ID's policy.
    pub policy: Option<Arc<Policy>>,
    source: Option<EgressPolicy>,
}

impl Current {
    /// The policy and ID to decide with, or the reason everything is refused.
    pub fn gate(&self) -> Result<(&Arc<Policy>, &Arc<str>), &'static str> {
        let id = self.id.as_ref().ok_or("no-identity")?;
        if self.revoked {
            return Err("identity-revoked");
        }
        let p = self.policy.as_ref().ok_or("no-policy")?;
        Ok((p, id))
    }
}

/// Keeps [`Current`] up to date from the identity source, the deny-list and the policy folder.
pub struct Egress {
    current: RwLock<Arc<Current>>,
    identity: Arc<dyn IdentitySource>,
    revocations: std::sync::Mutex<RevocationList>,
    policy_dir: PathBuf,
}

impl Egress {
    pub(crate) fn new(cfg: &EgressConfig, identity: Arc<dyn IdentitySource>) -> Self {
        let rev = (!cfg.revocation_file.is_empty()).then(|| Path::new(&cfg.revocation_file));
        Self {
            current: RwLock::new(Arc::new(Current::default())),
            identity,
            revocations: std::sync::Mutex::new(RevocationList::new(rev)),
            policy_dir: PathBuf::from(&cfg.policy_dir),
        }
    }

    /// The current state (one read lock and one reference count per request).
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads identity, deny-list and policies; keeps the last good value of each that fails.
    pub fn refresh(&self) -> Result<(), super::EgressError> {
        let old = self.current();
        let id = match self.identity.spiffe_id() {
            Ok(id) => id.map(Arc::<str>::from),
            Err(e) => {
                tracing::warn!(error = %e, "egress: identity unavailable, keeping the last one");
                old.id.clone()
            }
        };
        let revoked = {
            let mut rev = self.revocations.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = rev.refresh() {
                tracing::warn!(error = %e, "egress: deny-list unreadable, keeping the last one");
            }
            id.as_deref().is_some_and(|i| rev.is_revoked(i))
        };
        let set = match std::fs::metadata(&self.policy_dir) {
            Ok(_) => Some(EgressPolicySet::load_dir(&self.policy_dir)),
            Err(_) => None,
        };
        let source = match set {
            Some(Ok(set)) => id.as_deref().and_then(|i| set.select(i)).cloned(),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "egress: policy folder invalid, keeping the last policy");
                old.source.clone()
            }
            None => None,
        };
        let changed = old.id != id || old.revoked != revoked || old.source != source;
        if changed {
            if revoked && !old.revoked {
                tracing::warn!(spiffe_id = ?id, "egress: this pod's identity is revoked; refusing all egress");
            }
            let policy = source.as_ref().map(|p| Arc::new(Policy::compile(p)));
            tracing::info!(
                spiffe_id = ?id,
                revoked,
                policy = ?source.as_ref().map(|p| p.name.as_str()),
                "egress: identity or policy changed"
            );
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Current {
                id,
                revoked,
                policy,
                source,
            });
        }
        Ok(())
    }
}

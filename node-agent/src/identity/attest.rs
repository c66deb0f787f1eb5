//! Workload attestation: the caller's pid (from `SO_PEERCRED`, in the host pid namespace) →
//! its cgroup → the container that owns the cgroup → the container's profile → the SPIFFE ID
//! the profile's template gives it. A caller that maps to nothing gets nothing.

use crate::runtime::{cgroup, ContainerInfo, ContainerTable};
use brainbox_identity::spiffe_id::{render_template, SpiffeId};
use brainbox_profile::ProfileSet;
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// Why a caller got no identity. Every variant is `PermissionDenied` on the wire.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The connection carried no peer credentials.
    #[error("no peer credentials on the connection")]
    NoPeer,
    /// The pid's cgroup could not be read (the process may have exited).
    #[error("cgroup of pid {pid}: {reason}")]
    Cgroup { pid: u32, reason: String },
    /// The pid is in no known (watched) container.
    #[error("pid {0} is not in a known container")]
    UnknownContainer(u32),
    /// The container's profile has no `identity` section (or the profile is unknown).
    #[error("profile `{0}` of the caller's container grants no identity")]
    NoIdentity(String),
    /// The container's pod role is not one the profile gives the identity to.
    #[error(
        "role `{role}` of container {container} does not get the identity of profile `{profile}`"
    )]
    Role {
        role: String,
        container: String,
        profile: String,
    },
    /// The template did not render to a valid SPIFFE ID.
    #[error("SPIFFE ID template: {0}")]
    Template(String),
}

/// What an attested caller is entitled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// Its one SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The container it runs in (for logs).
    pub container: String,
    /// X.509-SVID lifetime.
    pub x509_ttl: Duration,
    /// JWT-SVID lifetime.
    pub jwt_ttl: Duration,
    /// JWT audiences it may ask for; empty means any.
    pub audiences: Vec<String>,
}

/// Something that maps a caller's pid to its identity.
pub trait Attest: Send + Sync + 'static {
    /// Attests the process `pid`.
    fn attest(&self, pid: u32) -> Result<Attested, AttestError>;
}

/// The real attestor: cgroups and the container table.
pub struct CgroupAttestor {
    /// cgroup2 mount point.
    pub cgroup2: PathBuf,
    /// Containers by cgroup id.
    pub table: ContainerTable,
    /// Profiles by name.
    pub profiles: Arc<ProfileSet>,
    /// `{trust_domain}`.
    pub trust_domain: String,
    /// `{namespace}`.
    pub namespace: String,
}

/// Deepest number of cgroup levels walked up from a process's cgroup to its container's.
const MAX_CGROUP_DEPTH: usize = 8;

impl CgroupAttestor {
    /// The container owning `dir` (the process's cgroup or one of its ancestors: processes in
    /// sub-cgroups a container creates still belong to it).
    fn container_of(&self, dir: &Path, id: u64) -> Option<Arc<ContainerInfo>> {
        if let Some(c) = self.table.get(id) {
            return Some(c);
        }
        let mut cur = dir.parent();
        for _ in 0..MAX_CGROUP_DEPTH {
            let d = cur?;
            if !d.starts_with(&self.cgroup2) || d == self.cgroup2 {
                return None;
            }
            if let Ok(m) = std::fs::metadata(d) {
                if let Some(c) = self.table.get(m.ino()) {
                    return Some(c);
                }
            }
            cur = d.parent();
        }
        None
    }
}

/// Renders the identity of a known container.
pub fn identity_of(
    c: &ContainerInfo,
    profiles: &ProfileSet,
    trust_domain: &str,
    namespace: &str,
) -> Result<Attested, AttestError> {
    let profile = profiles
        .get(&c.profile)
        .ok_or_else(|| AttestError::NoIdentity(c.profile.clone()))?;
    let ident = profile
        .identity
        .as_ref()
        .ok_or_else(|| AttestError::NoIdentity(c.profile.clone()))?;
    let role = c.role.clone().unwrap_or_default();
    if !ident.roles.is_empty() && !ident.roles.contains(&role) {
        return Err(AttestError::Role {
            role,
            container: c.name.clone(),
            profile: c.profile.clone(),
        });
    }
    let pod = c.pod.clone().unwrap_or_else(|| c.name.clone());
    // Kubernetes containers carry their namespace; Docker lab containers use the configured one.
    let namespace = c.namespace.as_deref().unwrap_or(namespace);
    let spiffe_id = render_template(
        &ident.spiffe_id,
        &[
            ("trust_domain", trust_domain),
            ("namespace", namespace),
            ("pod", &pod),
            ("name", &c.name),
            ("role", &role),
            ("profile", &c.profile),
        ],
    )
    .map_err(AttestError::Template)?;
    Ok(Attested {
        spiffe_id,
        container: c.id.clone(),
        x509_ttl: Duration::from_secs(ident.x509_ttl_secs),
        jwt_ttl: Duration::from_secs(ident.jwt_ttl_secs),
        audiences: ident.audiences.clone(),
    })
}

impl Attest for CgroupAttestor {
    fn attest(&self, pid: u32) -> Result<Attested, AttestError> {
        if pid == 0 {
            return Err(AttestError::NoPeer);
        }
        let (dir, id) =
            cgroup::cgroup_of_pid(&self.cgroup2, pid).map_err(|e| AttestError::Cgroup {
                pid,
                reason: e.to_string(),
            })?;
        let c = self
            .container_of(&dir, id)
            .ok_or(AttestError::UnknownContainer(pid))?;
        identity_of(&c, &self.profiles, &self.trust_domain, &self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainbox_profile::Profile;

    fn profiles() -> Arc<ProfileSet> {
        let mut set = ProfileSet::default();
        let p = Profile::from_yaml(
            "name: default\nzone: untrusted\nidentity: {}\n",
            Path::new("default.yaml"),
        )
        .unwrap();
        set.insert(p, "default.yaml".into()).unwrap();
        let p =
            Profile::from_yaml("name: bare\nzone: untrusted\n", Path::new("bare.yaml")).unwrap();
        set.insert(p, "bare.yaml".into()).unwrap();
        Arc::new(set)
    }

    fn info(cg: u64, profile: &str, role: &str) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "p1-sidecar".into(),
            image: "i".into(),
            image_id: "sha256:x".into(),
            profile: profile.into(),
            pod: Some("p1".into()),
            role: Some(role.into()),
            cgroup_id: cg,
            namespace: None,
            pod_uid: None,
            cgroup_dir: std::path::PathBuf::new(),
            writable: None,
            privileged: false,
            init_pid: 0,
            start_ts: None,
        }
    }

    fn attestor(table: ContainerTable) -> CgroupAttestor {
        CgroupAttestor {
            cgroup2: cgroup::cgroup2_mount().unwrap(),
            table,
            profiles: profiles(),
            trust_domain: "brainbox.test".into(),
            namespace: "default".into(),
        }
    }

    #[test]
    fn own_process_attests_through_its_cgroup() {
        let mount = cgroup::cgroup2_mount().unwrap();
        let (_, cg) = cgroup::cgroup_of_pid(&mount, std::process::id()).unwrap();
        let table = ContainerTable::default();
        let a = attestor(table.clone());
        assert!(matches!(
            a.attest(std::process::id()),
            Err(AttestError::UnknownContainer(_))
        ));
        table.insert(info(cg, "default", "sidecar"));
        let got = a.attest(std::process::id()).unwrap();
        assert_eq!(
            got.spiffe_id.as_str(),
            "spiffe://brainbox.test/ns/default/brainbox/p1"
        );
        assert_eq!(got.x509_ttl, Duration::from_secs(300));
    }

    #[test]
    fn agent_role_profile_without_identity_and_dead_pid_are_refused() {
        let mount = cgroup::cgroup2_mount().unwrap();
        let (_, cg) = cgroup::cgroup_of_pid(&mount, std::process::id()).unwrap();
        let table = ContainerTable::default();
        let a = attestor(table.clone());
        table.insert(info(cg, "default", "agent"));
        assert!(matches!(
            a.attest(std::process::id()),
            Err(AttestError::Role { .. })
        ));
        table.insert(info(cg, "bare", "sidecar"));
        assert!(matches!(
            a.attest(std::process::id()),
            Err(AttestError::NoIdentity(_))
        ));
        table.insert(info(cg, "gone", "sidecar"));
        assert!(matches!(
            a.attest(std::process::id()),
            Err(AttestError::NoIdentity(_))
        ));
        assert!(matches!(a.attest(0), Err(AttestError::NoPeer)));
        assert!(matches!(
            a.attest(u32::MAX - 1),
            Err(AttestError::Cgroup { .. })
        ));
    }
}

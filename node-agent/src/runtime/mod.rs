//! Which container a cgroup is: a bounded table fed by the container runtime (Docker today;
//! Kubernetes pod metadata arrives through the same [`ContainerInfo`]).

pub mod cgroup;
pub mod docker;
pub mod kube;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::{Arc, RwLock},
};

/// What a runtime knows about a watched container when it starts.
pub struct ContainerStart<'a> {
    /// The container.
    pub info: &'a ContainerInfo,
    /// Its cgroup v2 directory.
    pub cgroup_dir: &'a Path,
    /// Addresses of its own network namespace (empty when it joins another container's).
    pub addrs: &'a [IpAddr],
    /// All its labels.
    pub labels: &'a HashMap<String, String>,
}

/// Something that acts on watched containers coming and going (network zones attach here).
pub trait ContainerObserver: Send + Sync {
    /// A watched container started (or was found running at start-up).
    fn started(&self, c: &ContainerStart<'_>);
    /// A watched container stopped.
    fn stopped(&self, container_id: &str, cgroup_id: u64);
    /// The initial list of running containers has been delivered.
    fn synced(&self) {}
}

/// What the agent knows about a watched container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Image reference as started (`brainbox-lab/busybox:1`).
    pub image: String,
    /// Image id (content digest) at start: the known-good baseline.
    pub image_id: String,
    /// Profile name from the `brainbox.io/profile` label.
    pub profile: String,
    /// Pod name from the `brainbox.io/pod` label, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Kubernetes namespace (kubelet's `io.kubernetes.pod.namespace` label), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kubernetes pod UID (kubelet's `io.kubernetes.pod.uid` label), if any: a recycle deletes
    /// the pod only if it is still this one.
    #[serde(skip)]
    pub pod_uid: Option<String>,
    /// Role in the pod (`agent`, `sidecar`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// cgroup v2 id.
    #[serde(skip)]
    pub cgroup_id: u64,
    /// cgroup v2 directory (for freeze and kill).
    #[serde(skip)]
    pub cgroup_dir: std::path::PathBuf,
    /// The container's writable layer on the host, if it has one.
    #[serde(skip)]
    pub writable: Option<crate::process::WritableLayer>,
    /// Whether the container runs privileged.
    #[serde(skip)]
    pub privileged: bool,
    /// Host pid of the container's init process (its root file system outlives short processes).
    #[serde(skip)]
    pub init_pid: u32,
    /// When the container started, ns since the epoch (`container.start_ts`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<i64>,
}

impl ContainerInfo {
    /// Whether `other` is in the same pod: the same pod name in the same namespace (Kubernetes
    /// pod names are only unique within a namespace), and the same pod UID when both have one
    /// (a pod deleted and recreated under its name is another pod). A container without a pod
    /// is in no pod, not even with itself.
    pub fn same_pod(&self, other: &ContainerInfo) -> bool {
        let uid_ok = match (&self.pod_uid, &other.pod_uid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.pod.is_some() && self.pod == other.pod && self.namespace == other.namespace && uid_ok
    }
}

/// The container table: cgroup id → container, bounded.
#[derive(Default, Clone)]
pub struct ContainerTable {
    inner: Arc<RwLock<HashMap<u64, Arc<ContainerInfo>>>>,
}

/// Most containers the table holds; past this, new containers are refused (and logged) rather
/// than growing without bound.
pub const MAX_CONTAINERS: usize = 65_536;

impl ContainerTable {
    /// Adds or replaces a container. Returns false when the table is full.
    pub fn insert(&self, info: ContainerInfo) -> bool {
        let mut map = self.inner.write().expect("container table lock");
        if map.len() >= MAX_CONTAINERS && !map.contains_key(&info.cgroup_id) {
            return false;
        }
        map.insert(info.cgroup_id, Arc::new(info));
        true
    }

    /// Removes the container with this id; returns its cgroup id if it was known.
    pub fn remove_by_id(&self, id: &str) -> Option<u64> {
        let mut map = self.inner.write().expect("container table lock");
        let cg = map.iter().find(|(_, c)| c.id == id).map(|(cg, _)| *cg)?;
        map.remove(&cg);
        Some(cg)
    }

    /// The container whose cgroup is `cgroup_id`.
    pub fn get(&self, cgroup_id: u64) -> Option<Arc<ContainerInfo>> {
        self.inner
            .read()
            .expect("container table lock")
            .get(&cgroup_id)
            .cloned()
    }

    /// Every container, in no particular order.
    pub fn all(&self) -> Vec<Arc<ContainerInfo>> {
        self.inner
            .read()
            .expect("container table lock")
            .values()
            .cloned()
            .collect()
    }

    /// Number of containers.
    pub fn len(&self) -> usize {
        self.inner.read().expect("container table lock").len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, cg: u64) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: id.into(),
            image: "i".into(),
            image_id: "sha256:x".into(),
            profile: "default".into(),
            pod: None,
            namespace: None,
            pod_uid: None,
            role: None,
            cgroup_id: cg,
            cgroup_dir: std::path::PathBuf::new(),
            writable: None,
            privileged: false,
            init_pid: 0,
            start_ts: None,
        }
    }

    #[test]
    fn insert_get_remove() {
        let t = ContainerTable::default();
        assert!(t.insert(info("a", 1)));
        assert!(t.insert(info("b", 2)));
        assert_eq!(t.get(1).unwrap().id, "a");
        assert_eq!(t.remove_by_id("a"), Some(1));
        assert!(t.get(1).is_none());
        assert_eq!(t.remove_by_id("zz"), None);
        assert_eq!(t.len(), 1);
    }
    #[test]
    fn pods_are_told_apart_by_namespace_and_uid() {
        let pod = |id: &str, ns: Option<&str>, uid: Option<&str>| ContainerInfo {
            pod: Some("agent-0".into()),
            namespace: ns.map(Into::into),
            pod_uid: uid.map(Into::into),
            ..info(id, 1)
        };
        let a = pod("a", Some("team-a"), Some("u1"));
        assert!(a.same_pod(&pod("sidecar", Some("team-a"), Some("u1"))));
        assert!(a.same_pod(&pod("no-uid", Some("team-a"), None)));
        // Same pod name, other namespace: another tenant's pod.
        assert!(!a.same_pod(&pod("b", Some("team-b"), Some("u1"))));
        assert!(!a.same_pod(&pod("b", None, None)));
        // Same name and namespace, other UID: the pod was recreated.
        assert!(!a.same_pod(&pod("old", Some("team-a"), Some("u0"))));
        // No pod at all: alone.
        assert!(!info("x", 2).same_pod(&info("y", 3)));
        assert!(!info("x", 2).same_pod(&info("x", 2)));
    }
}

//! A Workload API server in the test process, attesting callers through their real cgroup:
//! the test process's own cgroup is registered as a container with a test profile, so the test
//! and its child processes (the Python client) get that profile's identity.
#![allow(dead_code)]

use brainbox_node_agent::{
    identity::{self, attest::CgroupAttestor, IdentityConfig, IdentityMetrics, IdentityService},
    runtime::{cgroup, ContainerInfo, ContainerTable},
};
use brainbox_profile::{Profile, ProfileSet};
use std::{path::PathBuf, sync::Arc};

pub const TRUST_DOMAIN: &str = "interop.test";

pub struct LocalApi {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub svc: IdentityService,
    pub metrics: Arc<IdentityMetrics>,
    pub spiffe_id: String,
}

impl LocalApi {
    /// `unix:///…` for clients.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Starts the server (inside a Tokio runtime) with X.509 TTL `ttl_secs` for pod `pod`.
pub fn start(pod: &str, ttl_secs: u64) -> LocalApi {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("workload/agent.sock");
    let mut profiles = ProfileSet::default();
    let yaml = format!(
        "name: idtest\nzone: untrusted\nidentity:\n  x509_ttl_secs: {ttl_secs}\n  jwt_ttl_secs: 60\n  roles: []\n"
    );
    profiles
        .insert(
            Profile::from_yaml(&yaml, std::path::Path::new("idtest.yaml")).unwrap(),
            "idtest.yaml".into(),
        )
        .unwrap();
    let mount = cgroup::cgroup2_mount().unwrap();
    let (_, cg) = cgroup::cgroup_of_pid(&mount, std::process::id()).unwrap();
    let table = ContainerTable::default();
    table.insert(ContainerInfo {
        id: "test-process".into(),
        name: "test-process".into(),
        image: "none".into(),
        image_id: "none".into(),
        profile: "idtest".into(),
        pod: Some(pod.into()),
        role: None,
        cgroup_id: cg,
        namespace: None,
        pod_uid: None,
        cgroup_dir: std::path::PathBuf::new(),
        writable: None,
        privileged: false,
        init_pid: 0,
        start_ts: None,
    });
    let cfg = IdentityConfig {
        socket: socket.clone(),
        trust_domain: TRUST_DOMAIN.into(),
        ..IdentityConfig::default()
    };
    let attestor = CgroupAttestor {
        cgroup2: mount,
        table,
        profiles: Arc::new(profiles),
        trust_domain: cfg.trust_domain.clone(),
        namespace: cfg.namespace.clone(),
    };
    let metrics = Arc::new(IdentityMetrics::default());
    let svc = identity::start(&cfg, Arc::new(attestor), metrics.clone(), false).unwrap();
    LocalApi {
        dir,
        socket,
        svc,
        metrics,
        spiffe_id: format!("spiffe://{TRUST_DOMAIN}/ns/default/brainbox/{pod}"),
    }
}

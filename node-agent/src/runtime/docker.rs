//! The Docker source of the container table: lists running containers, then follows the event
//! stream. Containers carrying the profile label are added to the table and the kernel watch list.

use super::{cgroup, ContainerInfo, ContainerObserver, ContainerStart, ContainerTable};
use crate::{metrics::AgentMetrics, sensor::WatchList};
use bollard::{
    query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder},
    Docker,
};
use brainbox_profile::{ProfileSet, POD_LABEL, PROFILE_LABEL, ROLE_LABEL};
use futures_util::StreamExt;
use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

/// Errors talking to Docker.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon is not reachable.
    #[error("cannot reach the Docker daemon at {socket}: {source} (is dockerd running?)")]
    Connect {
        socket: PathBuf,
        #[source]
        source: bollard::errors::Error,
    },
    /// An API call failed.
    #[error("Docker API: {0}")]
    Api(#[from] bollard::errors::Error),
}

/// Connects to the Docker socket and checks that the daemon answers.
pub async fn connect(socket: &std::path::Path) -> Result<Docker, DockerError> {
    let err = |source| DockerError::Connect {
        socket: socket.to_owned(),
        source,
    };
    let docker =
        Docker::connect_with_unix(&socket.to_string_lossy(), 30, bollard::API_DEFAULT_VERSION)
            .map_err(err)?;
    docker.ping().await.map_err(err)?;
    Ok(docker)
}

/// Follows Docker and keeps `table` and the kernel watch list in step with it.
pub struct DockerWatcher {
    /// Docker client.
    pub docker: Docker,
    /// The container table to fill.
    pub table: ContainerTable,
    /// The kernel's watch list.
    pub watch: WatchList,
    /// Known profiles.
    pub profiles: Arc<ProfileSet>,
    /// cgroup2 mount point.
    pub cgroup2: PathBuf,
    /// Metrics.
    pub metrics: Arc<AgentMetrics>,
    /// Told about every watched container that starts or stops (network zones).
    pub observers: Vec<Arc<dyn ContainerObserver>>,
    /// Known-good images and where to report a brainbox started from another one.
    pub baseline: Option<BaselineCheck>,
}

/// The image baseline check of watched containers at start.
pub struct BaselineCheck {
    /// Approved image ids.
    pub baseline: crate::safety::baseline::ImageBaseline,
    /// Node name for the events.
    pub node: String,
    /// `image_unapproved` events, as JSON, to the agent's event sink.
    pub events: tokio::sync::mpsc::Sender<serde_json::Value>,
}

impl DockerWatcher {
    /// Syncs running containers, then signals `ready` and follows events until the stream ends.
    pub async fn run(self, ready: tokio::sync::oneshot::Sender<usize>) -> Result<(), DockerError> {
        // Subscribe before listing so that no start between the two is missed.
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "die", "destroy"]),
        ]);
        let mut events = self.docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        let list_filters = HashMap::from([("label", vec![PROFILE_LABEL])]);
        let running = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .filters(&list_filters)
                    .build(),
            ))
            .await?;
        for c in running {
            if let Some(id) = c.id {
                self.add(&id).await;
            }
        }
        for o in &self.observers {
            o.synced();
        }
        let _ = ready.send(self.table.len());
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::error!(error = %e, "Docker event stream failed");
                    return Err(e.into());
                }
            };
            let Some(id) = ev.actor.and_then(|a| a.id) else {
                continue;
            };
            match ev.action.as_deref() {
                Some("start") => self.add(&id).await,
                Some("die") | Some("destroy") => self.remove(&id),
                _ => {}
            }
        }
        Ok(())
    }

    async fn add(&self, id: &str) {
        match self.inspect(id).await {
            Ok(Some((info, start))) => {
                let cg = info.cgroup_id;
                for o in &self.observers {
                    o.started(&ContainerStart {
                        info: &info,
                        cgroup_dir: &start.cgroup_dir,
                        addrs: &start.addrs,
                        labels: &start.labels,
                    });
                }
                if let Err(e) = self.watch.watch(cg) {
                    tracing::error!(container_id = id, error = %e, "cannot watch container cgroup");
                    return;
                }
                tracing::info!(
                    container_id = %info.id,
                    container_name = %info.name,
                    image = %info.image,
                    profile = %info.profile,
                    cgroup_id = cg,
                    "watching container"
                );
                if let Some(b) = &self.baseline {
                    if let Some(ev) = b.baseline.check(&b.node, &info) {
                        tracing::warn!(
                            container_id = %info.id,
                            image = %info.image,
                            image_id = %info.image_id,
                            "brainbox started from an unapproved image"
                        );
                        if let Ok(v) = serde_json::to_value(&ev) {
                            let _ = b.events.try_send(v);
                        }
                    }
                }
                if !self.table.insert(info) {
                    tracing::error!(
                        container_id = id,
                        "container table full; container watched but not attributed"
                    );
                }
                self.metrics.watched_containers.set(self.table.len() as i64);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(container_id = id, error = %e, "cannot inspect container"),
        }
    }

    fn remove(&self, id: &str) {
        if let Some(cg) = self.table.remove_by_id(id) {
            for o in &self.observers {
                o.stopped(id, cg);
            }
            self.watch.unwatch(cg);
            tracing::info!(container_id = id, "container gone; unwatched");
            self.metrics.watched_containers.set(self.table.len() as i64);
        }
    }

    async fn inspect(
        &self,
        id: &str,
    ) -> Result<Option<(ContainerInfo, StartDetails)>, DockerError> {
        let c = self.docker.inspect_container(id, None).await?;
        let config = c.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let Some(profile) = labels.get(PROFILE_LABEL).cloned() else {
            return Ok(None);
        };
        if let Some(p) = self.profiles.get(&profile) {
            if !p.watch {
                return Ok(None);
            }
        } else {
            // Watch anyway: an unknown profile is a deployment mistake, not a reason to look away.
            tracing::warn!(container_id = id, profile = %profile, "container names an unknown profile; watching it anyway");
        }
        let Some(pid) = c.state.as_ref().and_then(|s| s.pid).filter(|p| *p > 0) else {
            return Ok(None);
        };
        let (cgroup_dir, cgroup_id) = match cgroup::cgroup_of_pid(&self.cgroup2, pid as u32) {
            Ok(v) => v,
            Err(e) => {
                // The container may have exited already.
                tracing::warn!(container_id = id, pid, error = %e, "cannot resolve container cgroup");
                return Ok(None);
            }
        };
        let addrs = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .values()
            .flat_map(|e| [e.ip_address.clone(), e.global_ipv6_address.clone()])
            .flatten()
            .filter_map(|a| a.parse().ok())
            .collect();
        // Mount points inside the container: what Docker mounted (volumes, binds, tmpfs) and
        // the files it always bind-mounts. Paths under them are not in the writable layer.
        let mut mounts: Vec<String> = c
            .mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.destination.clone())
            .collect();
        if let Some(t) = c.host_config.as_ref().and_then(|h| h.tmpfs.as_ref()) {
            mounts.extend(t.keys().cloned());
        }
        mounts.extend(
            [
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev",
                "/proc",
                "/sys",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let writable = c
            .graph_driver
            .as_ref()
            .and_then(|g| g.data.get("UpperDir"))
            .map(|u| crate::process::WritableLayer {
                upper_dir: std::path::PathBuf::from(u),
                mounts,
            });
        let privileged = c
            .host_config
            .as_ref()
            .and_then(|h| h.privileged)
            .unwrap_or(false);
        let info = ContainerInfo {
            cgroup_dir: cgroup_dir.clone(),
            init_pid: pid as u32,
            start_ts: c
                .state
                .as_ref()
                .and_then(|st| st.started_at.as_deref())
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_nanos()).ok()),
            writable,
            privileged,
            id: c.id.unwrap_or_else(|| id.to_owned()),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: config.image.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            profile,
            // kubelet labels its containers; the lab uses brainbox.io/pod.
            pod: labels
                .get("io.kubernetes.pod.name")
                .or_else(|| labels.get(POD_LABEL))
                .cloned(),
            namespace: labels.get("io.kubernetes.pod.namespace").cloned(),
            pod_uid: labels.get("io.kubernetes.pod.uid").cloned(),
            role: labels.get(ROLE_LABEL).cloned(),
            cgroup_id,
        };
        Ok(Some((
            info,
            StartDetails {
                cgroup_dir,
                addrs,
                labels,
            },
        )))
    }
}

/// What `inspect` learns beyond [`ContainerInfo`], for observers.
struct StartDetails {
    cgroup_dir: PathBuf,
    addrs: Vec<std::net::IpAddr>,
    labels: HashMap<String, String>,
}

/// Retries `connect` for up to `wait`, for agents started alongside dockerd.
pub async fn connect_with_retry(
    socket: &std::path::Path,
    wait: Duration,
) -> Result<Docker, DockerError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match connect(socket).await {
            Ok(d) => return Ok(d),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

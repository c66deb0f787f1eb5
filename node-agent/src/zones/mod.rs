//! Network zones: per-container network policy enforced in the kernel with cgroup-BPF.
//!
//! Every watched container gets a zone from its profile and a role from its pod; the policy
//! compiler ([`policy`]) turns `profiles/zones.yaml` plus the current containers into LPM-trie
//! contents, [`kernel`] installs them (two generations, flipped atomically per container) and
//! attaches the programs to each container's cgroup through links pinned in bpffs, so the
//! policy holds while the agent is down and a restarted agent adopts what it finds. Denials come
//! back through a ring buffer ([`report`]) and go out with the agent's other events.

pub mod kernel;
pub mod policy;
pub mod report;

use crate::runtime::{ContainerObserver, ContainerStart, ContainerTable};
use brainbox_ebpf_common::zones::{Hook, ZoneStat};
use brainbox_profile::{zones::ZonePolicy, ProfileSet, Zone};
use kernel::{Attach, Kernel};
use policy::{compile, Compiled, Member, Role, GENERATIONS};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

/// Errors of the zones subsystem.
#[derive(Debug, thiserror::Error)]
pub enum ZonesError {
    /// Profiles or the zone policy are wrong.
    #[error("zone policy: {0}")]
    Policy(String),
    /// The kernel side failed.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    /// Another agent manages zones with the same pin directory.
    #[error(
        "another node agent manages zones in {pin_dir} (lock {lock}); one agent per pin directory"
    )]
    Busy { pin_dir: PathBuf, lock: PathBuf },
}

/// Settings the agent's configuration gives the zones subsystem.
#[derive(Debug, Clone)]
pub struct ZonesSettings {
    /// bpffs directory for pins.
    pub pin_dir: PathBuf,
    /// Folder with the profiles and `zones.yaml`.
    pub profiles_dir: PathBuf,
    /// Only containers with this `key=value` label are enforced (empty: every watched one).
    pub only_label: Option<(String, String)>,
}

struct State {
    // Held for the agent's lifetime: two agents rewriting one set of maps would delete each
    // other's policy. The kernel releases it when the process dies, however it dies.
    _lock: nix::fcntl::Flock<std::fs::File>,
    kernel: Kernel,
    policy: ZonePolicy,
    profiles: ProfileSet,
    /// container id → (profile name, member).
    members: BTreeMap<String, (String, Member)>,
    compiled: Option<Compiled>,
    synced: bool,
    adopted: usize,
    attached: usize,
}

/// The zones subsystem; cheap to clone.
#[derive(Clone)]
pub struct Zones {
    state: Arc<Mutex<State>>,
    settings: Arc<ZonesSettings>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    attach_failures: AtomicU64,
}

impl Zones {
    /// Loads the policy and the kernel programs. Returns the subsystem and the denial ring.
    pub fn start(
        settings: ZonesSettings,
    ) -> Result<(Zones, aya::maps::RingBuf<aya::maps::MapData>), ZonesError> {
        let (policy, profiles) = load_policy(&settings.profiles_dir)?;
        let lock = lock_pin_dir(&settings.pin_dir)?;
        let (kernel, ring) = Kernel::load(&settings.pin_dir)?;
        Ok((
            Zones {
                state: Arc::new(Mutex::new(State {
                    _lock: lock,
                    kernel,
                    policy,
                    profiles,
                    members: BTreeMap::new(),
                    compiled: None,
                    synced: false,
                    adopted: 0,
                    attached: 0,
                })),
                settings: Arc::new(settings),
                counters: Arc::new(Counters::default()),
            },
            ring,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("zones state lock")
    }

    /// Reloads profiles and the zone policy from disk. A bad file is refused with its error and
    /// the policy in force stays.
    pub fn reload(&self) -> Result<String, ZonesError> {
        let result = (|| {
            let (policy, profiles) = load_policy(&self.settings.profiles_dir)?;
            let mut st = self.lock();
            let members = members_of(&st.members, &profiles);
            // Compile before swapping anything, so a policy that cannot be compiled is refused too.
            compile(&policy, &members, GENERATIONS[0])
                .map_err(|e| ZonesError::Policy(e.to_string()))?;
            st.policy = policy;
            st.profiles = profiles;
            apply(&mut st)
        })();
        match &result {
            Ok(digest) => {
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(digest = %digest, "zone policy reloaded");
            }
            Err(e) => {
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "zone policy rejected; the previous policy stays in force");
            }
        }
        result
    }

    /// Describes a policy id for denial reports: (container id, zone, role).
    pub fn describe(&self, policy_id: u32) -> Option<(String, Zone, Role)> {
        let st = self.lock();
        let id = policy_id & !brainbox_ebpf_common::zones::INBOUND;
        st.compiled
            .as_ref()
            .and_then(|c| c.policies.get(&id))
            .map(|p| (p.container_id.clone(), p.zone, p.role))
    }

    /// Isolates one container's cgroup (the `isolate` response): loopback only, whatever its
    /// zone allows, until the container goes away or [`Zones::release`] lifts it.
    pub fn isolate(&self, cgroup_id: u64) -> Result<(), ZonesError> {
        self.lock().kernel.lock(cgroup_id)?;
        tracing::warn!(cgroup_id, "container isolated: loopback only");
        Ok(())
    }

    /// Lifts the isolation of one container.
    pub fn release(&self, cgroup_id: u64) -> Result<(), ZonesError> {
        self.lock().kernel.unlock(cgroup_id)?;
        Ok(())
    }

    /// Closes (or reopens) the egress of every enforced container at once: safe mode
    /// `close_egress`. One map update, so it takes effect on the next connect or packet.
    pub fn close_all(&self, closed: bool) -> Result<(), ZonesError> {
        let mut st = self.lock();
        if closed {
            st.kernel.lock(brainbox_ebpf_common::zones::LOCK_ALL)?;
        } else {
            st.kernel.unlock(brainbox_ebpf_common::zones::LOCK_ALL)?;
        }
        Ok(())
    }

    /// The isolation locks in force (cgroup ids; 0 = the whole node).
    pub fn locks(&self) -> std::collections::BTreeSet<u64> {
        self.lock().kernel.locks()
    }

    /// The digest of the policy in force.
    pub fn digest(&self) -> Option<String> {
        self.lock().compiled.as_ref().map(|c| c.digest.clone())
    }

    /// A Prometheus collector for the kernel's decision counters and the reload counters.
    pub fn collector(&self) -> ZonesCollector {
        ZonesCollector {
            zones: self.clone(),
        }
    }

    /// Watches the profiles folder and reloads on change (debounced). Runs until the watcher
    /// fails; errors in the files themselves are logged and do not stop it.
    pub async fn watch_profiles(self) -> Result<(), notify::Error> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        })?;
        watcher.watch(&self.settings.profiles_dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %self.settings.profiles_dir.display(), "watching profiles for zone policy changes");
        while rx.recv().await.is_some() {
            // Editors write in several steps; wait for the burst to end.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let z = self.clone();
            let _ = tokio::task::spawn_blocking(move || z.reload()).await;
        }
        drop(watcher);
        Ok(())
    }

    fn wanted(&self, labels: &std::collections::HashMap<String, String>) -> bool {
        match &self.settings.only_label {
            None => true,
            Some((k, v)) => labels.get(k) == Some(v),
        }
    }
}

/// Takes the per-pin-directory lock (bpffs holds no regular files, so it lives in /run).
fn lock_pin_dir(pin_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, ZonesError> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pin_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let dir = Path::new("/run/brainbox");
    let lock = dir.join(format!("zones-{h:016x}.lock"));
    let busy = || ZonesError::Busy {
        pin_dir: pin_dir.to_owned(),
        lock: lock.clone(),
    };
    let file = std::fs::create_dir_all(dir)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
        })
        .map_err(|e| {
            ZonesError::Kernel(kernel::KernelError::Pin {
                path: lock.clone(),
                reason: e.to_string(),
            })
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| busy())
}

fn load_policy(dir: &Path) -> Result<(ZonePolicy, ProfileSet), ZonesError> {
    let (policy, _) = ZonePolicy::load_dir(dir).map_err(|e| ZonesError::Policy(e.to_string()))?;
    let profiles = ProfileSet::load_dir(dir).map_err(|e| ZonesError::Policy(e.to_string()))?;
    Ok((policy, profiles))
}

fn members_of(members: &BTreeMap<String, (String, Member)>, profiles: &ProfileSet) -> Vec<Member> {
    members
        .values()
        .map(|(profile, m)| {
            let mut m = m.clone();
            // An unknown profile gets the tightest zone: fail closed.
            m.zone = profiles.get(profile).map_or(Zone::Untrusted, |p| p.zone);
            m
        })
        .collect()
}

/// Compiles for the generation not in use and installs it. Returns the digest.
fn apply(st: &mut State) -> Result<String, ZonesError> {
    let members = members_of(&st.members, &st.profiles);
    let next = match st.kernel.current_generation() {
        Some(0) => 1,
        _ => 0,
    };
    let compiled = compile(&st.policy, &members, GENERATIONS[next])
        .map_err(|e| ZonesError::Policy(e.to_string()))?;
    st.kernel.install(&compiled)?;
    let digest = compiled.digest.clone();
    let (cgroups, entries) = st.kernel.sizes();
    tracing::info!(
        digest = %digest,
        containers = members.len(),
        cgroups,
        entries,
        generation = next,
        "zone policy applied"
    );
    st.compiled = Some(compiled);
    Ok(digest)
}

impl ContainerObserver for Zones {
    fn started(&self, c: &ContainerStart<'_>) {
        if !self.wanted(c.labels) {
            return;
        }
        let mut st = self.lock();
        let member = Member {
            id: c.info.id.clone(),
            name: c.info.name.clone(),
            cgroup_id: c.info.cgroup_id,
            zone: Zone::Untrusted,
            role: Role::from_label(c.info.role.as_deref()),
            addrs: c.addrs.to_vec(),
        };
        st.members
            .insert(c.info.id.clone(), (c.info.profile.clone(), member));
        // Policy first, then the programs: a container is never attached without its entries
        // (and if it were, it would be denied everything, not allowed).
        if st.synced {
            if let Err(e) = apply(&mut st) {
                tracing::error!(error = %e, container_id = %c.info.id, "cannot apply zone policy");
            }
        }
        match st.kernel.attach(c.info.cgroup_id, c.cgroup_dir) {
            Ok(how) => {
                match how {
                    Attach::Adopted => st.adopted += 1,
                    Attach::Attached => st.attached += 1,
                }
                tracing::info!(
                    container_id = %c.info.id,
                    container_name = %c.info.name,
                    cgroup_id = c.info.cgroup_id,
                    role = Role::from_label(c.info.role.as_deref()).name(),
                    how = match how { Attach::Adopted => "adopted", Attach::Attached => "attached" },
                    "zones enforcing container"
                );
            }
            Err(e) => {
                self.counters
                    .attach_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(container_id = %c.info.id, error = %e, "cannot attach zone programs");
            }
        }
    }

    fn stopped(&self, container_id: &str, cgroup_id: u64) {
        let mut st = self.lock();
        if st.members.remove(container_id).is_none() {
            return;
        }
        st.kernel.detach(cgroup_id);
        let _ = st.kernel.unlock(cgroup_id);
        if st.synced {
            if let Err(e) = apply(&mut st) {
                tracing::error!(error = %e, "cannot apply zone policy");
            }
        }
    }

    fn synced(&self) {
        let mut st = self.lock();
        let live: BTreeSet<u64> = st.members.values().map(|(_, m)| m.cgroup_id).collect();
        let removed = st.kernel.gc(&live);
        let result = apply(&mut st);
        st.synced = true;
        match result {
            Ok(digest) => tracing::info!(
                digest = %digest,
                adopted = st.adopted,
                attached = st.attached,
                stale_removed = removed,
                enforced = st.kernel.enforced(),
                "zones ready"
            ),
            Err(e) => tracing::error!(error = %e, "cannot apply zone policy"),
        }
    }
}

/// Exports `brainbox_zones_decisions_total{hook,verdict}` from the kernel's counters, read at
/// scrape time, plus reload and attach counters and policy sizes.
pub struct ZonesCollector {
    zones: Zones,
}

impl std::fmt::Debug for ZonesCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZonesCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DecisionLabels {
    hook: String,
    verdict: String,
}

impl Collector for ZonesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (rows, sizes) = {
            let st = self.zones.lock();
            let mut rows = Vec::new();
            for hook in Hook::ALL {
                for (stat, verdict) in [
                    (ZoneStat::Allowed, "allowed"),
                    (ZoneStat::Denied, "denied"),
                    (ZoneStat::Suppressed, "denied_event_suppressed"),
                    (ZoneStat::Lost, "denied_event_lost"),
                ] {
                    rows.push((hook.name(), verdict, st.kernel.stat(hook, stat)));
                }
            }
            (rows, st.kernel.sizes())
        };
        let mut fam = encoder.encode_descriptor(
            "zones_decisions",
            "Connection attempts and packets judged by the zone programs, by hook and verdict",
            None,
            MetricType::Counter,
        )?;
        for (hook, verdict, v) in rows {
            ConstCounter::new(v).encode(fam.encode_family(&DecisionLabels {
                hook: hook.into(),
                verdict: verdict.into(),
            })?)?;
        }
        for (name, help, v) in [
            (
                "zones_reloads",
                "Zone policy reloads applied",
                self.zones.counters.reloads.load(Ordering::Relaxed),
            ),
            (
                "zones_reload_failures",
                "Zone policy reloads refused (the old policy stayed)",
                self.zones.counters.reload_failures.load(Ordering::Relaxed),
            ),
            (
                "zones_attach_failures",
                "Containers the zone programs could not be attached to",
                self.zones.counters.attach_failures.load(Ordering::Relaxed),
            ),
        ] {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)?;
        }
        for (name, help, v) in [
            (
                "zones_policy_cgroups",
                "Container cgroups with a zone policy in the kernel",
                sizes.0,
            ),
            (
                "zones_policy_entries",
                "Prefix entries in the kernel's zone policy trie",
                sizes.1,
            ),
        ] {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v as i64).encode(m)?;
        }
        Ok(())
    }
}

/// Runs the denial reader: decodes ring buffer records into `net_deny` events for `tx`.
pub async fn run_reports(
    zones: Zones,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    table: ContainerTable,
    node: String,
    tx: tokio::sync::mpsc::Sender<serde_json::Value>,
) -> std::io::Result<()> {
    report::run(zones, ring, table, node, tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_pin_directory() {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/brainbox-lock-test-{}",
            std::process::id()
        ));
        let first = lock_pin_dir(&dir).expect("first lock (needs a writable /run)");
        let e = lock_pin_dir(&dir).expect_err("second lock must fail");
        assert!(matches!(e, ZonesError::Busy { .. }), "{e}");
        drop(first);
        lock_pin_dir(&dir).expect("free again once the holder is gone");
    }
}

//! The zone programs in the kernel: loading (maps pinned by name and reused), attaching to a
//! container's cgroup with pinned links (so enforcement outlives the agent), adopting the links
//! a previous agent pinned, and writing policy generations.
//!
//! bpffs layout under the pin directory (default `/sys/fs/bpf/brainbox/zones`):
//! `maps/<MAP>` (policy, cgroup table, events, counters), `progs/<hook>` (the latest programs),
//! `links/<cgroup id>/<hook>` (one link per hook per container).

use super::policy::{generation_of, Compiled, Entry};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf,
    },
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr,
    },
    Ebpf, EbpfLoader,
};
use brainbox_ebpf_common::zones::{
    zone_stat_index, Hook, PolicyAddr, PolicyValue, ZoneStat, ZONE_CGROUPS_MAP, ZONE_EVENTS_MAP,
    ZONE_LOCK_MAP, ZONE_POLICY_MAP, ZONE_RATE_MAP, ZONE_STATS_MAP,
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

/// The compiled zone programs, built by `build.rs`.
static ZONES_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zones.bpf.o"));

/// Errors of the kernel side.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Not root.
    #[error("network zones need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); running as uid {0}")]
    NotRoot(u32),
    /// bpffs missing or a pin path unusable.
    #[error("bpffs pin directory {path}: {reason} (is bpffs mounted at /sys/fs/bpf?)")]
    Pin { path: PathBuf, reason: String },
    /// The object did not load.
    #[error("the kernel refused the zone programs: {0}")]
    Load(Box<aya::EbpfError>),
    /// A program failed.
    #[error("zone program `{program}`: {reason}")]
    Program {
        program: &'static str,
        reason: String,
    },
    /// A map failed.
    #[error("zone map `{map}`: {reason}")]
    Map { map: &'static str, reason: String },
    /// A cgroup directory could not be opened.
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a container came to be enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Links pinned by an earlier agent were found and kept.
    Adopted,
    /// Programs were attached now.
    Attached,
}

enum Prog {
    SockAddr(&'static str),
    Skb(&'static str, CgroupSkbAttachType),
}

const PROGRAMS: [Prog; 6] = [
    Prog::SockAddr("connect4"),
    Prog::SockAddr("connect6"),
    Prog::SockAddr("sendmsg4"),
    Prog::SockAddr("sendmsg6"),
    Prog::Skb("egress", CgroupSkbAttachType::Egress),
    Prog::Skb("ingress", CgroupSkbAttachType::Ingress),
];

impl Prog {
    fn name(&self) -> &'static str {
        match self {
            Prog::SockAddr(n) | Prog::Skb(n, _) => n,
        }
    }
}

/// The loaded programs and maps.
pub struct Kernel {
    bpf: Ebpf,
    dir: PathBuf,
    cgroups: BpfHashMap<MapData, u64, u32>,
    policy: LpmTrie<MapData, PolicyAddr, PolicyValue>,
    stats: PerCpuArray<MapData, u64>,
    locks: BpfHashMap<MapData, u64, u32>,
    links: HashMap<u64, Vec<PinnedLink>>,
}

fn pin_err(path: &Path, e: impl std::fmt::Display) -> KernelError {
    KernelError::Pin {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

impl Kernel {
    /// Loads the programs, reusing maps pinned under `dir` (or creating and pinning them).
    pub fn load(dir: &Path) -> Result<(Kernel, RingBuf<MapData>), KernelError> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            return Err(KernelError::NotRoot(uid));
        }
        for sub in ["maps", "progs", "links"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| pin_err(&dir.join(sub), e))?;
        }
        check_pinned_layouts(&dir.join("maps"))?;
        let mut bpf = EbpfLoader::new()
            .default_map_pin_directory(dir.join("maps"))
            .load(ZONES_OBJECT)
            .map_err(|e| KernelError::Load(Box::new(e)))?;
        for p in &PROGRAMS {
            let name = p.name();
            let err = |e: &dyn std::fmt::Display| KernelError::Program {
                program: name,
                reason: e.to_string(),
            };
            let prog = bpf
                .program_mut(name)
                .ok_or_else(|| err(&"missing from the object"))?;
            match p {
                Prog::SockAddr(_) => {
                    let prog: &mut CgroupSockAddr = prog.try_into().map_err(|e| err(&e))?;
                    prog.load().map_err(|e| err(&e))?;
                }
                Prog::Skb(..) => {
                    let prog: &mut CgroupSkb = prog.try_into().map_err(|e| err(&e))?;
                    prog.load().map_err(|e| err(&e))?;
                }
            }
            // The newest programs are pinned for inspection (`bpftool prog show pinned ...`);
            // links keep whichever instance they were created with.
            let path = dir.join("progs").join(name);
            let _ = std::fs::remove_file(&path);
            let prog = bpf.program_mut(name).ok_or_else(|| err(&"missing"))?;
            prog.pin(&path).map_err(|e| pin_err(&path, e))?;
        }
        let take = |bpf: &mut Ebpf, map: &'static str| {
            bpf.take_map(map).ok_or(KernelError::Map {
                map,
                reason: "missing from the object".into(),
            })
        };
        let merr = |map: &'static str| {
            move |e: aya::maps::MapError| KernelError::Map {
                map,
                reason: e.to_string(),
            }
        };
        let cgroups = BpfHashMap::try_from(take(&mut bpf, ZONE_CGROUPS_MAP)?)
            .map_err(merr(ZONE_CGROUPS_MAP))?;
        let policy =
            LpmTrie::try_from(take(&mut bpf, ZONE_POLICY_MAP)?).map_err(merr(ZONE_POLICY_MAP))?;
        let stats =
            PerCpuArray::try_from(take(&mut bpf, ZONE_STATS_MAP)?).map_err(merr(ZONE_STATS_MAP))?;
        let ring =
            RingBuf::try_from(take(&mut bpf, ZONE_EVENTS_MAP)?).map_err(merr(ZONE_EVENTS_MAP))?;
        let locks =
            BpfHashMap::try_from(take(&mut bpf, ZONE_LOCK_MAP)?).map_err(merr(ZONE_LOCK_MAP))?;
        let _ = ZONE_RATE_MAP;
        Ok((
            Kernel {
                bpf,
                dir: dir.to_owned(),
                cgroups,
                policy,
                stats,
                locks,
                links: HashMap::new(),
            },
            ring,
        ))
    }

    fn link_dir(&self, cgroup_id: u64) -> PathBuf {
        self.dir.join("links").join(cgroup_id.to_string())
    }

    /// Enforces on a cgroup: adopts the links an earlier agent pinned for it, or attaches every
    /// hook and pins the links. Idempotent: a cgroup already enforced is left as it is.
    pub fn attach(&mut self, cgroup_id: u64, cgroup_dir: &Path) -> Result<Attach, KernelError> {
        if self.links.contains_key(&cgroup_id) {
            return Ok(Attach::Adopted);
        }
        let ldir = self.link_dir(cgroup_id);
        let pinned: Vec<PathBuf> = PROGRAMS.iter().map(|p| ldir.join(p.name())).collect();
        if pinned.iter().all(|p| p.exists()) {
            let mut links = Vec::new();
            for p in &pinned {
                links.push(PinnedLink::from_pin(p).map_err(|e| pin_err(p, e))?);
            }
            self.links.insert(cgroup_id, links);
            return Ok(Attach::Adopted);
        }
        // A partial set (an agent killed mid-attach): start over for this cgroup.
        let _ = std::fs::remove_dir_all(&ldir);
        std::fs::create_dir_all(&ldir).map_err(|e| pin_err(&ldir, e))?;
        let cgroup = std::fs::File::open(cgroup_dir).map_err(|source| KernelError::Cgroup {
            path: cgroup_dir.to_owned(),
            source,
        })?;
        let mut links = Vec::new();
        for (p, path) in PROGRAMS.iter().zip(&pinned) {
            let name = p.name();
            let err = |e: &dyn std::error::Error| KernelError::Program {
                program: name,
                reason: chain(e),
            };
            let prog = self
                .bpf
                .program_mut(name)
                .ok_or_else(|| KernelError::Program {
                    program: name,
                    reason: "missing".into(),
                })?;
            // On this kernel aya attaches through BPF_LINK_CREATE, which takes no flags (0 is
            // `Single` here) and always attaches the way ALLOW_MULTI does: other cgroup programs
            // (Docker's device filter, another tool's firewall) keep working, every attached
            // program must allow a connection, and nothing can replace ours.
            let fd: FdLink = match p {
                Prog::SockAddr(_) => {
                    let prog: &mut CgroupSockAddr = prog.try_into().map_err(|e| err(&e))?;
                    let id = prog
                        .attach(&cgroup, CgroupAttachMode::Single)
                        .map_err(|e| err(&e))?;
                    prog.take_link(id)
                        .map_err(|e| err(&e))?
                        .try_into()
                        .map_err(|e| err(&e))?
                }
                Prog::Skb(_, kind) => {
                    let prog: &mut CgroupSkb = prog.try_into().map_err(|e| err(&e))?;
                    let id = prog
                        .attach(&cgroup, *kind, CgroupAttachMode::Single)
                        .map_err(|e| err(&e))?;
                    prog.take_link(id)
                        .map_err(|e| err(&e))?
                        .try_into()
                        .map_err(|e| err(&e))?
                }
            };
            links.push(fd.pin(path).map_err(|e| pin_err(path, e))?);
        }
        self.links.insert(cgroup_id, links);
        Ok(Attach::Attached)
    }

    /// Stops enforcing on a cgroup (its container is gone): unpins and closes its links.
    pub fn detach(&mut self, cgroup_id: u64) {
        self.links.remove(&cgroup_id);
        let _ = std::fs::remove_dir_all(self.link_dir(cgroup_id));
    }

    /// Isolates `key` (a cgroup id, or `LOCK_ALL` for every enforced cgroup): only loopback
    /// stays open. The lock is pinned, so it outlives this agent.
    pub fn lock(&mut self, key: u64) -> Result<(), KernelError> {
        self.locks.insert(key, 1, 0).map_err(|e| KernelError::Map {
            map: ZONE_LOCK_MAP,
            reason: e.to_string(),
        })
    }

    /// Lifts the lock on `key`.
    pub fn unlock(&mut self, key: u64) -> Result<(), KernelError> {
        match self.locks.remove(&key) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(KernelError::Map {
                map: ZONE_LOCK_MAP,
                reason: e.to_string(),
            }),
        }
    }

    /// The keys locked now.
    pub fn locks(&self) -> BTreeSet<u64> {
        self.locks.keys().filter_map(Result::ok).collect()
    }

    /// Removes link pins of cgroups not in `live` (containers that went away while the agent
    /// was down). Returns how many were removed.
    pub fn gc(&mut self, live: &BTreeSet<u64>) -> usize {
        let mut removed = 0;
        let Ok(rd) = std::fs::read_dir(self.dir.join("links")) else {
            return 0;
        };
        for e in rd.flatten() {
            let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            if !live.contains(&id) {
                self.detach(id);
                removed += 1;
            }
        }
        // Isolation locks of containers that are gone (cgroup ids are never reused).
        for key in self.locks() {
            if key != brainbox_ebpf_common::zones::LOCK_ALL && !live.contains(&key) {
                let _ = self.unlock(key);
            }
        }
        removed
    }

    /// Number of cgroups with links held.
    pub fn enforced(&self) -> usize {
        self.links.len()
    }

    /// The generation (0 or 1) the kernel's cgroup table uses now, if any.
    pub fn current_generation(&self) -> Option<usize> {
        self.cgroups
            .iter()
            .filter_map(Result::ok)
            .map(|(_, id)| generation_of(id))
            .next()
    }

    /// Installs `new` (compiled with the base of the generation not in use): writes its entries,
    /// points every cgroup at its new policy id (one atomic map update each), then deletes
    /// everything else. A program sees either the old or the new policy of a container, never
    /// a mix; a cgroup whose entry is gone is denied everything.
    pub fn install(&mut self, new: &Compiled) -> Result<(), KernelError> {
        let werr = |map: &'static str| {
            move |e: aya::maps::MapError| KernelError::Map {
                map,
                reason: e.to_string(),
            }
        };
        for (Entry { prefix_len, key }, value) in &new.entries {
            self.policy
                .insert(&Key::new(*prefix_len, *key), *value, 0)
                .map_err(werr(ZONE_POLICY_MAP))?;
        }
        for (cg, id) in &new.cgroups {
            self.cgroups
                .insert(*cg, *id, 0)
                .map_err(werr(ZONE_CGROUPS_MAP))?;
        }
        // Programs that read an old id an instant ago finish within microseconds; give them
        // that before their entries go.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let stale_cgroups: Vec<u64> = self
            .cgroups
            .keys()
            .filter_map(Result::ok)
            .filter(|cg| !new.cgroups.contains_key(cg))
            .collect();
        for cg in stale_cgroups {
            let _ = self.cgroups.remove(&cg);
        }
        let keep: BTreeSet<(u32, PolicyAddr)> =
            new.entries.keys().map(|e| (e.prefix_len, e.key)).collect();
        let stale: Vec<Key<PolicyAddr>> = self
            .policy
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.contains(&(k.prefix_len(), k.data())))
            .collect();
        for k in stale {
            let _ = self.policy.remove(&k);
        }
        Ok(())
    }

    /// Summed per-CPU counter.
    pub fn stat(&self, hook: Hook, stat: ZoneStat) -> u64 {
        self.stats
            .get(&zone_stat_index(hook as u32, stat), 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Counts of entries in the kernel maps: (cgroups, policy entries).
    pub fn sizes(&self) -> (usize, usize) {
        (
            self.cgroups.keys().filter_map(Result::ok).count(),
            self.policy.keys().filter_map(Result::ok).count(),
        )
    }

    /// Every stored (cgroup id → policy id), for tests and `zones` introspection.
    pub fn cgroup_table(&self) -> BTreeMap<u64, u32> {
        self.cgroups.iter().filter_map(Result::ok).collect()
    }
}

/// Pinned maps are reused as they are; one left by an agent with a different layout would be
/// read wrongly by these programs, so it is refused with instructions instead.
fn check_pinned_layouts(maps: &Path) -> Result<(), KernelError> {
    use brainbox_ebpf_common::zones::RateState;
    let expected: [(&str, u32, u32); 5] = [
        (ZONE_CGROUPS_MAP, 8, 4),
        (ZONE_LOCK_MAP, 8, 4),
        (
            ZONE_POLICY_MAP,
            4 + std::mem::size_of::<PolicyAddr>() as u32,
            std::mem::size_of::<PolicyValue>() as u32,
        ),
        (ZONE_STATS_MAP, 4, 8),
        (ZONE_RATE_MAP, 8, std::mem::size_of::<RateState>() as u32),
    ];
    for (name, key, value) in expected {
        let path = maps.join(name);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|e| pin_err(&path, e))?;
        if info.key_size() != key || info.value_size() != value {
            return Err(KernelError::Pin {
                path,
                reason: format!(
                    "pinned by an agent with another map layout (key {} value {}, this agent needs key {key} value {value}); \
                     remove {} and restart the brainboxes on this node",
                    info.key_size(),
                    info.value_size(),
                    maps.parent().unwrap_or(maps).display()
                ),
            });
        }
    }
    Ok(())
}

/// An error with its sources, `a: b: c` (aya's errors keep the errno in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

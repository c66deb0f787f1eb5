//! The eBPF sensor: loads the tracepoint programs, keeps the kernel's watch list, reads the ring
//! buffer and exports the kernel's event and drop counters.

pub mod decode;

use crate::{
    config::SensorAttach,
    metrics::{AgentMetrics, KindLabel, PerKind},
};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{Program, ProgramError, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use brainbox_ebpf_common::{
    sc_stat_index, stat_index, EventKind, Sc, Stat, WatchFlags, DROPS_BY_CGROUP_MAP, EVENTS_MAP,
    STATS_MAP, WATCHED_MAP,
};
use decode::SensorEvent;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, MetricType},
};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

/// The compiled eBPF object, built by `build.rs`.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Raw tracepoint programs of the `raw` attach mode, as (program, tracepoint).
const RAW_PROGRAMS: [(&str, &str); 2] =
    [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")];

/// Tracepoints the sensor attaches, as (program, category, name, required). A required one that
/// fails stops the agent; an optional one (a syscall this kernel lacks, such as `openat2` on old
/// kernels or `init_module` on kernels without modules) is logged and reported as missing. In
/// `raw` mode the syscalls are covered by [`RAW_PROGRAMS`] instead.
fn tracepoints(attach: SensorAttach) -> Vec<(String, &'static str, String, bool)> {
    let mut v = vec![];
    if attach == SensorAttach::Tracepoints {
        for name in ["execve", "execveat"] {
            for dir in ["enter", "exit"] {
                let tp = format!("sys_{dir}_{name}");
                v.push((tp.clone(), "syscalls", tp, true));
            }
        }
        for sc in Sc::ALL {
            for dir in ["enter", "exit"] {
                let tp = format!("sys_{dir}_{}", sc.name());
                v.push((tp.clone(), "syscalls", tp, false));
            }
        }
    }
    for tp in ["sched_process_fork", "sched_process_exit"] {
        v.push((tp.to_string(), "sched", tp.to_string(), true));
    }
    v
}

/// What the sensor attached.
#[derive(Debug, Clone, Default)]
pub struct Attached {
    /// Programs attached.
    pub programs: usize,
    /// Optional tracepoints this kernel does not have.
    pub missing: Vec<String>,
}

/// Why the sensor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// The process lacks the privileges to load eBPF.
    #[error(
        "loading eBPF needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); running as uid {0}"
    )]
    NotRoot(u32),
    /// The kernel refused the object.
    #[error("the kernel refused the eBPF object: {0}")]
    Load(Box<aya::EbpfError>),
    /// A program failed to load or attach.
    #[error("eBPF program `{program}` ({category}/{name}): {source}")]
    Program {
        program: String,
        category: String,
        name: String,
        #[source]
        source: Box<ProgramError>,
    },
    /// A map is missing or of the wrong type.
    #[error("eBPF map `{map}`: {reason}")]
    Map { map: &'static str, reason: String },
    /// tracefs is not mounted, so tracepoints cannot be attached.
    #[error("tracefs is not mounted at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing)")]
    NoTracefs,
    /// Reading the ring buffer failed.
    #[error("ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// Handle to the kernel's watch list, shared with the container runtime watcher.
#[derive(Clone)]
pub struct WatchList {
    map: Arc<Mutex<BpfHashMap<MapData, u64, u32>>>,
}

impl WatchList {
    /// Starts reporting events from the cgroup `id`.
    pub fn watch(&self, id: u64) -> Result<(), SensorError> {
        self.map
            .lock()
            .expect("watch list lock")
            .insert(id, WatchFlags::EVENTS, 0)
            .map_err(|e| SensorError::Map {
                map: WATCHED_MAP,
                reason: e.to_string(),
            })
    }

    /// Stops reporting events from the cgroup `id` (a no-op if it was not watched).
    pub fn unwatch(&self, id: u64) {
        let _ = self.map.lock().expect("watch list lock").remove(&id);
    }
}

/// A loaded, attached sensor.
pub struct Sensor {
    // Keeps programs attached for as long as the sensor lives.
    _bpf: Ebpf,
    ring: RingBuf<MapData>,
    stats: KernelStats,
    watch: WatchList,
    attached: Attached,
}

/// The program called `name` in the object, as the kind `P` (`err` names it in a wrong-kind
/// error).
fn program_as<'a, P>(
    bpf: &'a mut Ebpf,
    name: &str,
    err: impl FnOnce(ProgramError) -> SensorError,
) -> Result<&'a mut P, SensorError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    bpf.program_mut(name)
        .ok_or_else(|| SensorError::Map {
            map: "programs",
            reason: format!("program {name} missing from the object"),
        })?
        .try_into()
        .map_err(err)
}

impl Sensor {
    /// Loads the object, sizes the ring buffer, and attaches the syscall programs the way
    /// `attach` says plus the process lifecycle tracepoints.
    pub fn load(ring_buffer_bytes: u32, attach: SensorAttach) -> Result<Self, SensorError> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            return Err(SensorError::NotRoot(uid));
        }
        if !std::path::Path::new("/sys/kernel/tracing/events").exists()
            && !std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
        {
            return Err(SensorError::NoTracefs);
        }
        let mut bpf = EbpfLoader::new()
            .map_max_entries(EVENTS_MAP, ring_buffer_bytes)
            .load(BPF_OBJECT)
            .map_err(|e| SensorError::Load(Box::new(e)))?;
        let mut attached = Attached::default();
        if attach == SensorAttach::Raw {
            for (program, tp) in RAW_PROGRAMS {
                let err = |source| SensorError::Program {
                    program: program.to_string(),
                    category: "raw_syscalls".to_string(),
                    name: tp.to_string(),
                    source: Box::new(source),
                };
                let prog: &mut RawTracePoint = program_as(&mut bpf, program, err)?;
                prog.load().map_err(err)?;
                prog.attach(tp).map_err(err)?;
                attached.programs += 1;
            }
        }
        for (program, category, name, required) in tracepoints(attach) {
            let err = |source| SensorError::Program {
                program: program.clone(),
                category: category.to_string(),
                name: name.clone(),
                source: Box::new(source),
            };
            let prog: &mut TracePoint = program_as(&mut bpf, &program, err)?;
            let tracefs = Path::new("/sys/kernel/tracing/events")
                .join(category)
                .join(&name);
            if !required && !tracefs.exists() {
                attached.missing.push(name.clone());
                continue;
            }
            prog.load().map_err(err)?;
            prog.attach(category, &name).map_err(err)?;
            attached.programs += 1;
        }
        let take = |bpf: &mut Ebpf, map: &'static str| {
            bpf.take_map(map).ok_or(SensorError::Map {
                map,
                reason: "missing from the object".into(),
            })
        };
        let ring =
            RingBuf::try_from(take(&mut bpf, EVENTS_MAP)?).map_err(|e| SensorError::Map {
                map: EVENTS_MAP,
                reason: e.to_string(),
            })?;
        let stats =
            PerCpuArray::try_from(take(&mut bpf, STATS_MAP)?).map_err(|e| SensorError::Map {
                map: STATS_MAP,
                reason: e.to_string(),
            })?;
        let watched =
            BpfHashMap::try_from(take(&mut bpf, WATCHED_MAP)?).map_err(|e| SensorError::Map {
                map: WATCHED_MAP,
                reason: e.to_string(),
            })?;
        let by_cgroup = aya::maps::PerCpuHashMap::try_from(take(&mut bpf, DROPS_BY_CGROUP_MAP)?)
            .map_err(|e| SensorError::Map {
                map: DROPS_BY_CGROUP_MAP,
                reason: e.to_string(),
            })?;
        Ok(Self {
            _bpf: bpf,
            ring,
            stats: KernelStats {
                map: Arc::new(Mutex::new(stats)),
                by_cgroup: Arc::new(Mutex::new(by_cgroup)),
            },
            watch: WatchList {
                map: Arc::new(Mutex::new(watched)),
            },
            attached,
        })
    }

    /// The watch list handle.
    pub fn watch_list(&self) -> WatchList {
        self.watch.clone()
    }

    /// What was attached and what this kernel lacks.
    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    /// The kernel counters, for registering as a Prometheus collector.
    pub fn kernel_stats(&self) -> KernelStats {
        self.stats.clone()
    }

    /// Runs until `tx` closes: reads the ring buffer and sends decoded events in batches of at
    /// most [`BATCH`] (one channel operation per batch, not per event: at hundreds of thousands
    /// of events a second the per-event wake-ups cost more than the events), and exports the
    /// kernel counters every `stats_interval`.
    pub async fn run(
        self,
        tx: mpsc::Sender<Vec<SensorEvent>>,
        metrics: Arc<AgentMetrics>,
        stats_interval: Duration,
        drops: Option<mpsc::Sender<DropReport>>,
    ) -> Result<(), SensorError> {
        let Sensor {
            _bpf, ring, stats, ..
        } = self;
        let stats_task = tokio::spawn(warn_on_drops(stats, stats_interval, drops));
        let read = PerKind::new(&metrics.events_read);
        // `AsyncFd::new` is deprecated in favour of the `unsafe` `register`, whose contract is that
        // the fd stays open while registered. `RingBuf` owns its map fd (an `OwnedFd`) and the
        // `AsyncFd` owns the `RingBuf`, so that holds; this keeps the crate free of `unsafe`.
        #[allow(deprecated)]
        let mut fd = AsyncFd::new(ring)?;
        let result = 'outer: loop {
            let mut guard = match fd.readable_mut().await {
                Ok(g) => g,
                Err(e) => break Err(SensorError::Io(e)),
            };
            // Clear readiness before draining: a record committed after our last `next()` then
            // wakes us again instead of waiting for the one after it.
            guard.clear_ready();
            let ring = guard.get_inner_mut();
            loop {
                let mut batch = Vec::with_capacity(BATCH);
                while batch.len() < BATCH {
                    let Some(item) = ring.next() else { break };
                    match decode::decode(&item) {
                        Ok(ev) => batch.push(ev),
                        Err(e) => {
                            metrics.decode_errors.inc();
                            tracing::warn!(error = %e, "undecodable ring buffer record");
                        }
                    }
                }
                if batch.is_empty() {
                    break;
                }
                let full = batch.len() == BATCH;
                for ev in &batch {
                    read.inc_by(ev.kind_name(), 1);
                }
                if tx.send(batch).await.is_err() {
                    break 'outer Ok(());
                }
                if !full {
                    break;
                }
            }
        };
        stats_task.abort();
        result
    }
}

/// Most events handed to the pipeline in one channel message.
pub const BATCH: usize = 256;

/// The kernel's per-kind emitted/dropped counters, read at every scrape (never stale) and
/// exported as `brainbox_sensor_kernel_events_total` and `brainbox_sensor_kernel_drops_total`.
#[derive(Clone)]
pub struct KernelStats {
    map: Arc<Mutex<PerCpuArray<MapData, u64>>>,
    by_cgroup: Arc<Mutex<aya::maps::PerCpuHashMap<MapData, u64, u64>>>,
}

impl std::fmt::Debug for KernelStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelStats")
    }
}

impl KernelStats {
    fn read_index(&self, index: u32) -> u64 {
        let map = self.map.lock().expect("stats lock");
        map.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// The summed-over-CPUs value of one counter (0 if unreadable). For
    /// [`EventKind::Syscall`] it is the sum over every syscall.
    pub fn read(&self, kind: EventKind, stat: Stat) -> u64 {
        match kind {
            EventKind::Syscall => Sc::ALL
                .iter()
                .map(|sc| self.read_index(sc_stat_index(*sc as u32, stat)))
                .sum(),
            k => self.read_index(stat_index(k as u32, stat)),
        }
    }

    /// Dropped events per cgroup v2 id since the sensor loaded (summed over CPUs), for the
    /// cgroups the LRU map still holds.
    pub fn drops_by_cgroup(&self) -> Vec<(u64, u64)> {
        let map = self.by_cgroup.lock().expect("drops lock");
        map.iter()
            .filter_map(Result::ok)
            .map(|(cg, per_cpu)| (cg, per_cpu.iter().sum()))
            .collect()
    }

    /// Per-series values as (`kind` label, value): one per non-syscall kind and one per syscall.
    pub fn series(&self, stat: Stat) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = EventKind::ALL
            .iter()
            .filter(|k| **k != EventKind::Syscall)
            .map(|k| (k.name(), self.read_index(stat_index(*k as u32, stat))))
            .collect();
        v.extend(
            Sc::ALL
                .iter()
                .map(|sc| (sc.name(), self.read_index(sc_stat_index(*sc as u32, stat)))),
        );
        v
    }
}

impl Collector for KernelStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, stat) in [
            (
                "sensor_kernel_events",
                "Events written to the ring buffer by the eBPF programs",
                Stat::Emitted,
            ),
            (
                "sensor_kernel_drops",
                "Events the eBPF programs could not deliver (ring buffer full)",
                Stat::Dropped,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (kind, value) in self.series(stat) {
                let label = KindLabel { kind: kind.into() };
                ConstCounter::new(value).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// Events the kernel dropped (ring buffer full) in one stats interval, by kind: the node's
/// detection was partly blind. Flooding syscalls to blind a sensor is a known way around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropReport {
    /// Dropped events per kind (`openat`, `exec`, ...), only kinds that dropped.
    pub by_kind: Vec<(&'static str, u64)>,
    /// Dropped events per cgroup v2 id (whose event could not be written: mostly the flood's
    /// own), only cgroups that dropped.
    pub by_cgroup: Vec<(u64, u64)>,
}

/// What grew since `last` among the counters `now`, which then become `last` (a key the
/// kernel's LRU map forgot is forgotten here too, so this stays as small as the map).
fn increments<K: Copy + Eq + std::hash::Hash>(
    last: &mut HashMap<K, u64>,
    now: Vec<(K, u64)>,
) -> Vec<(K, u64)> {
    let grew = now
        .iter()
        .filter_map(|&(k, n)| {
            let prev = last.get(&k).copied().unwrap_or(0);
            (n > prev).then(|| (k, n - prev))
        })
        .collect();
    *last = now.into_iter().collect();
    grew
}

/// Logs a warning whenever the kernel drops events, so a full ring buffer is loud in the logs
/// as well as in the metrics, and reports them on `reports` (for the agent's alert).
async fn warn_on_drops(
    stats: KernelStats,
    interval: Duration,
    reports: Option<mpsc::Sender<DropReport>>,
) {
    let mut last: HashMap<&'static str, u64> = HashMap::new();
    let mut last_cg: HashMap<u64, u64> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        // Per series, as exported (exec, fork, exit and each syscall), and per cgroup.
        let report = DropReport {
            by_kind: increments(&mut last, stats.series(Stat::Dropped)),
            by_cgroup: increments(&mut last_cg, stats.drops_by_cgroup()),
        };
        for (kind, n) in &report.by_kind {
            tracing::warn!(kind, dropped = n, "sensor dropped events: ring buffer full");
        }
        if let (Some(tx), false) = (&reports, report.by_kind.is_empty()) {
            // Never blocks the counters: a full channel means reports are already waiting.
            let _ = tx.try_send(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_report_growth_and_forget_what_the_map_forgot() {
        let mut last = HashMap::new();
        assert_eq!(increments(&mut last, vec![(1u64, 5), (2, 0)]), vec![(1, 5)]);
        assert_eq!(increments(&mut last, vec![(1, 5), (2, 3)]), vec![(2, 3)]);
        // Cgroup 1 left the LRU map: it is forgotten, and counts from zero if it comes back.
        assert_eq!(increments(&mut last, vec![(2, 3)]), vec![]);
        assert!(!last.contains_key(&1));
        assert_eq!(
            increments(&mut last, vec![(1, 2), (2, 4)]),
            vec![(1, 2), (2, 1)]
        );
    }
}

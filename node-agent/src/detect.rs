//! Detection: enriched sensor events evaluated by the Falco-compatible rule engine
//! (`brainbox-rules`). This module is the bridge: it answers the engine's field questions from an
//! [`Enriched`] event and turns matches into alerts.

use crate::dns::DnsNames;
use crate::enrich::{Arg, Enriched};
use brainbox_rules::{
    Capabilities, CompiledRule, Event, EventType, Field, FieldArg, RuleSet, Value,
};
use serde::Serialize;
use std::{
    borrow::Cow,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// Capability names by bit, for `thread.cap_effective`.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Renders a capability mask as space-separated `CAP_*` names.
pub fn cap_names(mask: u64) -> String {
    CAPS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Looks up a name for `id` in a passwd/group-format text.
pub fn name_for_id(text: &str, id: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

/// The engine's view of one enriched event.
pub struct View<'a> {
    ev: &'a Enriched,
    node: &'a str,
    etype: EventType,
    num: u64,
    dns: Option<&'a DnsNames>,
}

impl<'a> View<'a> {
    /// A view of `ev`; `None` when the engine does not know the event type.
    pub fn new(ev: &'a Enriched, node: &'a str, num: u64) -> Option<Self> {
        Some(View {
            ev,
            node,
            etype: EventType::from_name(ev.evt_type)?,
            num,
            dns: None,
        })
    }

    /// With the names rules compare `fd.sip.name`/`fd.cip.name` with, resolved.
    pub fn with_dns(mut self, dns: &'a DnsNames) -> Self {
        self.dns = Some(dns);
        self
    }

    fn names_of(&self, ip: Option<IpAddr>) -> Option<Value<'_>> {
        let names = self.dns?.names_of(ip?)?;
        Some(Value::List(
            names
                .into_iter()
                .map(|n| Value::Str(Cow::Owned(n.to_string())))
                .collect(),
        ))
    }

    fn ancestor_names(&self) -> Vec<&str> {
        let mut v = vec![self.ev.process.name.as_str()];
        v.extend(self.ev.lineage.iter().map(|a| a.name.as_str()));
        v
    }

    fn ancestor_exepaths(&self) -> Vec<&str> {
        let mut v = vec![self.ev.process.exepath.as_str()];
        v.extend(self.ev.lineage.iter().map(|a| a.exepath.as_str()));
        v
    }

    fn open_flags(&self) -> Option<&str> {
        match (self.ev.evt_type, self.ev.arg("flags")) {
            ("open" | "openat" | "openat2", Some(Arg::Str(f))) => Some(f),
            _ => None,
        }
    }

    /// A file of the container's root file system: through the process if it still runs, else
    /// through the container's init process.
    fn container_file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{}/root{path}", self.ev.hdr.pid))
            .ok()
            .or_else(|| {
                let init = self.ev.container.as_ref()?.init_pid;
                std::fs::read_to_string(format!("/proc/{init}/root{path}")).ok()
            })
    }

    fn endpoints(&self) -> (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>) {
        let fd = match &self.ev.fd {
            Some(fd) => fd,
            None => return (None, None),
        };
        // connect: we are the client; accept: we are the server.
        let local_is_client = !matches!(self.ev.evt_type, "accept" | "accept4");
        if local_is_client {
            (fd.client, fd.server)
        } else {
            (fd.server, fd.client)
        }
    }
}

fn s(v: &str) -> Option<Value<'_>> {
    Some(Value::Str(Cow::Borrowed(v)))
}

fn owned(v: String) -> Option<Value<'static>> {
    Some(Value::Str(Cow::Owned(v)))
}

fn list<'a>(items: Vec<&'a str>, arg: &FieldArg) -> Option<Value<'a>> {
    match arg {
        FieldArg::Index(i) => items.get(*i).map(|v| Value::Str(Cow::Borrowed(*v))),
        _ => Some(Value::List(
            items
                .into_iter()
                .map(|v| Value::Str(Cow::Borrowed(v)))
                .collect(),
        )),
    }
}

fn dirname(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "",
    }
}

impl Event for View<'_> {
    fn event_type(&self) -> EventType {
        self.etype
    }

    fn field(&self, field: Field, arg: &FieldArg) -> Option<Value<'_>> {
        let ev = self.ev;
        let p = &ev.process;
        let fd = ev.fd.as_ref();
        let c = ev.container.as_deref();
        match field {
            Field::EvtType => s(ev.evt_type),
            // The sensor reports each syscall once, at exit, with its entry arguments: it is
            // both the enter (`>`) and the exit (`<`) event Falco would have seen.
            Field::EvtDir => Some(Value::List(vec![
                Value::Str(Cow::Borrowed(">")),
                Value::Str(Cow::Borrowed("<")),
            ])),
            Field::EvtNum => Some(Value::Int(self.num as i64)),
            Field::EvtTime => {
                let t = crate::events::wall_time(ev.hdr.ts_ns);
                let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
                Some(Value::Int(ns as i64))
            }
            Field::EvtRawres => Some(Value::Int(ev.ret)),
            Field::EvtRes => {
                if ev.ret >= 0 {
                    s("SUCCESS")
                } else {
                    owned(format!(
                        "{:?}",
                        nix::errno::Errno::from_raw((-ev.ret) as i32)
                    ))
                }
            }
            Field::EvtFailed => Some(Value::Bool(ev.ret < 0)),
            Field::EvtIsOpenRead => self
                .open_flags()
                .map(|f| Value::Bool(f.starts_with("O_RDONLY") || f.starts_with("O_RDWR"))),
            Field::EvtIsOpenWrite => self
                .open_flags()
                .map(|f| Value::Bool(f.starts_with("O_WRONLY") || f.starts_with("O_RDWR"))),
            Field::EvtIsOpenExec => self.open_flags().map(|_| Value::Bool(false)),
            Field::EvtArg => {
                let v = match arg {
                    FieldArg::Name(n) => ev.arg(n)?,
                    FieldArg::Index(i) => &ev.args.get(*i)?.1,
                    FieldArg::None => return None,
                };
                match v {
                    Arg::Str(t) => s(t),
                    Arg::Num(n) => owned(n.to_string()),
                }
            }
            Field::EvtArgs => owned(
                ev.args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Field::EvtHostname => s(self.node),
            Field::ProcPid => Some(Value::Int(ev.hdr.pid as i64)),
            Field::ProcPpid => Some(Value::Int(p.ppid as i64)),
            Field::ProcSid => Some(Value::Int(p.sid as i64)),
            Field::ProcVpgid => Some(Value::Int(p.pgid as i64)),
            Field::ProcName => {
                (!p.name.is_empty()).then_some(Value::Str(Cow::Borrowed(p.name.as_str())))
            }
            Field::ProcExe => s(&p.exe),
            Field::ProcExepath => s(&p.exepath),
            Field::ProcCmdline => owned(p.cmdline()),
            Field::ProcArgs => owned(p.args.join(" ")),
            Field::ProcCwd => p.cwd.as_ref().map(|c| {
                let mut c = c.clone();
                if !c.ends_with('/') {
                    c.push('/');
                }
                Value::Str(Cow::Owned(c))
            }),
            Field::ProcTty => Some(Value::Int(p.tty as i64)),
            Field::ProcPname => ev
                .lineage
                .first()
                .map(|a| Value::Str(Cow::Borrowed(a.name.as_str()))),
            Field::ProcPexepath => ev
                .lineage
                .first()
                .map(|a| Value::Str(Cow::Borrowed(a.exepath.as_str()))),
            Field::ProcPcmdline => ev
                .lineage
                .first()
                .map(|a| Value::Str(Cow::Borrowed(a.cmdline.as_str()))),
            Field::ProcAname => list(self.ancestor_names(), arg),
            Field::ProcAexepath => list(self.ancestor_exepaths(), arg),
            Field::ProcSname => {
                if p.sid == ev.hdr.pid {
                    s(&p.name)
                } else {
                    ev.lineage
                        .iter()
                        .find(|a| a.pid == p.sid)
                        .map(|a| Value::Str(Cow::Borrowed(a.name.as_str())))
                }
            }
            Field::ProcIsExeUpperLayer => Some(Value::Bool(p.exe_upper_layer)),
            Field::ProcIsExeFromMemfd => Some(Value::Bool(p.exe_from_memfd)),
            Field::ThreadTid => Some(Value::Int(ev.hdr.tid as i64)),
            Field::ThreadCapEffective => p
                .cap_effective
                .map(|m| Value::Str(Cow::Owned(cap_names(m)))),
            Field::UserUid => Some(Value::Int(ev.hdr.uid as i64)),
            Field::UserName => {
                if ev.hdr.uid == 0 {
                    return s("root");
                }
                owned(name_for_id(
                    &self.container_file("/etc/passwd")?,
                    ev.hdr.uid,
                )?)
            }
            Field::UserLoginuid => {
                let l = std::fs::read_to_string(format!("/proc/{}/loginuid", ev.hdr.pid)).ok();
                let v = l.and_then(|l| l.trim().parse::<u32>().ok()).map(|u| {
                    if u == u32::MAX {
                        -1
                    } else {
                        u as i64
                    }
                });
                Some(Value::Int(v.unwrap_or(-1)))
            }
            Field::GroupGid => Some(Value::Int(ev.hdr.gid as i64)),
            Field::GroupName => {
                if ev.hdr.gid == 0 {
                    return s("root");
                }
                owned(name_for_id(
                    &self.container_file("/etc/group")?,
                    ev.hdr.gid,
                )?)
            }
            Field::FdNum => fd.map(|f| Value::Int(f.num)),
            Field::FdType => fd.map(|f| Value::Str(Cow::Borrowed(f.kind.as_str()))),
            Field::FdTypechar => fd.map(|f| Value::Str(Cow::Owned(f.typechar.to_string()))),
            Field::FdName | Field::FdNameraw => {
                fd.map(|f| Value::Str(Cow::Borrowed(f.name.as_str())))
            }
            Field::FdDirectory => fd
                .filter(|f| f.typechar == 'f' || f.typechar == 'd')
                .map(|f| Value::Str(Cow::Borrowed(dirname(&f.name)))),
            Field::FdFilename => fd
                .filter(|f| f.typechar == 'f' || f.typechar == 'd')
                .map(|f| Value::Str(Cow::Borrowed(f.name.rsplit('/').next().unwrap_or("")))),
            Field::FdCip | Field::FdCnet => fd.and_then(|f| f.client).map(|a| Value::Ip(a.ip())),
            Field::FdSip | Field::FdSnet => fd.and_then(|f| f.server).map(|a| Value::Ip(a.ip())),
            Field::FdSipName => self.names_of(fd.and_then(|f| f.server).map(|a| a.ip())),
            Field::FdCipName => self.names_of(fd.and_then(|f| f.client).map(|a| a.ip())),
            Field::FdLip => self.endpoints().0.map(|a| Value::Ip(a.ip())),
            Field::FdRip => self.endpoints().1.map(|a| Value::Ip(a.ip())),
            Field::FdIp | Field::FdNet => {
                let ips: Vec<IpAddr> = fd
                    .map(|f| {
                        [f.client, f.server]
                            .into_iter()
                            .flatten()
                            .map(|a| a.ip())
                            .collect()
                    })
                    .unwrap_or_default();
                (!ips.is_empty()).then(|| Value::List(ips.into_iter().map(Value::Ip).collect()))
            }
            Field::FdCport => fd
                .and_then(|f| f.client)
                .map(|a| Value::Int(a.port() as i64)),
            Field::FdSport => fd
                .and_then(|f| f.server)
                .map(|a| Value::Int(a.port() as i64)),
            Field::FdLport => self.endpoints().0.map(|a| Value::Int(a.port() as i64)),
            Field::FdRport => self.endpoints().1.map(|a| Value::Int(a.port() as i64)),
            Field::FdPort => {
                let ports: Vec<Value> = fd
                    .map(|f| {
                        [f.client, f.server]
                            .into_iter()
                            .flatten()
                            .map(|a| Value::Int(a.port() as i64))
                            .collect()
                    })
                    .unwrap_or_default();
                (!ports.is_empty()).then_some(Value::List(ports))
            }
            Field::FdL4proto => fd
                .filter(|f| !f.l4proto.is_empty())
                .map(|f| Value::Str(Cow::Borrowed(f.l4proto.as_str()))),
            Field::ContainerId => Some(match c {
                Some(c) => Value::Str(Cow::Borrowed(&c.id[..c.id.len().min(12)])),
                None => Value::Str(Cow::Borrowed("host")),
            }),
            Field::ContainerName => c.map(|c| Value::Str(Cow::Borrowed(c.name.as_str()))),
            Field::ContainerImage => c.map(|c| Value::Str(Cow::Borrowed(c.image.as_str()))),
            Field::ContainerImageRepository => {
                c.map(|c| Value::Str(Cow::Borrowed(image_parts(&c.image).0)))
            }
            Field::ContainerImageTag => {
                c.map(|c| Value::Str(Cow::Borrowed(image_parts(&c.image).1)))
            }
            Field::ContainerPrivileged => c.map(|c| Value::Bool(c.privileged)),
            Field::K8sPodName => c
                .and_then(|c| c.pod.as_deref())
                .map(|p| Value::Str(Cow::Borrowed(p))),
            Field::K8sNsName => c
                .and_then(|c| c.namespace.as_deref())
                .map(|n| Value::Str(Cow::Borrowed(n))),
            Field::ContainerStartTs => c.and_then(|c| c.start_ts).map(Value::Int),
            Field::K8sPodUid => c
                .and_then(|c| c.pod_uid.as_deref())
                .map(|u| Value::Str(Cow::Borrowed(u))),
            _ => None,
        }
    }
}

/// Splits `repo[:tag][@digest]` into repository and tag (`latest` when absent).
pub fn image_parts(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    // A colon after the last slash is a tag; one before it is a registry port.
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Always `alert`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Stable id: BLAKE3 of node, rule, event time, pid and sequence number.
    pub id: String,
    /// Wall-clock time of the triggering event.
    pub time: String,
    /// Node name.
    pub node: String,
    /// Rule name.
    pub rule: String,
    /// Rule priority (Falco's names, lowercase).
    pub priority: String,
    /// Rule tags.
    pub tags: Vec<String>,
    /// The rule's output with fields substituted (and redacted).
    pub output: String,
    /// The container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::runtime::ContainerInfo>,
    /// The process.
    pub process: AlertProcess,
    /// The syscall that triggered it.
    pub evt_type: &'static str,
}

/// The rule name of the agent's own alert about a blind sensor.
pub const DROP_RULE: &str = "Sensor dropped events";

/// Folds the sensor's drop reports into at most one alert per `every`: a flood meant to blind
/// the sensor (or a load spike) tells the operator once, with every drop counted.
pub struct DropAlerts {
    every: Duration,
    pending: std::collections::BTreeMap<&'static str, u64>,
    by_cgroup: std::collections::HashMap<u64, u64>,
    last: Option<std::time::Instant>,
}

/// Share of a window's drops one container must account for to be named as the alert's
/// container (its source), in percent.
const DROP_SOURCE_SHARE: u64 = 90;

impl DropAlerts {
    /// One alert per `every` at most.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            pending: Default::default(),
            by_cgroup: Default::default(),
            last: None,
        }
    }

    /// Adds a report.
    pub fn add(&mut self, r: &crate::sensor::DropReport) {
        for (k, n) in &r.by_kind {
            *self.pending.entry(k).or_default() += n;
        }
        for (cg, n) in &r.by_cgroup {
            *self.by_cgroup.entry(*cg).or_default() += n;
        }
    }

    /// The alert, when drops are pending and the last alert is `every` old. `container` names
    /// a cgroup: the sources are listed by container, and one that caused nearly all the drops
    /// becomes the alert's container (for triage; no response runs on this alert: a busy
    /// legitimate workload can fill a ring too).
    pub fn due(
        &mut self,
        now: std::time::Instant,
        node: &str,
        container: &dyn Fn(u64) -> Option<crate::runtime::ContainerInfo>,
    ) -> Option<Alert> {
        if self.pending.is_empty()
            || self
                .last
                .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        let total: u64 = self.pending.values().sum();
        let kinds: Vec<String> = self
            .pending
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let mut sources: Vec<(u64, u64)> = self.by_cgroup.drain().collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let named: Vec<(String, u64, Option<crate::runtime::ContainerInfo>)> = sources
            .iter()
            .take(5)
            .map(|&(cg, n)| {
                let c = container(cg);
                let name = c
                    .as_ref()
                    .map_or_else(|| format!("cgroup:{cg}"), |c| c.name.clone());
                (name, n, c)
            })
            .collect();
        let source_text: Vec<String> = named.iter().map(|(n, c, _)| format!("{n}={c}")).collect();
        let culprit = named
            .first()
            .filter(|(_, n, _)| *n * 100 >= total * DROP_SOURCE_SHARE)
            .and_then(|(_, _, c)| c.clone());
        let since = match self.last {
            Some(t) => format!("in the last {} s", now.duration_since(t).as_secs()),
            None => "since the agent started".to_owned(),
        };
        self.pending.clear();
        self.last = Some(now);
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let id_src = format!("{node}\0{DROP_RULE}\0{time}");
        Some(Alert {
            kind: "alert",
            id: blake3::hash(id_src.as_bytes()).to_hex()[..32].to_string(),
            time,
            node: node.to_owned(),
            rule: DROP_RULE.into(),
            priority: "critical".into(),
            tags: vec![
                "brainbox".into(),
                "sensor".into(),
                "mitre_defense_evasion".into(),
            ],
            output: format!(
                "The sensor dropped {total} events {since} (ring buffer full): detection on this \
                 node was partly blind | n_drops={total} {} sources: {}",
                kinds.join(" "),
                if source_text.is_empty() {
                    "-".to_owned()
                } else {
                    source_text.join(" ")
                }
            ),
            container: culprit,
            process: AlertProcess {
                pid: std::process::id(),
                name: "brainbox-node-agent".into(),
                cmdline: String::new(),
                exepath: String::new(),
                uid: 0,
            },
            evt_type: "internal",
        })
    }
}

/// The process part of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertProcess {
    /// pid (host namespace).
    pub pid: u32,
    /// comm.
    pub name: String,
    /// Command line.
    pub cmdline: String,
    /// Executable path.
    pub exepath: String,
    /// uid.
    pub uid: u32,
}

/// Errors loading rules.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A rules file is missing.
    #[error("rules file {0} does not exist")]
    Missing(PathBuf),
    /// A rules file is malformed.
    #[error("{0}")]
    Load(String),
}

/// The loaded rule set plus what alerts need.
pub struct Detector {
    rules: RuleSet,
    seq: AtomicU64,
    dns: Arc<DnsNames>,
}

impl Detector {
    /// Loads and compiles rule files in order (upstream first, then overrides).
    pub fn load(files: &[PathBuf]) -> Result<Self, DetectError> {
        for f in files {
            if !Path::new(f).exists() {
                return Err(DetectError::Missing(f.clone()));
            }
        }
        let rules = RuleSet::load_files(files, &Capabilities::default())
            .map_err(|e| DetectError::Load(e.to_string()))?;
        let mut names = rules.compared_strings(Field::FdSipName);
        names.extend(rules.compared_strings(Field::FdCipName));
        Ok(Detector {
            rules,
            seq: AtomicU64::new(0),
            dns: DnsNames::new(names),
        })
    }

    /// Starts resolving the host names the rules compare `fd.sip.name`/`fd.cip.name` with,
    /// every `refresh` (a name that stops resolving keeps its addresses for an hour); a zero
    /// `refresh` resolves nothing.
    pub fn start_dns(&self, refresh: Duration) {
        if refresh.is_zero() {
            if !self.dns.names().is_empty() {
                tracing::warn!(
                    names = self.dns.names().len(),
                    "rules.dns_refresh_secs = 0: host names in rules are not resolved; \
                     fd.sip.name/fd.cip.name checks never match"
                );
            }
            return;
        }
        self.dns.start(refresh, Duration::from_secs(3600));
    }

    /// The compiled rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Rules that load and can be evaluated.
    pub fn evaluable(&self) -> usize {
        self.rules.evaluable()
    }

    /// Evaluates one event; returns an alert per matching rule.
    pub fn evaluate(
        &self,
        ev: &Enriched,
        node: &str,
        redact: &dyn Fn(&str) -> String,
    ) -> Vec<Alert> {
        let num = self.seq.fetch_add(1, Ordering::Relaxed);
        let Some(view) = View::new(ev, node, num) else {
            return vec![];
        };
        let view = view.with_dns(&self.dns);
        let mut out = vec![];
        self.rules.for_each_match(&view, |r: &CompiledRule| {
            out.push(alert(r, &view, node, num, redact));
        });
        out
    }
}

fn alert(
    r: &CompiledRule,
    view: &View<'_>,
    node: &str,
    num: u64,
    redact: &dyn Fn(&str) -> String,
) -> Alert {
    let ev = view.ev;
    let id_src = format!(
        "{node}\0{}\0{}\0{}\0{num}",
        r.name, ev.hdr.ts_ns, ev.hdr.pid
    );
    Alert {
        kind: "alert",
        id: blake3::hash(id_src.as_bytes()).to_hex()[..32].to_string(),
        time: humantime::format_rfc3339_nanos(crate::events::wall_time(ev.hdr.ts_ns)).to_string(),
        node: node.to_owned(),
        rule: r.name.clone(),
        priority: r.priority.as_str().to_owned(),
        tags: r.tags.clone(),
        output: r.render_output(view, redact),
        container: ev.container.as_deref().cloned(),
        process: AlertProcess {
            pid: ev.hdr.pid,
            name: ev.process.name.clone(),
            cmdline: redact(&ev.process.cmdline()),
            exepath: ev.process.exepath.clone(),
            uid: ev.hdr.uid,
        },
        evt_type: ev.evt_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_render() {
        assert_eq!(cap_names(0), "");
        assert_eq!(cap_names(1 << 21), "CAP_SYS_ADMIN");
        assert_eq!(cap_names((1 << 16) | 1), "CAP_CHOWN CAP_SYS_MODULE");
    }

    #[test]
    fn passwd_lookup() {
        let t = "root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n";
        assert_eq!(name_for_id(t, 1000).as_deref(), Some("agent"));
        assert_eq!(name_for_id(t, 5), None);
        assert_eq!(name_for_id("garbage\n::\n", 0), None);
    }

    #[test]
    fn image_parts_split_tag_and_registry_port() {
        assert_eq!(
            image_parts("brainbox-lab/busybox:abc"),
            ("brainbox-lab/busybox", "abc")
        );
        assert_eq!(image_parts("reg:5000/x/y"), ("reg:5000/x/y", "latest"));
        assert_eq!(
            image_parts("reg:5000/x/y:1@sha256:00"),
            ("reg:5000/x/y", "1")
        );
    }

    #[test]
    fn drop_alerts_are_rate_limited_and_count_every_drop() {
        use crate::sensor::DropReport;
        let mut d = DropAlerts::new(Duration::from_secs(30));
        let t0 = std::time::Instant::now();
        let flooder = crate::runtime::ContainerInfo {
            name: "flooder".into(),
            cgroup_id: 7,
            ..Default::default()
        };
        let table = |cg: u64| (cg == 7).then(|| flooder.clone());
        assert!(
            d.due(t0, "n", &table).is_none(),
            "nothing dropped, nothing to say"
        );
        d.add(&DropReport {
            by_kind: vec![("openat", 100), ("exec", 2)],
            by_cgroup: vec![(7, 95), (9, 7)],
        });
        let a = d
            .due(t0, "n", &table)
            .expect("first drops are reported at once");
        assert_eq!(a.rule, DROP_RULE);
        assert_eq!(a.priority, "critical");
        assert!(
            a.output
                .contains("n_drops=102 exec=2 openat=100 sources: flooder=95 cgroup:9=7"),
            "{}",
            a.output
        );
        // 95 of 102 (93 %): the flooder is named as the alert's container.
        assert_eq!(
            a.container.as_ref().map(|c| c.name.as_str()),
            Some("flooder")
        );
        // More drops within the window wait, and are summed.
        d.add(&DropReport {
            by_kind: vec![("openat", 5)],
            by_cgroup: vec![(7, 5)],
        });
        d.add(&DropReport {
            by_kind: vec![("openat", 7)],
            by_cgroup: vec![(9, 7)],
        });
        assert!(d.due(t0 + Duration::from_secs(10), "n", &table).is_none());
        let b = d.due(t0 + Duration::from_secs(30), "n", &table).unwrap();
        assert!(b.output.contains("n_drops=12 openat=12"), "{}", b.output);
        assert!(b.output.contains("in the last 30 s"), "{}", b.output);
        // No source has 90 % of them: nobody is named.
        assert!(b.container.is_none(), "{:?}", b.container);
        assert_ne!(a.id, b.id);
        assert!(d.due(t0 + Duration::from_secs(90), "n", &table).is_none());
    }

    #[test]
    fn dirname_of_paths() {
        assert_eq!(dirname("/var/log/app.log"), "/var/log");
        assert_eq!(dirname("/etc"), "/");
        assert_eq!(dirname("rel"), "");
    }
}

#[cfg(test)]
mod vendored {
    /// The vendored upstream rules must stay byte-identical to the reference copy.
    #[test]
    fn vendored_falco_rules_are_unchanged() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let ours = std::fs::read(root.join("rules/falco/falco_rules.yaml")).unwrap();
        let reference = root.join("../shared/falco/falco_rules.yaml");
        match std::fs::read(&reference) {
            Ok(theirs) => assert!(
                ours == theirs,
                "rules/falco/falco_rules.yaml differs from {}",
                reference.display()
            ),
            // Outside this workplace there is no reference copy; the digest pins the content.
            Err(_) => assert_eq!(
                blake3::hash(&ours).to_hex().as_str(),
                VENDORED_BLAKE3,
                "rules/falco/falco_rules.yaml was changed"
            ),
        }
    }

    const VENDORED_BLAKE3: &str =
        "01ef94c0214e368699e90e436b13c6301df6b6d6a50513d5272c864fd870e7d6";
}

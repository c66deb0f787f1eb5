//! Recorded events back into the rule engine's input.
//!
//! The agent writes enriched events as JSON lines (`events.output`, see docs/events.md). This
//! module turns such a recording into [`OwnedEvent`]s, the engine's own event form, so a real
//! stream can be replayed through the rules (the rules benchmark does, and so can an operator
//! testing a rule change). It rebuilds the [`Enriched`] event from the record and asks the same
//! [`View`] the live agent evaluates for every field the sensor provides, so a replayed event
//! carries exactly the values the live engine saw — except the few the agent reads from the
//! live system at evaluation time, which a recording cannot have (see [`engine_event`]).

use crate::{
    detect::View,
    enrich::{Ancestor, Arg, Enriched, FdInfo},
    process::ProcInfo,
    runtime::ContainerInfo,
    sensor::decode::Header,
};
use brainbox_rules::{fields::FIELDS, Event, EventType, Field, FieldArg, OwnedEvent, Value};
use serde_json::Value as J;
use std::{borrow::Cow, sync::Arc};

/// Argument names the enrichment produces (`Enriched::args` holds `&'static str` names).
const ARG_NAMES: &[&str] = &[
    "addr",
    "cmd",
    "dev",
    "dir",
    "dirfd",
    "domain",
    "egid",
    "euid",
    "fd",
    "filename",
    "flags",
    "gid",
    "len",
    "linkdirfd",
    "linkpath",
    "mode",
    "name",
    "newdir",
    "newdirfd",
    "newfd",
    "newpath",
    "nstype",
    "olddir",
    "olddirfd",
    "oldfd",
    "oldpath",
    "path",
    "pid",
    "proto",
    "request",
    "res",
    "rgid",
    "ruid",
    "sgid",
    "sig",
    "suid",
    "target",
    "tuple",
    "type",
    "uargs",
    "uid",
];

/// Why a record could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The line is not JSON.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A required part of the record is missing or has the wrong type.
    #[error("record has no valid `{0}`")]
    Missing(&'static str),
    /// The event type is not one the engine knows.
    #[error("unknown event type `{0}`")]
    EventType(String),
    /// An argument name the enrichment never produces.
    #[error("unknown argument `{0}`")]
    Arg(String),
    /// An fd address that does not parse.
    #[error("bad socket address `{0}`")]
    Addr(String),
}

fn u32_of(v: &J, key: &'static str) -> Result<u32, ReplayError> {
    v[key]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(ReplayError::Missing(key))
}

fn str_of<'a>(v: &'a J, key: &'static str) -> Result<&'a str, ReplayError> {
    v[key].as_str().ok_or(ReplayError::Missing(key))
}

fn opt_str(v: &J, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_owned)
}

/// Converts one recorded line. `Ok(None)` for lines that are not sensor events (alerts,
/// response records). `num` becomes `evt.num`.
///
/// Fields the agent reads from the live system when a rule asks (`user.name` and `group.name`
/// of a non-root id, from the container's `/etc/passwd`; `user.loginuid` from `/proc`) are not
/// in a recording: `user.name`/`group.name` are `root` for id 0 and absent otherwise, and
/// `user.loginuid` is -1, which is what the agent reports for a process without a login
/// session or one that has exited.
pub fn engine_event(line: &str, num: u64) -> Result<Option<OwnedEvent>, ReplayError> {
    let rec: J = serde_json::from_str(line).map_err(|e| ReplayError::Json(e.to_string()))?;
    if !matches!(rec["type"].as_str(), Some("exec" | "syscall")) {
        return Ok(None);
    }
    let name = str_of(&rec, "evt_type")?;
    let etype = EventType::from_name(name).ok_or_else(|| ReplayError::EventType(name.into()))?;
    let p = &rec["process"];
    let pid = u32_of(p, "pid")?;
    let hdr = Header {
        ts_ns: 0,
        cpu: 0,
        pid,
        tid: u32_of(p, "tid")?,
        ppid: u32_of(p, "ppid")?,
        uid: u32_of(p, "uid")?,
        gid: u32_of(p, "gid")?,
        cgroup_id: rec["cgroup_id"].as_u64().unwrap_or(0),
    };
    let mut proc = ProcInfo::unknown(pid);
    proc.ppid = hdr.ppid;
    proc.uid = hdr.uid;
    proc.gid = hdr.gid;
    proc.name = opt_str(p, "name").unwrap_or_default();
    proc.exe = opt_str(p, "exe").unwrap_or_default();
    proc.exepath = opt_str(p, "exepath").unwrap_or_default();
    // argv[0] is `exe`; the table keeps the rest.
    proc.args = p["argv"]
        .as_array()
        .map(|a| a.iter().skip(1).filter_map(opt_str_val).collect())
        .unwrap_or_default();
    proc.tty = p["tty"].as_u64().unwrap_or(0) as u32;
    proc.sid = p["sid"].as_u64().unwrap_or(0) as u32;
    proc.pgid = p["pgid"].as_u64().unwrap_or(0) as u32;
    proc.cwd = opt_str(p, "cwd");
    proc.exe_upper_layer = p["exe_upper_layer"].as_bool().unwrap_or(false);
    proc.exe_from_memfd = p["exe_from_memfd"].as_bool().unwrap_or(false);
    proc.cap_effective = p["cap_effective"].as_u64();

    let lineage: Vec<Ancestor> = rec["lineage"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Ancestor {
                    pid: x["pid"].as_u64().unwrap_or(0) as u32,
                    name: opt_str(x, "name").unwrap_or_default(),
                    exepath: opt_str(x, "exepath").unwrap_or_default(),
                    cmdline: opt_str(x, "cmdline").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();

    let mut args = vec![];
    if let Some(m) = rec["args"].as_object() {
        for (k, v) in m {
            let name = ARG_NAMES
                .iter()
                .find(|n| **n == k.as_str())
                .ok_or_else(|| ReplayError::Arg(k.clone()))?;
            let v = match v {
                J::Number(n) => Arg::Num(n.as_i64().ok_or(ReplayError::Missing("args"))?),
                J::String(s) => Arg::Str(s.clone()),
                _ => return Err(ReplayError::Missing("args")),
            };
            args.push((*name, v));
        }
    }
    let fd = match &rec["fd"] {
        J::Object(_) => Some(fd_of(&rec["fd"])?),
        _ => None,
    };
    let container = match &rec["container"] {
        J::Object(_) => Some(Arc::new(container_of(&rec["container"], hdr.cgroup_id))),
        _ => None,
    };
    let enriched = Enriched {
        evt_type: etype.name(),
        hdr,
        container,
        process: Arc::new(proc),
        lineage: lineage.into(),
        ret: rec["ret"].as_i64().unwrap_or(0),
        args,
        fd,
        truncated: p["truncated"].as_bool().unwrap_or(false),
    };
    let node = rec["node"].as_str().unwrap_or("");
    let view =
        View::new(&enriched, node, num).ok_or_else(|| ReplayError::EventType(name.into()))?;

    let mut out = OwnedEvent::new(etype);
    // proc.name first: OwnedEvent keeps it as proc.aname[0].
    if let Some(v) = view.field(Field::ProcName, &FieldArg::None) {
        out.set(Field::ProcName, v.into_owned());
    }
    let anames: Vec<&str> = enriched.lineage.iter().map(|a| a.name.as_str()).collect();
    out.set_ancestors(&anames);
    let apaths: Vec<&str> = enriched
        .lineage
        .iter()
        .map(|a| a.exepath.as_str())
        .collect();
    out.set_ancestor_exepaths(&enriched.process.exepath, &apaths);
    for (name, v) in &enriched.args {
        out.set_arg(name, &v.to_string());
    }
    for info in FIELDS {
        let f = info.field;
        let v = match f {
            // Set above, or derived by OwnedEvent from what was set.
            Field::EvtType | Field::ProcName | Field::ProcAname | Field::ProcAexepath => continue,
            Field::EvtArg | Field::EvtArgs => continue,
            // Read from the live system by the agent; not in a recording (see above).
            Field::UserName => (enriched.hdr.uid == 0).then_some(Value::Str(Cow::Borrowed("root"))),
            Field::GroupName => {
                (enriched.hdr.gid == 0).then_some(Value::Str(Cow::Borrowed("root")))
            }
            Field::UserLoginuid => Some(Value::Int(-1)),
            // The recorded wall-clock time, not one derived from a boot-time stamp.
            Field::EvtTime => rec["time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| Value::Int(d.as_nanos() as i64)),
            f => view.field(f, &FieldArg::None),
        };
        if let Some(v) = v {
            out.set(f, v.into_owned());
        }
    }
    Ok(Some(out))
}

fn opt_str_val(v: &J) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn fd_of(v: &J) -> Result<FdInfo, ReplayError> {
    let addr = |k: &str| -> Result<Option<std::net::SocketAddr>, ReplayError> {
        match v[k].as_str() {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| ReplayError::Addr(s.into())),
        }
    };
    Ok(FdInfo {
        num: v["num"].as_i64().unwrap_or(-1),
        kind: opt_str(v, "type").unwrap_or_default(),
        typechar: v["typechar"]
            .as_str()
            .and_then(|s| s.chars().next())
            .unwrap_or('?'),
        name: opt_str(v, "name").unwrap_or_default(),
        client: addr("client")?,
        server: addr("server")?,
        l4proto: opt_str(v, "l4proto").unwrap_or_default(),
    })
}

fn container_of(v: &J, cgroup_id: u64) -> ContainerInfo {
    ContainerInfo {
        id: opt_str(v, "id").unwrap_or_default(),
        name: opt_str(v, "name").unwrap_or_default(),
        image: opt_str(v, "image").unwrap_or_default(),
        image_id: opt_str(v, "image_id").unwrap_or_default(),
        profile: opt_str(v, "profile").unwrap_or_default(),
        pod: opt_str(v, "pod"),
        namespace: opt_str(v, "namespace"),
        pod_uid: None,
        role: opt_str(v, "role"),
        cgroup_id,
        cgroup_dir: Default::default(),
        writable: None,
        // Not in the event output; no upstream stable rule reads `container.privileged`.
        privileged: false,
        init_pid: 0,
        start_ts: v.get("start_ts").and_then(J::as_i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = r#"{"type":"exec","evt_type":"execve","time":"2026-11-25T16:26:36.627471791Z","node":"vm","container":{"id":"47ee5340aaaabbbbcccc","name":"demo-agent","image":"brainbox-lab/busybox:29ec5e372dd2","image_id":"sha256:1","profile":"default","pod":"demo","namespace":"team-a","role":"agent","start_ts":1764174396000000000},"cgroup_id":538,"process":{"pid":32458,"tid":32458,"ppid":32372,"uid":0,"gid":0,"name":"cat","exe":"cat","exepath":"/bin/cat","argv":["cat","/etc/shadow"],"tty":34816,"sid":32458,"pgid":32458,"cap_effective":2097152,"cwd":"/","exe_upper_layer":false,"exe_from_memfd":false,"truncated":false},"lineage":[{"pid":32372,"name":"runc","exepath":"/usr/bin/runc","cmdline":"runc init"}],"ret":0,"args":{"filename":"/bin/cat"}}"#;

    const CONNECT: &str = r#"{"type":"syscall","evt_type":"connect","time":"2026-11-25T16:26:37Z","node":"vm","cgroup_id":538,"process":{"pid":5,"tid":5,"ppid":1,"uid":1000,"gid":1000,"name":"nc","exe":"nc","exepath":"/bin/busybox","argv":["nc","10.0.0.1","443"],"tty":0,"sid":1,"pgid":5,"exe_upper_layer":false,"exe_from_memfd":false,"truncated":false},"lineage":[],"ret":0,"args":{"fd":3,"addr":"10.0.0.1:443"},"fd":{"num":3,"type":"ipv4","typechar":"4","name":"172.17.0.2:40000->10.0.0.1:443","client":"172.17.0.2:40000","server":"10.0.0.1:443","l4proto":"tcp"}}"#;

    fn get(ev: &OwnedEvent, f: Field) -> Option<Value<'_>> {
        ev.field(f, &FieldArg::None)
    }

    #[test]
    fn exec_record_gives_the_fields_the_live_view_gives() {
        let ev = engine_event(EXEC, 7).unwrap().unwrap();
        assert_eq!(ev.event_type(), EventType::from_name("execve").unwrap());
        assert_eq!(get(&ev, Field::ProcName), Some(Value::Str("cat".into())));
        assert_eq!(
            get(&ev, Field::ProcCmdline),
            Some(Value::Str("cat /etc/shadow".into()))
        );
        assert_eq!(get(&ev, Field::ProcPname), Some(Value::Str("runc".into())));
        assert_eq!(get(&ev, Field::ProcTty), Some(Value::Int(34816)));
        assert_eq!(
            get(&ev, Field::ThreadCapEffective),
            Some(Value::Str("CAP_SYS_ADMIN".into()))
        );
        assert_eq!(get(&ev, Field::UserName), Some(Value::Str("root".into())));
        assert_eq!(get(&ev, Field::EvtNum), Some(Value::Int(7)));
        assert_eq!(
            get(&ev, Field::ContainerId),
            Some(Value::Str("47ee5340aaaa".into()))
        );
        assert_eq!(get(&ev, Field::K8sPodName), Some(Value::Str("demo".into())));
        assert_eq!(
            get(&ev, Field::K8sNsName),
            Some(Value::Str("team-a".into()))
        );
        assert_eq!(
            get(&ev, Field::ContainerImageRepository),
            Some(Value::Str("brainbox-lab/busybox".into()))
        );
        assert_eq!(
            ev.field(Field::EvtArg, &FieldArg::Name("filename".into())),
            Some(Value::Str("/bin/cat".into()))
        );
        // The JSON form reads back to the same event.
        let again = OwnedEvent::from_json_value(&ev.to_json()).unwrap();
        assert_eq!(ev, again);
    }

    /// Every field the table says comes from the container table has a value for a container
    /// that has everything (a field that silently never matches makes its rules dead).
    #[test]
    fn every_container_field_is_served() {
        let ev = engine_event(EXEC, 7).unwrap().unwrap();
        let mut missing = vec![];
        for f in brainbox_rules::fields::FIELDS {
            if f.source == brainbox_rules::fields::Source::Container
                && get(&ev, f.field).is_none()
                // Kubelet's pod UID label is not part of the event record.
                && f.field != Field::K8sPodUid
            {
                missing.push(f.name);
            }
        }
        assert!(
            missing.is_empty(),
            "container fields without a value: {missing:?}"
        );
        assert_eq!(
            get(&ev, Field::ContainerStartTs),
            Some(Value::Int(1_764_174_396_000_000_000))
        );
    }

    #[test]
    fn connect_record_keeps_both_endpoints() {
        let ev = engine_event(CONNECT, 1).unwrap().unwrap();
        assert_eq!(
            get(&ev, Field::FdSip),
            Some(Value::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(get(&ev, Field::FdRport), Some(Value::Int(443)));
        assert_eq!(get(&ev, Field::FdLport), Some(Value::Int(40000)));
        assert!(matches!(get(&ev, Field::FdIp), Some(Value::List(l)) if l.len() == 2));
        // Non-root without the container's passwd: absent, as documented.
        assert_eq!(get(&ev, Field::UserName), None);
        assert_eq!(
            get(&ev, Field::ContainerId),
            Some(Value::Str("host".into()))
        );
        let again = OwnedEvent::from_json_value(&ev.to_json()).unwrap();
        assert_eq!(ev, again);
    }

    /// Every argument name the enrichment can produce is known here (a new one in enrich.rs
    /// without an entry would make recordings unreadable).
    #[test]
    fn every_enrichment_argument_name_is_known() {
        let src = include_str!("enrich.rs");
        let mut missing = vec![];
        for (i, _) in src.match_indices("(\"") {
            let rest = &src[i + 2..];
            let Some(end) = rest.find('"') else { continue };
            let name = &rest[..end];
            let after = rest[end + 1..].trim_start();
            // `("name", Arg::...)`, `("name", int(..))`, `("name", num(..))`, `("name", path(..))`...
            let is_arg = after.starts_with(',')
                && after[1..]
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_alphabetic())
                && !after[1..].trim_start().starts_with('\'');
            if is_arg
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !ARG_NAMES.contains(&name)
            {
                missing.push(name.to_owned());
            }
        }
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "argument names missing from ARG_NAMES: {missing:?}"
        );
    }

    #[test]
    fn other_lines_are_skipped_and_garbage_is_an_error() {
        assert!(engine_event(r#"{"type":"alert","rule":"x"}"#, 1)
            .unwrap()
            .is_none());
        assert!(engine_event("not json", 1).is_err());
        assert!(engine_event(r#"{"type":"syscall","evt_type":"nope"}"#, 1).is_err());
        let bad_arg = CONNECT.replace("\"addr\":", "\"bogus\":");
        assert!(matches!(
            engine_event(&bad_arg, 1),
            Err(ReplayError::Arg(_))
        ));
    }
}

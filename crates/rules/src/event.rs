//! What the engine evaluates: an [`Event`] with an event type and typed field access.
//!
//! The node agent implements [`Event`] for its enriched sensor events. [`OwnedEvent`] is a
//! simple implementation (a field map) used by tests, benchmarks and `rules` tooling; it reads
//! and writes one JSON object per event (`{"evt.type": "execve", "proc.name": "bash", ...}`).

use crate::fields::{Field, FieldArg, FieldType, FIELDS, FIELD_COUNT};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// A field value handed to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Text.
    Str(Cow<'a, str>),
    /// A number.
    Int(i64),
    /// A flag.
    Bool(bool),
    /// An address.
    Ip(IpAddr),
    /// Several values (`proc.aname` without index): a check matches if any element matches.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// Converts to an owned value (no borrows).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Int(i) => Value::Int(i),
            Value::Bool(b) => Value::Bool(b),
            Value::Ip(ip) => Value::Ip(ip),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Ip(ip) => write!(f, "{ip}"),
            Value::List(l) => {
                f.write_str("(")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
        }
    }
}

macro_rules! event_types {
    ($($name:literal),* $(,)?) => {
        /// Every syscall / event name the engine knows, indexed by [`EventType`].
        pub const EVENT_TYPES: &[&str] = &[$($name),*];
    };
}

event_types![
    "execve",
    "execveat",
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "read",
    "write",
    "pread",
    "pwrite",
    "readv",
    "writev",
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "socket",
    "socketpair",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "shutdown",
    "dup",
    "dup2",
    "dup3",
    "ptrace",
    "mount",
    "umount",
    "umount2",
    "setns",
    "unshare",
    "bpf",
    "memfd_create",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "init_module",
    "finit_module",
    "delete_module",
    "setuid",
    "setgid",
    "setresuid",
    "setresgid",
    "setreuid",
    "setregid",
    "setsid",
    "setpgid",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "chdir",
    "fchdir",
    "chroot",
    "pivot_root",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "procexit",
    "kill",
    "tkill",
    "tgkill",
    "prctl",
    "capset",
    "mmap",
    "mprotect",
    "ioctl",
    "fcntl",
    "pipe",
    "pipe2",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "seccomp",
    "inotify_init",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "epoll_create",
    "getsockopt",
    "setsockopt",
    "process_vm_readv",
    "process_vm_writev",
    "splice",
    "truncate",
    "ftruncate",
    "utimensat",
    "quotactl",
    "container",
    "prlimit",
    "setrlimit",
    "mknod",
    "mknodat",
    "unlinkat2",
    "copy_file_range",
    "sendfile",
    "execve_fail",
    "fsconfig",
    "open_by_handle_at",
    "pidfd_open",
    "pidfd_getfd",
    "umask",
    "brk",
    "nanosleep",
    "futex",
    "poll",
    "select",
    "getdents",
    "getdents64",
    "stat",
    "lstat",
    "fstat",
    "access",
    "faccessat",
    "readlink",
    "readlinkat",
];

/// The number of bits in an [`EventTypeSet`]; every [`EventType`] is below it.
pub const MAX_EVENT_TYPES: usize = 256;
const _: () = assert!(EVENT_TYPES.len() <= MAX_EVENT_TYPES);

/// An event type, an index into [`EVENT_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u16);

impl EventType {
    /// Looks a syscall name up.
    pub fn from_name(name: &str) -> Option<EventType> {
        EVENT_TYPES
            .iter()
            .position(|n| *n == name)
            .map(|i| EventType(i as u16))
    }

    /// The syscall name (`?` for an out-of-range value).
    pub fn name(self) -> &'static str {
        EVENT_TYPES.get(self.0 as usize).copied().unwrap_or("?")
    }
}

/// A set of event types (a 256-bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct EventTypeSet([u64; MAX_EVENT_TYPES / 64]);

impl EventTypeSet {
    /// The empty set.
    pub const fn empty() -> Self {
        EventTypeSet([0; MAX_EVENT_TYPES / 64])
    }

    /// Every known event type.
    pub fn all() -> Self {
        let mut s = Self::empty();
        for i in 0..EVENT_TYPES.len() {
            s.insert(EventType(i as u16));
        }
        s
    }

    /// Builds a set from names; unknown names are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Self::empty();
        for n in names {
            if let Some(t) = EventType::from_name(n) {
                s.insert(t);
            }
        }
        s
    }

    /// Adds one type.
    pub fn insert(&mut self, t: EventType) {
        let i = t.0 as usize;
        if i < MAX_EVENT_TYPES {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    /// Membership.
    pub fn contains(&self, t: EventType) -> bool {
        let i = t.0 as usize;
        i < MAX_EVENT_TYPES && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Set union.
    pub fn union(&self, o: &Self) -> Self {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(o.0.iter()) {
            *a |= *b;
        }
        r
    }

    /// Set intersection.
    pub fn intersect(&self, o: &Self) -> Self {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(o.0.iter()) {
            *a &= *b;
        }
        r
    }

    /// Complement within the known event types.
    pub fn complement(&self) -> Self {
        let all = Self::all();
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(all.0.iter()) {
            *a = !*a & *b;
        }
        r
    }

    /// True when no type is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Number of types in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The types in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = EventType> + '_ {
        (0..MAX_EVENT_TYPES as u16)
            .map(EventType)
            .filter(move |t| self.contains(*t))
    }
}

/// What the engine needs from an event.
pub trait Event {
    /// The syscall this event reports; rules are dispatched on it first.
    fn event_type(&self) -> EventType;
    /// A field's value, or `None` when this event does not carry it.
    fn field(&self, field: Field, arg: &FieldArg) -> Option<Value<'_>>;
}

/// An event held as a map from field to value. Cheap enough for tests and benchmarks, and
/// serialisable as one JSON object per event.
#[derive(Clone, Debug)]
pub struct OwnedEvent {
    evt_type: EventType,
    /// `slots[field]` is 1 + the index of the field's value in `values`, or 0 when absent: O(1)
    /// access with a compact footprint (field access is the evaluator's hot path).
    slots: [u8; FIELD_COUNT],
    values: Vec<Value<'static>>,
    /// `evt.arg.<name>` values, in syscall argument order (so `evt.arg[N]` works too).
    args: Vec<(String, String)>,
    /// `proc.aname[0..]`: self, parent, grandparent, ...
    anames: Vec<String>,
    aexepaths: Vec<String>,
}

/// Why a JSON event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventParseError {
    /// Not valid JSON or not an object.
    #[error("event is not a JSON object: {0}")]
    Json(String),
    /// `evt.type` missing or unknown.
    #[error("event has no known `evt.type`: {0}")]
    Type(String),
    /// A field with the wrong JSON type.
    #[error("field `{field}`: {reason}")]
    Field {
        /// Field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl OwnedEvent {
    /// A new event of the given type with no fields.
    pub fn new(evt_type: EventType) -> Self {
        OwnedEvent {
            evt_type,
            slots: [0; FIELD_COUNT],
            values: Vec::new(),
            args: Vec::new(),
            anames: Vec::new(),
            aexepaths: Vec::new(),
        }
    }

    fn get(&self, f: Field) -> Option<&Value<'static>> {
        match self.slots[f as usize] {
            0 => None,
            i => self.values.get(i as usize - 1),
        }
    }

    fn put(&mut self, f: Field, v: Value<'static>) {
        match self.slots[f as usize] {
            0 => {
                self.values.push(v);
                // FIELD_COUNT < 255, so an index always fits.
                self.slots[f as usize] = self.values.len() as u8;
            }
            i => self.values[i as usize - 1] = v,
        }
    }

    /// Sets a plain field.
    pub fn set(&mut self, field: Field, value: Value<'static>) -> &mut Self {
        match (field, value) {
            (Field::ProcName, Value::Str(s)) => {
                if self.anames.is_empty() {
                    self.anames.push(s.to_string());
                } else {
                    self.anames[0] = s.to_string();
                }
                self.put(field, Value::Str(s));
            }
            (Field::ProcPname, Value::Str(s)) => {
                if self.anames.is_empty() {
                    self.anames.push("<NA>".into());
                }
                if self.anames.len() < 2 {
                    self.anames.push(s.to_string());
                } else {
                    self.anames[1] = s.to_string();
                }
                self.put(field, Value::Str(s));
            }
            (f, v) => {
                self.put(f, v);
            }
        }
        self
    }

    /// Sets a syscall argument (`evt.arg.<name>`).
    pub fn set_arg(&mut self, name: &str, value: &str) -> &mut Self {
        if let Some(slot) = self.args.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_owned();
        } else {
            self.args.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sets the ancestor names from parent upwards (`proc.aname[1..]`).
    pub fn set_ancestors(&mut self, names: &[&str]) -> &mut Self {
        let me = self
            .anames
            .first()
            .cloned()
            .unwrap_or_else(|| "<NA>".into());
        self.anames = std::iter::once(me)
            .chain(names.iter().map(|s| s.to_string()))
            .collect();
        if let Some(p) = names.first() {
            self.put(Field::ProcPname, Value::Str(Cow::Owned(p.to_string())));
        }
        self
    }

    /// Sets the executable paths of the process and its ancestors (`proc.aexepath[0..]`).
    pub fn set_ancestor_exepaths(&mut self, own: &str, ancestors: &[&str]) -> &mut Self {
        self.aexepaths = std::iter::once(own)
            .chain(ancestors.iter().copied())
            .map(str::to_owned)
            .collect();
        self
    }

    /// Parses one JSON object: field names as keys; `proc.aname` as an array (self first or
    /// parent first, see below), `evt.arg.<name>` keys for arguments.
    ///
    /// `proc.anames` (array) lists ancestors from the parent upwards; `proc.aexepaths` likewise.
    pub fn from_json(text: &str) -> Result<Self, EventParseError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| EventParseError::Json(e.to_string()))?;
        Self::from_json_value(&v)
    }

    /// Like [`OwnedEvent::from_json`] from a parsed value.
    pub fn from_json_value(v: &serde_json::Value) -> Result<Self, EventParseError> {
        let obj = v
            .as_object()
            .ok_or_else(|| EventParseError::Json("not an object".into()))?;
        let ty = obj
            .get("evt.type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| EventParseError::Type("missing".into()))?;
        let ty = EventType::from_name(ty).ok_or_else(|| EventParseError::Type(ty.into()))?;
        let mut ev = OwnedEvent::new(ty);
        // proc.name / proc.pname first so the ancestor list starts right.
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort_by_key(|k| match k.as_str() {
            "proc.name" => 0,
            "proc.pname" => 1,
            "proc.anames" => 2,
            _ => 3,
        });
        for k in keys {
            let val = &obj[k];
            let bad = |reason: &str| EventParseError::Field {
                field: k.clone(),
                reason: reason.into(),
            };
            match k.as_str() {
                "evt.type" => {}
                "proc.anames" | "proc.aexepaths" => {
                    let arr = val.as_array().ok_or_else(|| bad("expected an array"))?;
                    let names: Vec<String> = arr
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| bad("expected strings"))
                        })
                        .collect::<Result<_, _>>()?;
                    if k == "proc.anames" {
                        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                        ev.set_ancestors(&refs);
                    } else {
                        ev.aexepaths = std::iter::once(String::new()).chain(names).collect();
                    }
                }
                key if key.starts_with("evt.arg.") => {
                    let s = match val {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    ev.set_arg(&key["evt.arg.".len()..], &s);
                }
                key => {
                    let field = Field::by_name(key).ok_or_else(|| bad("unknown field"))?;
                    let ty = field.info().ty;
                    let value = match val {
                        // Several values (`fd.ip` of a connection: both endpoints; `evt.dir`).
                        serde_json::Value::Array(items) => Value::List(
                            items
                                .iter()
                                .map(|x| {
                                    json_scalar(ty, x)
                                        .ok_or_else(|| bad(&format!("expected {t}s", t = ty)))
                                })
                                .collect::<Result<_, _>>()?,
                        ),
                        x => json_scalar(ty, x).ok_or_else(|| bad(&format!("expected a {ty}")))?,
                    };
                    ev.set(field, value);
                }
            }
        }
        // `proc.aexepath[0]` is the process itself.
        if !ev.aexepaths.is_empty() {
            ev.aexepaths[0] = match ev.get(Field::ProcExepath) {
                Some(Value::Str(s)) => s.to_string(),
                _ => String::new(),
            };
        }
        Ok(ev)
    }

    /// The JSON object form read by [`OwnedEvent::from_json`].
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("evt.type".into(), self.evt_type.name().into());
        for (f, v) in FIELDS
            .iter()
            .filter_map(|info| self.get(info.field).map(|v| (info.field, v)))
        {
            let j = match v {
                Value::Str(s) => serde_json::Value::from(s.as_ref()),
                Value::Int(i) => (*i).into(),
                Value::Bool(b) => (*b).into(),
                Value::Ip(ip) => ip.to_string().into(),
                Value::List(l) => l.iter().filter_map(scalar_json).collect(),
            };
            m.insert(f.name().into(), j);
        }
        if self.anames.len() > 1 {
            m.insert("proc.anames".into(), self.anames[1..].to_vec().into());
        }
        // Written even when empty beyond self, so `proc.aexepath[0]` survives a round trip.
        if !self.aexepaths.is_empty() {
            m.insert("proc.aexepaths".into(), self.aexepaths[1..].to_vec().into());
        }
        for (n, v) in &self.args {
            m.insert(format!("evt.arg.{n}"), v.clone().into());
        }
        serde_json::Value::Object(m)
    }

    fn lineage<'a>(list: &'a [String], arg: &FieldArg) -> Option<Value<'a>> {
        match arg {
            FieldArg::Index(i) => list.get(*i).map(|s| Value::Str(Cow::Borrowed(s))),
            // Without an index Falco walks the ancestors, starting at the parent.
            _ => {
                if list.len() < 2 {
                    return None;
                }
                Some(Value::List(
                    list[1..]
                        .iter()
                        .map(|s| Value::Str(Cow::Borrowed(s.as_str())))
                        .collect(),
                ))
            }
        }
    }
}

/// A JSON scalar as a value of type `ty`; `None` if it has the wrong JSON type.
fn json_scalar(ty: FieldType, v: &serde_json::Value) -> Option<Value<'static>> {
    Some(match (ty, v) {
        (FieldType::Str, serde_json::Value::String(s)) => Value::Str(Cow::Owned(s.clone())),
        (FieldType::Int, serde_json::Value::Number(n)) => Value::Int(n.as_i64()?),
        (FieldType::Bool, serde_json::Value::Bool(b)) => Value::Bool(*b),
        (FieldType::Ip, serde_json::Value::String(s)) => Value::Ip(s.parse().ok()?),
        _ => return None,
    })
}

/// The JSON form of a scalar value (`None` for a nested list, which no field produces).
fn scalar_json(v: &Value<'_>) -> Option<serde_json::Value> {
    Some(match v {
        Value::Str(s) => serde_json::Value::from(s.as_ref()),
        Value::Int(i) => (*i).into(),
        Value::Bool(b) => (*b).into(),
        Value::Ip(ip) => ip.to_string().into(),
        Value::List(_) => return None,
    })
}

impl PartialEq for OwnedEvent {
    fn eq(&self, o: &Self) -> bool {
        self.evt_type == o.evt_type
            && self.args == o.args
            && self.anames == o.anames
            && self.aexepaths == o.aexepaths
            && FIELDS.iter().all(|f| self.get(f.field) == o.get(f.field))
    }
}

const _: () = assert!(FIELD_COUNT < 255);

impl Event for OwnedEvent {
    fn event_type(&self) -> EventType {
        self.evt_type
    }

    fn field(&self, field: Field, arg: &FieldArg) -> Option<Value<'_>> {
        match field {
            Field::EvtType => Some(Value::Str(Cow::Borrowed(self.evt_type.name()))),
            Field::ProcAname => Self::lineage(&self.anames, arg),
            Field::ProcAexepath => Self::lineage(&self.aexepaths, arg),
            Field::EvtArg => match arg {
                FieldArg::Name(n) => self
                    .args
                    .iter()
                    .find(|(k, _)| k.as_str() == &**n)
                    .map(|(_, v)| Value::Str(Cow::Borrowed(v.as_str()))),
                FieldArg::Index(i) => self
                    .args
                    .get(*i)
                    .map(|(_, v)| Value::Str(Cow::Borrowed(v.as_str()))),
                FieldArg::None => None,
            },
            Field::EvtArgs if self.get(Field::EvtArgs).is_none() => {
                if self.args.is_empty() {
                    return None;
                }
                let s: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Some(Value::Str(Cow::Owned(s.join(" "))))
            }
            f => self.get(f).map(|v| match v {
                Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
                other => other.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits() {
        let mut seen = std::collections::HashSet::new();
        for n in EVENT_TYPES {
            assert!(seen.insert(n), "duplicate event type {n}");
        }
    }

    #[test]
    fn json_round_trip() {
        let text = r#"{"evt.type":"execve","proc.name":"bash","proc.pname":"runc","proc.anames":["runc","containerd-shim"],"proc.tty":34816,"evt.arg.flags":"O_RDONLY","container.privileged":false,"fd.sip":"10.0.0.1"}"#;
        let ev = OwnedEvent::from_json(text).unwrap();
        assert_eq!(
            ev.field(Field::ProcAname, &FieldArg::Index(2)),
            Some(Value::Str("containerd-shim".into()))
        );
        let again = OwnedEvent::from_json_value(&ev.to_json()).unwrap();
        assert_eq!(ev, again);
    }

    #[test]
    fn list_values_and_ancestor_paths_round_trip() {
        let text = r#"{"evt.type":"connect","fd.ip":["172.17.0.2","10.0.0.1"],"fd.port":[40000,443],"evt.dir":[">","<"],"proc.exepath":"/bin/nc","proc.aexepaths":["/bin/sh"]}"#;
        let ev = OwnedEvent::from_json(text).unwrap();
        assert_eq!(
            ev.field(Field::FdIp, &FieldArg::None),
            Some(Value::List(vec![
                Value::Ip("172.17.0.2".parse().unwrap()),
                Value::Ip("10.0.0.1".parse().unwrap())
            ]))
        );
        assert_eq!(
            ev.field(Field::ProcAexepath, &FieldArg::Index(0)),
            Some(Value::Str("/bin/nc".into()))
        );
        let again = OwnedEvent::from_json_value(&ev.to_json()).unwrap();
        assert_eq!(ev, again);
        assert!(OwnedEvent::from_json(r#"{"evt.type":"connect","fd.ip":["x"]}"#).is_err());
    }
}

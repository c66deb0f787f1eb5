//! The declared field table: every Falco field the engine knows, its type, whether it takes an
//! argument, and where (if anywhere) the node agent's sensor gets it from.
//!
//! The table is the contract between the engine and the sensor: a rule whose condition needs a
//! field with [`Source::Unavailable`] loads with a warning and is reported as not evaluable,
//! exactly like Falco with a missing plugin. Fields named in outputs but unavailable render as
//! `<NA>`.

use std::fmt;

/// The value type of a field, which decides the operators and literals a condition may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text (Falco `CHARBUF`/`FSPATH`/...).
    Str,
    /// A signed integer (Falco's `INT*`, `UINT*`, `PORT`, `RELTIME`, `ABSTIME`).
    Int,
    /// `true`/`false`.
    Bool,
    /// An IP address; compared against addresses or CIDR networks (Falco `IPADDR`/`IPNET`).
    Ip,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Str => "string",
            FieldType::Int => "number",
            FieldType::Bool => "bool",
            FieldType::Ip => "ip",
        })
    }
}

/// Whether a field takes an argument (`proc.aname[2]`, `evt.arg.flags`, `evt.arg[0]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument allowed.
    None,
    /// An optional numeric index; without one the field yields every ancestor (a list).
    OptionalIndex,
    /// A required index or name (`evt.arg[0]`, `evt.arg.flags`, `evt.arg[flags]`).
    Required,
}

/// Where the node agent gets a field's value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The eBPF tracepoint event itself (syscall arguments, return value, task struct).
    Kernel,
    /// The agent's process table, built from exec/fork/exit events and `/proc`.
    Process,
    /// The agent's container table (Docker inspect; Kubernetes pod labels).
    Container,
    /// Computed by the agent from other fields (event counter, formatted args).
    Agent,
    /// Not provided by our sensor: rules that need it are not evaluable.
    Unavailable,
}

impl Source {
    /// True when the sensor fills this field.
    pub fn provided(self) -> bool {
        self != Source::Unavailable
    }

    /// Short name for docs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Kernel => "kernel",
            Source::Process => "process table",
            Source::Container => "container table",
            Source::Agent => "agent",
            Source::Unavailable => "not provided",
        }
    }
}

/// One row of the field table.
#[derive(Debug)]
pub struct FieldInfo {
    /// The enum value for this row.
    pub field: Field,
    /// Falco's name, e.g. `proc.aname`.
    pub name: &'static str,
    /// Value type.
    pub ty: FieldType,
    /// Argument syntax.
    pub arg: ArgKind,
    /// Where the value comes from.
    pub source: Source,
    /// One line for `docs/rules.md`.
    pub doc: &'static str,
}

macro_rules! fields {
    ($( $var:ident => $name:literal, $ty:ident, $arg:ident, $src:ident, $doc:literal; )*) => {
        /// Every field the engine knows, in table order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Field { $( #[doc = $doc] $var, )* }

        /// Number of fields in the table.
        pub const FIELD_COUNT: usize = [$($name),*].len();

        /// The field table, indexed by `Field as usize`.
        pub static FIELDS: &[FieldInfo] = &[
            $( FieldInfo {
                field: Field::$var,
                name: $name,
                ty: FieldType::$ty,
                arg: ArgKind::$arg,
                source: Source::$src,
                doc: $doc,
            }, )*
        ];
    };
}

fields! {
    EvtType => "evt.type", Str, None, Kernel, "syscall name (`execve`, `openat`, ...)";
    EvtDir => "evt.dir", Str, None, Kernel, "`<` (exit); the sensor reports completed syscalls";
    EvtNum => "evt.num", Int, None, Agent, "event sequence number on this node";
    EvtTime => "evt.time", Int, None, Kernel, "event time, ns since the epoch";
    EvtRes => "evt.res", Str, None, Kernel, "`SUCCESS` or the errno name (`ENOENT`, ...)";
    EvtRawres => "evt.rawres", Int, None, Kernel, "raw syscall return value";
    EvtFailed => "evt.failed", Bool, None, Kernel, "true when the syscall returned an error";
    EvtIsOpenRead => "evt.is_open_read", Bool, None, Kernel, "open flags include read access";
    EvtIsOpenWrite => "evt.is_open_write", Bool, None, Kernel, "open flags include write access";
    EvtIsOpenExec => "evt.is_open_exec", Bool, None, Kernel, "open flags include O_EXEC-like access";
    EvtArg => "evt.arg", Str, Required, Kernel, "a syscall argument by name or index, rendered as text (`flags`, `request`, `domain`, `target`, `linkpath`, `oldpath`, `newpath`, ...)";
    EvtArgs => "evt.args", Str, None, Kernel, "all syscall arguments as `name=value` text";
    EvtHostname => "evt.hostname", Str, None, Agent, "node name";
    ProcPid => "proc.pid", Int, None, Kernel, "process id (host namespace)";
    ProcVpid => "proc.vpid", Int, None, Kernel, "process id inside its pid namespace";
    ProcPpid => "proc.ppid", Int, None, Kernel, "parent process id";
    ProcSid => "proc.sid", Int, None, Process, "session id";
    ProcVpgid => "proc.vpgid", Int, None, Process, "process group id inside the pid namespace";
    ProcName => "proc.name", Str, None, Kernel, "process name (comm, 15 chars)";
    ProcExe => "proc.exe", Str, None, Kernel, "argv[0] as executed";
    ProcExepath => "proc.exepath", Str, None, Kernel, "full path of the executable";
    ProcCmdline => "proc.cmdline", Str, None, Process, "`name arg1 arg2 ...`";
    ProcArgs => "proc.args", Str, None, Process, "arguments without argv[0], space-joined";
    ProcCwd => "proc.cwd", Str, None, Process, "working directory (with trailing `/`)";
    ProcTty => "proc.tty", Int, None, Kernel, "controlling terminal device number, 0 if none";
    ProcDuration => "proc.duration", Int, None, Process, "ns since the process started";
    ProcPname => "proc.pname", Str, None, Process, "parent's name";
    ProcPexe => "proc.pexe", Str, None, Process, "parent's argv[0]";
    ProcPexepath => "proc.pexepath", Str, None, Process, "parent's executable path";
    ProcPcmdline => "proc.pcmdline", Str, None, Process, "parent's cmdline";
    ProcAname => "proc.aname", Str, OptionalIndex, Process, "ancestor name: `[0]` self, `[1]` parent, ...; without index any ancestor";
    ProcAexepath => "proc.aexepath", Str, OptionalIndex, Process, "ancestor executable path, indexed like `proc.aname`";
    ProcAexe => "proc.aexe", Str, OptionalIndex, Process, "ancestor argv[0], indexed like `proc.aname`";
    ProcSname => "proc.sname", Str, None, Process, "session leader's name";
    ProcIsExeUpperLayer => "proc.is_exe_upper_layer", Bool, None, Kernel, "executable lives in the overlayfs upper (writable) layer";
    ProcIsExeFromMemfd => "proc.is_exe_from_memfd", Bool, None, Kernel, "executable is a memfd (fileless execution)";
    ProcIsExeWritable => "proc.is_exe_writable", Bool, None, Kernel, "executable is writable by the process's user";
    ProcExeIno => "proc.exe_ino", Int, None, Kernel, "inode number of the executable";
    ProcExeInoCtime => "proc.exe_ino.ctime", Int, None, Unavailable, "ctime of the executable's inode";
    ProcExeInoMtime => "proc.exe_ino.mtime", Int, None, Unavailable, "mtime of the executable's inode";
    ProcExeInoCtimeDurationProcStart => "proc.exe_ino.ctime_duration_proc_start", Int, None, Unavailable, "ns between the exe inode's ctime and process start";
    ThreadTid => "thread.tid", Int, None, Kernel, "thread id";
    ThreadCapEffective => "thread.cap_effective", Str, None, Kernel, "effective capabilities, space-separated `CAP_*` names";
    ThreadCapPermitted => "thread.cap_permitted", Str, None, Kernel, "permitted capabilities";
    UserUid => "user.uid", Int, None, Kernel, "user id";
    UserName => "user.name", Str, None, Process, "user name from the container's /etc/passwd";
    UserLoginuid => "user.loginuid", Int, None, Kernel, "audit login uid (-1 if unset)";
    UserLoginname => "user.loginname", Str, None, Process, "name of the login uid";
    GroupGid => "group.gid", Int, None, Kernel, "group id";
    GroupName => "group.name", Str, None, Process, "group name from the container's /etc/group";
    FdNum => "fd.num", Int, None, Kernel, "file descriptor number (-1 on failed open)";
    FdType => "fd.type", Str, None, Kernel, "`file`, `directory`, `ipv4`, `ipv6`, `unix`, `memfd`, ...";
    FdTypechar => "fd.typechar", Str, None, Kernel, "one-letter type: `f` file, `4` ipv4, `6` ipv6, `u` unix, ...";
    FdName => "fd.name", Str, None, Kernel, "absolute path, or `cip:cport->sip:sport` for sockets";
    FdNameraw => "fd.nameraw", Str, None, Kernel, "path exactly as passed to the syscall";
    FdDirectory => "fd.directory", Str, None, Kernel, "directory of `fd.name`";
    FdFilename => "fd.filename", Str, None, Kernel, "last path component of `fd.name`";
    FdIp => "fd.ip", Ip, None, Kernel, "either endpoint's address (matches if either matches)";
    FdCip => "fd.cip", Ip, None, Kernel, "client address";
    FdSip => "fd.sip", Ip, None, Kernel, "server address";
    FdLip => "fd.lip", Ip, None, Kernel, "local address";
    FdRip => "fd.rip", Ip, None, Kernel, "remote address";
    FdPort => "fd.port", Int, None, Kernel, "either endpoint's port";
    FdCport => "fd.cport", Int, None, Kernel, "client port";
    FdSport => "fd.sport", Int, None, Kernel, "server port";
    FdLport => "fd.lport", Int, None, Kernel, "local port";
    FdRport => "fd.rport", Int, None, Kernel, "remote port";
    FdL4proto => "fd.l4proto", Str, None, Kernel, "`tcp`, `udp`, `icmp`, `raw`";
    FdNet => "fd.net", Ip, None, Kernel, "either endpoint's address, compared as network membership";
    FdCnet => "fd.cnet", Ip, None, Kernel, "client address, compared as network membership";
    FdSnet => "fd.snet", Ip, None, Kernel, "server address, compared as network membership";
    FdConnected => "fd.connected", Bool, None, Unavailable, "socket is connected (needs per-fd socket state tracking)";
    FdNameChanged => "fd.name_changed", Bool, None, Unavailable, "fd name changed by this event (needs per-fd state tracking)";
    FdSipName => "fd.sip.name", Str, None, Agent, "names that resolve to the server address, among those the rules compare it with (resolved by the agent every 30 s, as Falco's DNS manager does)";
    FdCipName => "fd.cip.name", Str, None, Agent, "names that resolve to the client address, among those the rules compare it with (resolved like `fd.sip.name`)";
    ContainerId => "container.id", Str, None, Container, "12-char container id, `host` outside containers";
    ContainerName => "container.name", Str, None, Container, "container name";
    ContainerImage => "container.image", Str, None, Container, "image reference";
    ContainerImageRepository => "container.image.repository", Str, None, Container, "image repository";
    ContainerImageTag => "container.image.tag", Str, None, Container, "image tag";
    ContainerPrivileged => "container.privileged", Bool, None, Container, "container runs privileged";
    ContainerStartTs => "container.start_ts", Int, None, Container, "container start time, ns since the epoch";
    K8sNsName => "k8s.ns.name", Str, None, Container, "pod namespace (from the pod's container labels)";
    K8sPodName => "k8s.pod.name", Str, None, Container, "pod name (from the pod's container labels)";
    K8sPodUid => "k8s.pod.uid", Str, None, Container, "pod uid (from the pod's container labels)";
}

impl Field {
    /// This field's table row.
    pub fn info(self) -> &'static FieldInfo {
        &FIELDS[self as usize]
    }

    /// Falco's name for this field.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Finds a field by its exact Falco name.
    pub fn by_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|f| f.name == name).map(|f| f.field)
    }
}

/// A field's argument, resolved at compile time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FieldArg {
    /// No argument.
    None,
    /// A numeric index (`proc.aname[2]`, `evt.arg[0]`).
    Index(usize),
    /// A name (`evt.arg.flags`, `evt.arg[flags]`).
    Name(Box<str>),
}

impl fmt::Display for FieldArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldArg::None => Ok(()),
            FieldArg::Index(i) => write!(f, "[{i}]"),
            FieldArg::Name(n) => write!(f, "[{n}]"),
        }
    }
}

/// Why a field reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such field in the table (possibly a plugin field).
    Unknown,
    /// The field exists but the argument is wrong.
    BadArg(String),
}

/// Resolves `name` plus an optional bracket argument (`proc.aname`, `[2]`) to a field and argument.
/// `evt.arg.flags` and `evt.arg[flags]` are the same field.
pub fn resolve(name: &str, arg: Option<&str>) -> Result<(Field, FieldArg), ResolveError> {
    let (field, arg) = match Field::by_name(name) {
        Some(f) => (f, arg.map(str::to_owned)),
        None => match name.strip_prefix("evt.arg.") {
            Some(rest) if !rest.is_empty() && arg.is_none() => {
                (Field::EvtArg, Some(rest.to_owned()))
            }
            _ => return Err(ResolveError::Unknown),
        },
    };
    let info = field.info();
    let arg = match (info.arg, arg) {
        (ArgKind::None, None) => FieldArg::None,
        (ArgKind::None, Some(a)) => {
            return Err(ResolveError::BadArg(format!(
                "`{name}` takes no argument, got `[{a}]`"
            )))
        }
        (ArgKind::OptionalIndex, None) => FieldArg::None,
        (ArgKind::OptionalIndex, Some(a)) => match a.trim().parse::<usize>() {
            Ok(i) => FieldArg::Index(i),
            Err(_) => {
                return Err(ResolveError::BadArg(format!(
                    "`{name}` takes a numeric index, got `[{a}]`"
                )))
            }
        },
        (ArgKind::Required, None) => {
            return Err(ResolveError::BadArg(format!(
                "`{name}` needs an argument, e.g. `{name}[0]` or `{name}.flags`"
            )))
        }
        (ArgKind::Required, Some(a)) => {
            let a = a.trim();
            if a.is_empty() {
                return Err(ResolveError::BadArg(format!(
                    "`{name}` has an empty argument"
                )));
            }
            match a.parse::<usize>() {
                Ok(i) => FieldArg::Index(i),
                Err(_) => FieldArg::Name(a.into()),
            }
        }
    };
    Ok((field, arg))
}

/// The field table as a Markdown table (used by `docs/rules.md`; a test keeps them in sync).
pub fn fields_markdown() -> String {
    let mut s =
        String::from("| field | type | argument | source | meaning |\n|---|---|---|---|---|\n");
    for f in FIELDS {
        let arg = match f.arg {
            ArgKind::None => "",
            ArgKind::OptionalIndex => "`[N]` optional",
            ArgKind::Required => "`[N]`, `[name]` or `.name`",
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            f.name,
            f.ty,
            arg,
            f.source.as_str(),
            f.doc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_order_matches_enum() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.field as usize, i, "{}", f.name);
        }
    }

    #[test]
    fn resolves_args() {
        assert_eq!(
            resolve("proc.aname", Some("2")).unwrap(),
            (Field::ProcAname, FieldArg::Index(2))
        );
        assert_eq!(
            resolve("evt.arg.flags", None).unwrap(),
            (Field::EvtArg, FieldArg::Name("flags".into()))
        );
        assert_eq!(
            resolve("evt.arg", Some("0")).unwrap(),
            (Field::EvtArg, FieldArg::Index(0))
        );
        assert!(matches!(
            resolve("proc.name", Some("1")),
            Err(ResolveError::BadArg(_))
        ));
        assert!(matches!(
            resolve("proc.aname", Some("x")),
            Err(ResolveError::BadArg(_))
        ));
        assert_eq!(resolve("foo.bar", None), Err(ResolveError::Unknown));
        assert_eq!(
            resolve("proc.exe_ino.ctime", None).unwrap().0,
            Field::ProcExeInoCtime
        );
    }
}

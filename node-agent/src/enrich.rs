//! Turning a raw sensor event into what rules and people read: the container, the process and
//! its ancestors from the process table, the syscall's arguments by name and rendered the way
//! Falco renders them (`O_WRONLY|O_TRUNC`, `AF_PACKET`, `PTRACE_ATTACH`), and what its fd is.

use crate::{
    process::{procfs, ProcInfo, ProcessTable},
    runtime::{ContainerInfo, ContainerTable},
    sensor::decode::{Header, SensorEvent, Syscall},
};
use brainbox_ebpf_common::Sc;
use serde::Serialize;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

/// How many ancestors an event carries (Falco's `proc.aname[N]` goes to 7 in the stable rules).
pub const LINEAGE: usize = 8;

/// An argument value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Arg {
    /// A number.
    Num(i64),
    /// Text (paths, rendered flags, addresses).
    Str(String),
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Num(n) => write!(f, "{n}"),
            Arg::Str(s) => f.write_str(s),
        }
    }
}

/// What an event's fd is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FdInfo {
    /// The fd number (-1 when the call failed).
    pub num: i64,
    /// Falco's `fd.type`: `file`, `directory`, `ipv4`, `ipv6`, `unix`, `memfd`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Falco's `fd.typechar`: `f`, `d`, `4`, `6`, `u`, ...
    pub typechar: char,
    /// Path, or `client->server` for sockets.
    pub name: String,
    /// Client (local for connect) address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<SocketAddr>,
    /// Server (remote for connect) address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<SocketAddr>,
    /// `tcp`, `udp`, `raw` for sockets.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub l4proto: String,
}

/// An ancestor, as the lineage fields need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// pid.
    pub pid: u32,
    /// comm.
    pub name: String,
    /// Full exe path.
    pub exepath: String,
    /// Command line.
    pub cmdline: String,
}

/// An event with everything the agent knows about it.
#[derive(Debug, Clone)]
pub struct Enriched {
    /// Falco's `evt.type`: `execve`, `openat`, `connect`, ...
    pub evt_type: &'static str,
    /// Header from the kernel.
    pub hdr: Header,
    /// The container.
    pub container: Option<Arc<ContainerInfo>>,
    /// The process after the event (for exec: the new image).
    pub process: ProcInfo,
    /// Ancestors, parent first.
    pub lineage: Vec<Ancestor>,
    /// Return value (0 for exec).
    pub ret: i64,
    /// Arguments by Falco's names.
    pub args: Vec<(&'static str, Arg)>,
    /// The fd the event is about, if any.
    pub fd: Option<FdInfo>,
    /// Something was cut at a kernel bound.
    pub truncated: bool,
}

impl Enriched {
    /// An argument by name.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// True for execve/execveat.
    pub fn is_exec(&self) -> bool {
        matches!(self.evt_type, "execve" | "execveat")
    }
}

const AT_FDCWD: i64 = -100;

/// Enriches one event, updating the process table. Fork and exit only update the table and
/// yield nothing.
pub fn enrich(
    ev: &SensorEvent,
    procs: &mut ProcessTable,
    containers: &ContainerTable,
) -> Option<Enriched> {
    let hdr = ev.header().clone();
    let container = containers.get(hdr.cgroup_id);
    match ev {
        SensorEvent::Fork { hdr, child_pid } => {
            procs.on_fork(hdr, *child_pid);
            None
        }
        SensorEvent::Exit { hdr } => {
            procs.on_exit(hdr.pid);
            None
        }
        SensorEvent::Exec(e) => {
            let layer = container.as_ref().and_then(|c| c.writable.as_ref());
            let process = procs.on_exec(e, layer).clone();
            let lineage = lineage(procs, hdr.pid);
            let mut args = vec![("filename", Arg::Str(e.filename.clone()))];
            if let Some(fd) = e.dirfd {
                args.push(("dirfd", Arg::Num(fd as i64)));
            }
            Some(Enriched {
                evt_type: if e.dirfd.is_some() {
                    "execveat"
                } else {
                    "execve"
                },
                hdr,
                container,
                process,
                lineage,
                ret: 0,
                args,
                fd: None,
                truncated: e.args_truncated || e.cut,
            })
        }
        SensorEvent::Syscall(s) => {
            let mut process = match procs.get_or_load(hdr.pid) {
                Some(p) => {
                    p.uid = hdr.uid;
                    p.gid = hdr.gid;
                    p.clone()
                }
                // Gone before we could look: only the kernel's header is known.
                None => {
                    let mut p = ProcInfo::unknown(hdr.pid);
                    p.uid = hdr.uid;
                    p.gid = hdr.gid;
                    p
                }
            };
            let (args, fd) = syscall_args(s, &process);
            // Remember what later events need: memfds (fileless exec) and socket families (dup).
            if s.ret >= 0 {
                if let Some(p) = procs.get_or_load(hdr.pid) {
                    match s.sc {
                        Sc::MemfdCreate => p.add_memfd(s.ret),
                        Sc::Socket => p.add_socket(s.ret, s.args[0] as u16),
                        Sc::Chdir => {
                            if let Some(Arg::Str(dir)) =
                                args.iter().find(|(n, _)| *n == "path").map(|(_, v)| v)
                            {
                                p.cwd = Some(dir.clone());
                            }
                        }
                        Sc::Fchdir => {
                            if let Some(dir) = procfs::link(hdr.pid, "cwd") {
                                p.cwd = Some(dir);
                            }
                        }
                        _ => {}
                    }
                    process = p.clone();
                }
            }
            let lineage = lineage(procs, hdr.pid);
            Some(Enriched {
                evt_type: s.sc.name(),
                hdr,
                container,
                process,
                lineage,
                ret: s.ret,
                args,
                fd,
                truncated: s.cut,
            })
        }
    }
}

fn lineage(procs: &mut ProcessTable, pid: u32) -> Vec<Ancestor> {
    procs
        .ancestors(pid, LINEAGE)
        .into_iter()
        .map(|p| Ancestor {
            pid: p.pid,
            cmdline: p.cmdline(),
            name: p.name,
            exepath: p.exepath,
        })
        .collect()
}

fn resolve_path(path: &str, dirfd: i64, process: &ProcInfo) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_owned();
    }
    let base = if dirfd == AT_FDCWD {
        // The tracked cwd (chdir/fchdir events) first: /proc may be gone or already elsewhere.
        process
            .cwd
            .clone()
            .or_else(|| procfs::link(process.pid, "cwd"))
    } else {
        procfs::link(process.pid, &format!("fd/{dirfd}"))
    };
    match base {
        Some(b) => normalize(&format!("{}/{}", b.trim_end_matches('/'), path)),
        None => path.to_owned(),
    }
}

/// Collapses `.` and `..` lexically (as Falco does for `fd.name`).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn file_fd(num: i64, name: String, flags: u64) -> FdInfo {
    let dir = flags & (libc::O_DIRECTORY as u64) != 0;
    FdInfo {
        num,
        kind: if dir { "directory" } else { "file" }.into(),
        typechar: if dir { 'd' } else { 'f' },
        name,
        ..Default::default()
    }
}

/// What an fd is, from its `/proc/<pid>/fd/N` link target.
fn classify_link(num: i64, target: String) -> FdInfo {
    let (kind, typechar) = if target.starts_with("pipe:") {
        ("pipe", 'p')
    } else if target.starts_with("socket:") {
        ("socket", 's')
    } else if target.starts_with("anon_inode:") {
        ("event", 'e')
    } else if target.starts_with("/memfd:") {
        ("memfd", 'm')
    } else if target.is_empty() {
        ("unknown", '?')
    } else {
        ("file", 'f')
    };
    FdInfo {
        num,
        kind: kind.into(),
        typechar,
        name: target,
        ..Default::default()
    }
}

fn socket_fd(
    num: i64,
    family: u16,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    l4: &str,
) -> FdInfo {
    let (kind, typechar) = match family as i32 {
        libc::AF_INET => ("ipv4", '4'),
        libc::AF_INET6 => ("ipv6", '6'),
        libc::AF_UNIX => ("unix", 'u'),
        libc::AF_NETLINK => ("netlink", 'n'),
        _ => ("socket", 's'),
    };
    let name = match (client, server) {
        (Some(c), Some(s)) => format!("{c}->{s}"),
        (None, Some(s)) => format!("->{s}"),
        _ => String::new(),
    };
    FdInfo {
        num,
        kind: kind.into(),
        typechar,
        name,
        client,
        server,
        l4proto: l4.into(),
    }
}

/// Decodes a `struct sockaddr` of the sizes the kernel side keeps.
pub fn parse_sockaddr(b: &[u8]) -> Option<(u16, Option<SocketAddr>, Option<String>)> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]);
    match family as i32 {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some((family, Some(SocketAddr::new(IpAddr::V4(ip), port)), None))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            Some((
                family,
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
                None,
            ))
        }
        libc::AF_UNIX => {
            let path = &b[2..];
            let name = if path.first() == Some(&0) {
                format!(
                    "@{}",
                    String::from_utf8_lossy(brainbox_ebpf_common::c_str(&path[1..]))
                )
            } else {
                String::from_utf8_lossy(brainbox_ebpf_common::c_str(path)).into_owned()
            };
            Some((family, None, Some(name)))
        }
        _ => Some((family, None, None)),
    }
}

fn flag_names(value: u64, table: &[(u64, &str)]) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(bit, _)| *bit != 0 && value & bit == *bit)
        .map(|(_, n)| *n)
        .collect();
    names.join("|")
}

/// Renders open(2) flags as Falco does (`O_WRONLY|O_CREAT|O_TRUNC`).
pub fn open_flags(flags: u64) -> String {
    let access = match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = flag_names(
        flags,
        &[
            (libc::O_CREAT as u64, "O_CREAT"),
            (libc::O_EXCL as u64, "O_EXCL"),
            (libc::O_NOCTTY as u64, "O_NOCTTY"),
            (libc::O_TRUNC as u64, "O_TRUNC"),
            (libc::O_APPEND as u64, "O_APPEND"),
            (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
            (libc::O_DSYNC as u64, "O_DSYNC"),
            (libc::O_DIRECT as u64, "O_DIRECT"),
            (libc::O_DIRECTORY as u64, "O_DIRECTORY"),
            (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
            (libc::O_CLOEXEC as u64, "O_CLOEXEC"),
            (
                libc::O_TMPFILE as u64 & !(libc::O_DIRECTORY as u64),
                "O_TMPFILE",
            ),
        ],
    );
    if rest.is_empty() {
        access.to_owned()
    } else {
        format!("{access}|{rest}")
    }
}

/// Renders a socket domain (`AF_INET`, `AF_PACKET`, ...).
pub fn socket_domain(d: u64) -> String {
    match d as i32 {
        libc::AF_UNIX => "AF_UNIX".into(),
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        libc::AF_PACKET => "AF_PACKET".into(),
        libc::AF_VSOCK => "AF_VSOCK".into(),
        other => format!("{other}"),
    }
}

/// Renders a ptrace request (`PTRACE_ATTACH`, ...).
pub fn ptrace_request(r: u64) -> String {
    let name = match r as u32 {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSR",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSR",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        other => return format!("{other}"),
    };
    name.into()
}

/// Renders clone/unshare/setns namespace flags.
pub fn ns_flags(f: u64) -> String {
    let s = flag_names(
        f,
        &[
            (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
            (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
            (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
            (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
            (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
            (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
            (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
            (libc::CLONE_FILES as u64, "CLONE_FILES"),
            (libc::CLONE_FS as u64, "CLONE_FS"),
        ],
    );
    if s.is_empty() {
        format!("{f}")
    } else {
        s
    }
}

fn syscall_args(s: &Syscall, p: &ProcInfo) -> (Vec<(&'static str, Arg)>, Option<FdInfo>) {
    let a = &s.args;
    let num = |i: usize| Arg::Num(a[i] as i64);
    let int = |i: usize| Arg::Num(a[i] as i32 as i64);
    let path1 = s.path1.clone().unwrap_or_default();
    let path2 = s.path2.clone().unwrap_or_default();
    let fd_of_ret = |name: String, flags: u64| Some(file_fd(s.ret, name, flags));
    match s.sc {
        Sc::Open | Sc::Openat | Sc::Openat2 => {
            let (dirfd, flags, mode) = match s.sc {
                Sc::Open => (AT_FDCWD, a[1], a[2]),
                _ => (a[0] as i32 as i64, a[2], a[3]),
            };
            let name = resolve_path(&path1, dirfd, p);
            (
                vec![
                    ("fd", Arg::Num(s.ret)),
                    ("dirfd", Arg::Num(dirfd)),
                    ("name", Arg::Str(name.clone())),
                    ("flags", Arg::Str(open_flags(flags))),
                    ("mode", Arg::Num(mode as i64)),
                ],
                fd_of_ret(name, flags),
            )
        }
        Sc::Connect => {
            let parsed = s.addr.as_deref().and_then(parse_sockaddr);
            let (family, server, unix) = parsed.unwrap_or((0, None, None));
            let local = procfs::socket_of_fd(p.pid, a[0] as i32 as i64);
            let l4 = local.as_ref().map(|l| l.l4proto).unwrap_or("");
            let client = local.and_then(|l| l.local);
            let mut fd = socket_fd(a[0] as i32 as i64, family, client, server, l4);
            if let Some(u) = &unix {
                fd.name = u.clone();
            }
            let addr = server.map(|s| s.to_string()).or(unix).unwrap_or_default();
            (
                vec![
                    ("fd", int(0)),
                    ("addr", Arg::Str(addr)),
                    ("res", Arg::Num(s.ret)),
                ],
                Some(fd),
            )
        }
        Sc::Accept | Sc::Accept4 => {
            let parsed = s.addr.as_deref().and_then(parse_sockaddr);
            let (family, client, unix) = parsed.unwrap_or((0, None, None));
            let local = if s.ret >= 0 {
                procfs::socket_of_fd(p.pid, s.ret)
            } else {
                None
            };
            let l4 = local.as_ref().map(|l| l.l4proto).unwrap_or("");
            let server = local.and_then(|l| l.local);
            let mut fd = socket_fd(s.ret, family, client, server, l4);
            if let Some(u) = unix {
                fd.name = u;
            }
            let tuple = fd.name.clone();
            (
                vec![("fd", Arg::Num(s.ret)), ("tuple", Arg::Str(tuple))],
                Some(fd),
            )
        }
        Sc::Socket => (
            vec![
                ("domain", Arg::Str(socket_domain(a[0]))),
                ("type", Arg::Num((a[1] & 0xf) as i64)),
                ("proto", int(2)),
                ("fd", Arg::Num(s.ret)),
            ],
            (s.ret >= 0).then(|| socket_fd(s.ret, a[0] as u16, None, None, "")),
        ),
        Sc::Ptrace => (
            vec![
                ("request", Arg::Str(ptrace_request(a[0]))),
                ("pid", int(1)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Mount => (
            vec![
                ("dev", Arg::Str(path1)),
                ("dir", Arg::Str(path2)),
                ("flags", num(3)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Umount => (
            vec![
                ("name", Arg::Str(path1)),
                ("flags", num(1)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Setns => (
            vec![
                ("fd", int(0)),
                ("nstype", Arg::Str(ns_flags(a[1]))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Unshare => (
            vec![
                ("flags", Arg::Str(ns_flags(a[0]))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Bpf => (vec![("cmd", int(0)), ("res", Arg::Num(s.ret))], None),
        Sc::MemfdCreate => (
            vec![
                ("name", Arg::Str(path1.clone())),
                ("flags", num(1)),
                ("fd", Arg::Num(s.ret)),
            ],
            (s.ret >= 0).then(|| FdInfo {
                num: s.ret,
                kind: "memfd".into(),
                typechar: 'm',
                name: format!("memfd:{path1}"),
                ..Default::default()
            }),
        ),
        Sc::Chmod => (
            vec![
                ("filename", Arg::Str(resolve_path(&path1, AT_FDCWD, p))),
                ("mode", num(1)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Fchmod => (
            vec![("fd", int(0)), ("mode", num(1)), ("res", Arg::Num(s.ret))],
            None,
        ),
        Sc::Fchmodat | Sc::Fchmodat2 => (
            vec![
                ("dirfd", int(0)),
                (
                    "filename",
                    Arg::Str(resolve_path(&path1, a[0] as i32 as i64, p)),
                ),
                ("mode", num(2)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Setuid => (vec![("uid", int(0)), ("res", Arg::Num(s.ret))], None),
        Sc::Setgid => (vec![("gid", int(0)), ("res", Arg::Num(s.ret))], None),
        Sc::Setreuid => (
            vec![("ruid", int(0)), ("euid", int(1)), ("res", Arg::Num(s.ret))],
            None,
        ),
        Sc::Setresuid => (
            vec![
                ("ruid", int(0)),
                ("euid", int(1)),
                ("suid", int(2)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Setregid => (
            vec![("rgid", int(0)), ("egid", int(1)), ("res", Arg::Num(s.ret))],
            None,
        ),
        Sc::Setresgid => (
            vec![
                ("rgid", int(0)),
                ("egid", int(1)),
                ("sgid", int(2)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Unlink => (
            vec![
                ("path", Arg::Str(resolve_path(&path1, AT_FDCWD, p))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Unlinkat => (
            vec![
                ("dirfd", int(0)),
                (
                    "name",
                    Arg::Str(resolve_path(&path1, a[0] as i32 as i64, p)),
                ),
                ("flags", num(2)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Rename => (
            vec![
                ("oldpath", Arg::Str(resolve_path(&path1, AT_FDCWD, p))),
                ("newpath", Arg::Str(resolve_path(&path2, AT_FDCWD, p))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Renameat | Sc::Renameat2 => (
            vec![
                ("olddirfd", int(0)),
                (
                    "oldpath",
                    Arg::Str(resolve_path(&path1, a[0] as i32 as i64, p)),
                ),
                ("newdirfd", int(2)),
                (
                    "newpath",
                    Arg::Str(resolve_path(&path2, a[2] as i32 as i64, p)),
                ),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        // symlink's target is stored as given (it is not resolved by the kernel either).
        Sc::Symlink => (
            vec![
                ("target", Arg::Str(path1)),
                ("linkpath", Arg::Str(resolve_path(&path2, AT_FDCWD, p))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Symlinkat => (
            vec![
                ("target", Arg::Str(path1)),
                ("linkdirfd", int(1)),
                (
                    "linkpath",
                    Arg::Str(resolve_path(&path2, a[1] as i32 as i64, p)),
                ),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Link => (
            vec![
                ("oldpath", Arg::Str(resolve_path(&path1, AT_FDCWD, p))),
                ("newpath", Arg::Str(resolve_path(&path2, AT_FDCWD, p))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Linkat => (
            vec![
                ("olddir", int(0)),
                (
                    "oldpath",
                    Arg::Str(resolve_path(&path1, a[0] as i32 as i64, p)),
                ),
                ("newdir", int(2)),
                (
                    "newpath",
                    Arg::Str(resolve_path(&path2, a[2] as i32 as i64, p)),
                ),
                ("flags", num(4)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Dup | Sc::Dup2 | Sc::Dup3 => {
            let oldfd = a[0] as i32 as i64;
            // What the duplicated fd is: ask /proc about the new fd (same file), else what the
            // table remembers of the old one.
            let live = if s.ret >= 0 {
                procfs::socket_of_fd(p.pid, s.ret)
            } else {
                None
            };
            let fd = match live {
                Some(l) => {
                    let fam = match l.family {
                        "ipv4" => libc::AF_INET,
                        "ipv6" => libc::AF_INET6,
                        _ => libc::AF_UNIX,
                    } as u16;
                    socket_fd(oldfd, fam, l.local, l.remote, l.l4proto)
                }
                None => match p.socket_family(oldfd) {
                    Some(fam) => socket_fd(oldfd, fam, None, None, ""),
                    None => {
                        let target = procfs::link(p.pid, &format!("fd/{}", s.ret.max(0)))
                            .unwrap_or_default();
                        classify_link(oldfd, target)
                    }
                },
            };
            let mut args = vec![("res", Arg::Num(s.ret)), ("oldfd", Arg::Num(oldfd))];
            if s.sc != Sc::Dup {
                args.push(("newfd", int(1)));
            }
            if s.sc == Sc::Dup3 {
                args.push(("flags", num(2)));
            }
            (args, Some(fd))
        }
        Sc::Kill => (
            vec![("pid", int(0)), ("sig", int(1)), ("res", Arg::Num(s.ret))],
            None,
        ),
        Sc::Chdir => (
            vec![
                ("path", Arg::Str(resolve_path(&path1, AT_FDCWD, p))),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::Fchdir => (vec![("fd", int(0)), ("res", Arg::Num(s.ret))], None),
        Sc::InitModule => (
            vec![
                ("len", num(1)),
                ("uargs", Arg::Str(path1)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
        Sc::FinitModule => (
            vec![
                ("fd", int(0)),
                ("uargs", Arg::Str(path1)),
                ("flags", num(2)),
                ("res", Arg::Num(s.ret)),
            ],
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_flags_like_falco() {
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64;
        let r = open_flags(f);
        assert!(r.starts_with("O_WRONLY"), "{r}");
        assert!(r.contains("O_TRUNC") && r.contains("O_CREAT"), "{r}");
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(socket_domain(17), "AF_PACKET");
        assert_eq!(ptrace_request(16), "PTRACE_ATTACH");
        assert_eq!(ptrace_request(0), "PTRACE_TRACEME");
        assert!(ns_flags(libc::CLONE_NEWNET as u64).contains("CLONE_NEWNET"));
    }

    #[test]
    fn parses_socket_addresses() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[198, 18, 0, 2]);
        let (fam, addr, _) = parse_sockaddr(&v4).unwrap();
        assert_eq!(fam as i32, libc::AF_INET);
        assert_eq!(addr.unwrap().to_string(), "198.18.0.2:8080");
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            parse_sockaddr(&v6).unwrap().1.unwrap().to_string(),
            "[::ffff:10.0.0.1]:443"
        );
        let mut un = vec![0u8; 32];
        un[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        un[2..10].copy_from_slice(b"/run/x.s");
        assert_eq!(parse_sockaddr(&un).unwrap().2.unwrap(), "/run/x.s");
        assert!(parse_sockaddr(&[1]).is_none());
    }

    #[test]
    fn classifies_fd_links() {
        assert_eq!(classify_link(3, "pipe:[1]".into()).typechar, 'p');
        assert_eq!(classify_link(3, "/etc/passwd".into()).kind, "file");
        assert_eq!(classify_link(3, "/memfd:x (deleted)".into()).kind, "memfd");
        assert_eq!(classify_link(3, String::new()).typechar, '?');
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("/a/./b/../c"), "/a/c");
        assert_eq!(normalize("/../../etc/shadow"), "/etc/shadow");
    }

    proptest! {
        #[test]
        fn sockaddr_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_sockaddr(&b);
        }

        #[test]
        fn flag_rendering_never_panics(f in any::<u64>()) {
            let _ = open_flags(f);
            let _ = ns_flags(f);
            let _ = ptrace_request(f);
            let _ = socket_domain(f);
        }
    }
}

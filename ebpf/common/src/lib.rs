//! Kernel/user shared types. Every event starts with [`EventHeader`]; the body follows and is
//! chosen by [`EventHeader::kind`]. Sizes are asserted at compile time so a field added on one
//! side only cannot silently shift the other.
#![no_std]
// `unsafe impl aya::Pod` is the one unsafe thing here, and only with the `user` feature.
#![cfg_attr(not(feature = "user"), forbid(unsafe_code))]

pub mod zones;

/// Name of the ring buffer map carrying all events.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the hash map of watched cgroup ids (v2 cgroup inode → [`WatchFlags`] bits).
pub const WATCHED_MAP: &str = "WATCHED";
/// Name of the per-CPU array of counters, indexed by [`stat_index`].
pub const STATS_MAP: &str = "STATS";
/// Name of the per-cgroup dropped-event counters (LRU per-CPU hash: cgroup v2 id → count).
pub const DROPS_BY_CGROUP_MAP: &str = "DROPS_BY_CGROUP";

/// Event kinds. Values are stable: they are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A successful execve/execveat ([`ExecEvent`]).
    Exec = 1,
    /// A watched syscall with its arguments and result ([`SyscallEvent`]).
    Syscall = 2,
    /// A process forked ([`ForkEvent`]).
    Fork = 3,
    /// A process exited ([`ExitEvent`]).
    Exit = 4,
}

impl EventKind {
    /// All kinds, for exporting per-kind counters.
    pub const ALL: [EventKind; 4] = [
        EventKind::Exec,
        EventKind::Syscall,
        EventKind::Fork,
        EventKind::Exit,
    ];

    /// Decodes a raw kind.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(EventKind::Exec),
            2 => Some(EventKind::Syscall),
            3 => Some(EventKind::Fork),
            4 => Some(EventKind::Exit),
            _ => None,
        }
    }

    /// A short lowercase name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Syscall => "syscall",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
        }
    }
}

/// Number of counter slots per event kind in [`STATS_MAP`].
pub const STATS_PER_KIND: u32 = 2;
/// Highest event kind value + 1, sizing the stats array.
pub const MAX_KIND: u32 = 16;
/// Highest [`Sc`] value + 1.
pub const MAX_SC: u32 = 64;
/// Size of the stats array: one pair per kind, then one pair per syscall.
pub const STATS_LEN: u32 = (MAX_KIND + MAX_SC) * STATS_PER_KIND;

/// Counter slots per kind.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum Stat {
    /// Events written to the ring buffer.
    Emitted = 0,
    /// Events lost because the ring buffer was full (or a scratch buffer was unavailable).
    Dropped = 1,
}

/// Index of a counter in [`STATS_MAP`].
pub const fn stat_index(kind: u32, stat: Stat) -> u32 {
    kind * STATS_PER_KIND + stat as u32
}

/// Index of a per-syscall counter in [`STATS_MAP`] (syscall events count here, not under
/// [`EventKind::Syscall`]).
pub const fn sc_stat_index(sc: u32, stat: Stat) -> u32 {
    (MAX_KIND + sc) * STATS_PER_KIND + stat as u32
}

/// Flags stored per watched cgroup.
pub struct WatchFlags;
impl WatchFlags {
    /// Report process events for this cgroup.
    pub const EVENTS: u32 = 1;
}

/// The header every event starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// CPU that produced the event.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub ts_ns: u64,
    /// Thread group id (the user-visible pid), in the initial pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's pid, when the program knows it; 0 means "ask the process table".
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Reserved, zero.
    pub _pad: u32,
    /// cgroup v2 id (the inode of the cgroup directory).
    pub cgroup_id: u64,
}

/// Maximum filename bytes kept (including the NUL).
pub const PATH_LEN: usize = 256;
/// Maximum argv entries kept.
pub const MAX_ARGS: usize = 12;
/// Maximum bytes kept per argv entry (including the NUL).
pub const ARG_LEN: usize = 128;

/// Flags in [`ExecEvent::flags`].
pub struct ExecFlags;
impl ExecFlags {
    /// argv had more than [`MAX_ARGS`] entries.
    pub const ARGS_TRUNCATED: u32 = 1;
    /// At least one argv entry was longer than [`ARG_LEN`] - 1 bytes.
    pub const ARG_CUT: u32 = 2;
    /// The filename was longer than [`PATH_LEN`] - 1 bytes.
    pub const PATH_CUT: u32 = 4;
    /// Came from execveat rather than execve.
    pub const EXECVEAT: u32 = 8;
}

/// A successful exec. Strings are NUL-terminated within their slots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// Common header; `kind` is [`EventKind::Exec`].
    pub hdr: EventHeader,
    /// The syscall's return value (0 on success; only successes are reported).
    pub ret: i32,
    /// Number of argv slots filled.
    pub argc: u32,
    /// [`ExecFlags`] bits.
    pub flags: u32,
    /// execveat's directory fd (as u32; `AT_FDCWD` is 0xffffff9c); 0 for execve.
    pub dirfd: u32,
    /// The filename argument as the caller gave it.
    pub filename: [u8; PATH_LEN],
    /// argv, one entry per slot.
    pub args: [[u8; ARG_LEN]; MAX_ARGS],
}

/// Syscalls the sensor reports as [`SyscallEvent`]s. Values are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sc {
    /// open(path, flags, mode)
    Open = 1,
    /// openat(dirfd, path, flags, mode)
    Openat = 2,
    /// openat2(dirfd, path, how, size); `args[2]` holds `how.flags`, `args[3]` `how.mode`.
    Openat2 = 3,
    /// connect(fd, addr, len)
    Connect = 4,
    /// accept(fd, addr, len); the peer address is read at exit.
    Accept = 5,
    /// accept4(fd, addr, len, flags)
    Accept4 = 6,
    /// socket(domain, type, protocol)
    Socket = 7,
    /// ptrace(request, pid, addr, data)
    Ptrace = 8,
    /// mount(source, target, fstype, flags, data)
    Mount = 9,
    /// umount2(target, flags)
    Umount = 10,
    /// setns(fd, nstype)
    Setns = 11,
    /// unshare(flags)
    Unshare = 12,
    /// bpf(cmd, attr, size)
    Bpf = 13,
    /// memfd_create(name, flags)
    MemfdCreate = 14,
    /// chmod(path, mode)
    Chmod = 15,
    /// fchmod(fd, mode)
    Fchmod = 16,
    /// fchmodat(dirfd, path, mode)
    Fchmodat = 17,
    /// setuid(uid)
    Setuid = 18,
    /// setgid(gid)
    Setgid = 19,
    /// setreuid(ruid, euid)
    Setreuid = 20,
    /// setresuid(ruid, euid, suid)
    Setresuid = 21,
    /// setregid(rgid, egid)
    Setregid = 22,
    /// setresgid(rgid, egid, sgid)
    Setresgid = 23,
    /// unlink(path)
    Unlink = 24,
    /// unlinkat(dirfd, path, flags)
    Unlinkat = 25,
    /// rename(old, new)
    Rename = 26,
    /// renameat(olddirfd, old, newdirfd, new)
    Renameat = 27,
    /// renameat2(olddirfd, old, newdirfd, new, flags)
    Renameat2 = 28,
    /// symlink(target, linkpath)
    Symlink = 29,
    /// symlinkat(target, newdirfd, linkpath)
    Symlinkat = 30,
    /// link(old, new)
    Link = 31,
    /// linkat(olddirfd, old, newdirfd, new, flags)
    Linkat = 32,
    /// dup(fd)
    Dup = 33,
    /// dup2(oldfd, newfd)
    Dup2 = 34,
    /// dup3(oldfd, newfd, flags)
    Dup3 = 35,
    /// kill(pid, sig)
    Kill = 36,
    /// fchmodat2(dirfd, path, mode, flags)
    Fchmodat2 = 37,
    /// chdir(path): keeps the process table's working directory right.
    Chdir = 38,
    /// fchdir(fd)
    Fchdir = 39,
    /// init_module(image, len, params); absent on kernels built without module support.
    InitModule = 40,
    /// finit_module(fd, params, flags)
    FinitModule = 41,
}

impl Sc {
    /// Every reported syscall.
    pub const ALL: [Sc; 41] = [
        Sc::Open,
        Sc::Openat,
        Sc::Openat2,
        Sc::Connect,
        Sc::Accept,
        Sc::Accept4,
        Sc::Socket,
        Sc::Ptrace,
        Sc::Mount,
        Sc::Umount,
        Sc::Setns,
        Sc::Unshare,
        Sc::Bpf,
        Sc::MemfdCreate,
        Sc::Chmod,
        Sc::Fchmod,
        Sc::Fchmodat,
        Sc::Setuid,
        Sc::Setgid,
        Sc::Setreuid,
        Sc::Setresuid,
        Sc::Setregid,
        Sc::Setresgid,
        Sc::Unlink,
        Sc::Unlinkat,
        Sc::Rename,
        Sc::Renameat,
        Sc::Renameat2,
        Sc::Symlink,
        Sc::Symlinkat,
        Sc::Link,
        Sc::Linkat,
        Sc::Dup,
        Sc::Dup2,
        Sc::Dup3,
        Sc::Kill,
        Sc::Fchmodat2,
        Sc::Chdir,
        Sc::Fchdir,
        Sc::InitModule,
        Sc::FinitModule,
    ];

    /// Decodes a raw value.
    pub fn from_u32(v: u32) -> Option<Sc> {
        Sc::ALL.iter().copied().find(|s| *s as u32 == v)
    }

    /// The syscall's name as Falco's `evt.type` spells it (umount2 is `umount`, as in Falco).
    pub fn name(self) -> &'static str {
        match self {
            Sc::Open => "open",
            Sc::Openat => "openat",
            Sc::Openat2 => "openat2",
            Sc::Connect => "connect",
            Sc::Accept => "accept",
            Sc::Accept4 => "accept4",
            Sc::Socket => "socket",
            Sc::Ptrace => "ptrace",
            Sc::Mount => "mount",
            Sc::Umount => "umount",
            Sc::Setns => "setns",
            Sc::Unshare => "unshare",
            Sc::Bpf => "bpf",
            Sc::MemfdCreate => "memfd_create",
            Sc::Chmod => "chmod",
            Sc::Fchmod => "fchmod",
            Sc::Fchmodat => "fchmodat",
            Sc::Setuid => "setuid",
            Sc::Setgid => "setgid",
            Sc::Setreuid => "setreuid",
            Sc::Setresuid => "setresuid",
            Sc::Setregid => "setregid",
            Sc::Setresgid => "setresgid",
            Sc::Unlink => "unlink",
            Sc::Unlinkat => "unlinkat",
            Sc::Rename => "rename",
            Sc::Renameat => "renameat",
            Sc::Renameat2 => "renameat2",
            Sc::Symlink => "symlink",
            Sc::Symlinkat => "symlinkat",
            Sc::Link => "link",
            Sc::Linkat => "linkat",
            Sc::Dup => "dup",
            Sc::Dup2 => "dup2",
            Sc::Dup3 => "dup3",
            Sc::Kill => "kill",
            Sc::Fchmodat2 => "fchmodat2",
            Sc::Chdir => "chdir",
            Sc::Fchdir => "fchdir",
            Sc::InitModule => "init_module",
            Sc::FinitModule => "finit_module",
        }
    }
}

/// Flags in [`SyscallEvent::flags`].
pub struct SyscallFlags;
impl SyscallFlags {
    /// `path1` was cut at [`PATH_LEN`] - 1 bytes.
    pub const PATH1_CUT: u32 = 1;
    /// `path2` was cut at [`PATH_LEN`] - 1 bytes.
    pub const PATH2_CUT: u32 = 2;
    /// `addr` holds a socket address of `addr_len` bytes.
    pub const HAS_ADDR: u32 = 4;
}

/// Bytes kept of a socket address (enough for `sockaddr_in6`; a `sockaddr_un` path is cut).
pub const ADDR_LEN: usize = 32;

/// A watched syscall, reported at its exit with its entry arguments.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallEvent {
    /// Common header; `kind` is [`EventKind::Syscall`].
    pub hdr: EventHeader,
    /// An [`Sc`] value.
    pub sc: u32,
    /// [`SyscallFlags`] bits.
    pub flags: u32,
    /// The return value.
    pub ret: i64,
    /// The raw arguments (pointers are meaningless to user space, except as "was it NULL").
    pub args: [u64; 6],
    /// The first path-like argument, if the syscall has one.
    pub path1: [u8; PATH_LEN],
    /// The second path-like argument (rename/link/symlink/mount targets).
    pub path2: [u8; PATH_LEN],
    /// The socket address argument (connect) or result (accept).
    pub addr: [u8; ADDR_LEN],
    /// Bytes of `addr` that are valid.
    pub addr_len: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// A fork/clone that created a new process (not a thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    /// Common header (of the parent); `kind` is [`EventKind::Fork`].
    pub hdr: EventHeader,
    /// The child's pid.
    pub child_pid: u32,
    /// Reserved, zero.
    pub _pad: u32,
}

/// A process exit (the whole thread group).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    /// Common header; `kind` is [`EventKind::Exit`].
    pub hdr: EventHeader,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 48);
const _: () =
    assert!(core::mem::size_of::<SyscallEvent>() == 48 + 16 + 48 + 2 * PATH_LEN + ADDR_LEN + 8);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 56);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 48);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48 + 16 + PATH_LEN + ARG_LEN * MAX_ARGS);
const _: () = assert!(core::mem::align_of::<ExecEvent>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: #[repr(C)], only integers and byte arrays, no padding holes
    // (asserted by the sizes above), every bit pattern valid.
    unsafe impl aya::Pod for super::EventHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExecEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ForkEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExitEvent {}
}

/// Returns the bytes of a NUL-terminated slot up to (not including) the first NUL.
pub fn c_str(slot: &[u8]) -> &[u8] {
    let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
    &slot[..end]
}

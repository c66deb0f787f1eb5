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

/// Event kinds. Values are stable: they are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A successful execve/execveat ([`ExecEvent`]).
    Exec = 1,
}

impl EventKind {
    /// All kinds, for exporting per-kind counters.
    pub const ALL: [EventKind; 1] = [EventKind::Exec];

    /// Decodes a raw kind.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(EventKind::Exec),
            _ => None,
        }
    }

    /// A short lowercase name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
        }
    }
}

/// Number of counter slots per event kind in [`STATS_MAP`].
pub const STATS_PER_KIND: u32 = 2;
/// Highest event kind value + 1, sizing the stats array.
pub const MAX_KIND: u32 = 16;
/// Size of the stats array.
pub const STATS_LEN: u32 = MAX_KIND * STATS_PER_KIND;

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
    /// Reserved, zero.
    pub _pad: u32,
    /// The filename argument as the caller gave it.
    pub filename: [u8; PATH_LEN],
    /// argv, one entry per slot.
    pub args: [[u8; ARG_LEN]; MAX_ARGS],
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 48);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 48 + 16 + PATH_LEN + ARG_LEN * MAX_ARGS);
const _: () = assert!(core::mem::align_of::<ExecEvent>() == 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: #[repr(C)], only integers and byte arrays, no padding holes
    // (asserted by the sizes above), every bit pattern valid.
    unsafe impl aya::Pod for super::EventHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExecEvent {}
}

/// Returns the bytes of a NUL-terminated slot up to (not including) the first NUL.
pub fn c_str(slot: &[u8]) -> &[u8] {
    let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
    &slot[..end]
}

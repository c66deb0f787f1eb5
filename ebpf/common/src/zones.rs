//! Kernel/user contract of the network zone programs (`ebpf/programs/src/bin/zones.rs`).
//!
//! Policy is two maps. [`ZONE_CGROUPS_MAP`] says which policy a container's cgroup follows;
//! [`ZONE_POLICY_MAP`] is an LPM trie keyed by (policy id, address) whose value lists the allowed
//! (protocol, port range) pairs for that prefix. IPv4 addresses are stored IPv4-mapped
//! (`::ffff:a.b.c.d`), so `connect4(1.2.3.4)` and `connect6(::ffff:1.2.3.4)` find the same entry.
//! Everything that finds no entry is denied.

/// cgroup v2 id → policy id (u32). Pinned by name.
pub const ZONE_CGROUPS_MAP: &str = "ZONE_CGROUPS";
/// LPM trie of [`PolicyAddr`] → [`PolicyValue`]. Pinned by name.
pub const ZONE_POLICY_MAP: &str = "ZONE_POLICY";
/// Ring buffer of [`DenyEvent`]s. Pinned by name so denials during an agent restart wait for it.
pub const ZONE_EVENTS_MAP: &str = "ZONE_EVENTS";
/// Per-CPU counters, indexed by [`zone_stat_index`]. Pinned by name.
pub const ZONE_STATS_MAP: &str = "ZONE_STATS";
/// Per-cgroup denial-event rate limiter state ([`RateState`]).
pub const ZONE_RATE_MAP: &str = "ZONE_RATE";
/// Isolation locks: cgroup id → 1 (that container is isolated: the `isolate` response), and key
/// [`LOCK_ALL`] → 1 (safe mode `close_egress`: every enforced cgroup). A locked cgroup keeps its
/// loopback (a pod's agent still reaches its sidecar) and loses everything else, whatever its
/// policy says.
pub const ZONE_LOCK_MAP: &str = "ZONE_LOCK";
/// The [`ZONE_LOCK_MAP`] key that locks every enforced cgroup (no cgroup has id 0).
pub const LOCK_ALL: u64 = 0;

/// Most rules one prefix entry holds; the policy compiler refuses more.
pub const MAX_RULES: usize = 16;
/// Bit set in a policy id for the inbound half of a policy (peers that may open connections to
/// this container's ports). The outbound half uses the id as is.
pub const INBOUND: u32 = 0x8000_0000;
/// Denial events per cgroup per second before they are only counted.
pub const EVENTS_PER_SEC: u32 = 20;

/// Protocol bits in [`PortRule::protos`].
pub struct Proto;
impl Proto {
    /// TCP.
    pub const TCP: u32 = 1;
    /// UDP.
    pub const UDP: u32 = 2;
    /// ICMP and ICMPv6 (ports do not apply).
    pub const ICMP: u32 = 4;

    /// The bit for an IP protocol number, 0 for protocols no rule can allow.
    pub const fn from_ip(proto: u32) -> u32 {
        match proto {
            6 => Self::TCP,
            17 => Self::UDP,
            1 | 58 => Self::ICMP,
            _ => 0,
        }
    }
}

/// The data part of an LPM key: 32 bits of policy id, then a 128-bit address (IPv4 mapped).
/// A v4 prefix /n is stored with prefix length `32 + 96 + n`, a v6 prefix /n with `32 + n`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyAddr {
    /// Policy id in big-endian byte order (the trie matches bytes most significant bit first).
    pub policy_be: [u8; 4],
    /// The address, network byte order.
    pub addr: [u8; 16],
}

/// One allowed (protocols, port range) pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRule {
    /// First allowed port (host order).
    pub lo: u16,
    /// Last allowed port, inclusive.
    pub hi: u16,
    /// [`Proto`] bits.
    pub protos: u32,
}

/// What a prefix allows: the first `count` entries of `rules`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// Number of valid rules.
    pub count: u32,
    /// Index of the flow (in user space's table) that produced this entry, for reports.
    pub flow: u32,
    /// The rules.
    pub rules: [PortRule; MAX_RULES],
}

impl PolicyValue {
    /// True if a packet of protocol bit `proto` to `port` is allowed.
    #[inline(always)]
    pub fn allows(&self, proto: u32, port: u16) -> bool {
        let mut i = 0;
        while i < MAX_RULES {
            if (i as u32) >= self.count {
                return false;
            }
            let r = &self.rules[i];
            if r.protos & proto != 0 && (proto == Proto::ICMP || (r.lo <= port && port <= r.hi)) {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// The hook that saw a connection attempt or packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `connect()` on an IPv4 socket.
    Connect4 = 0,
    /// `connect()` on an IPv6 socket.
    Connect6 = 1,
    /// `sendmsg()`/`sendto()` with an address on an unconnected IPv4 UDP socket.
    Sendmsg4 = 2,
    /// The same for IPv6.
    Sendmsg6 = 3,
    /// A packet leaving a socket of the container (backstop).
    Egress = 4,
    /// A packet arriving at a socket of the container (backstop).
    Ingress = 5,
}

impl Hook {
    /// All hooks.
    pub const ALL: [Hook; 6] = [
        Hook::Connect4,
        Hook::Connect6,
        Hook::Sendmsg4,
        Hook::Sendmsg6,
        Hook::Egress,
        Hook::Ingress,
    ];

    /// Decodes a raw value.
    pub fn from_u32(v: u32) -> Option<Hook> {
        Self::ALL.get(v as usize).copied()
    }

    /// Name for logs, metrics and the program in the object.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect4 => "connect4",
            Hook::Connect6 => "connect6",
            Hook::Sendmsg4 => "sendmsg4",
            Hook::Sendmsg6 => "sendmsg6",
            Hook::Egress => "egress",
            Hook::Ingress => "ingress",
        }
    }
}

/// Why a connection or packet was denied.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The cgroup has programs attached but no policy (a sub-cgroup, or a policy being removed).
    NoPolicy = 1,
    /// No allowed prefix contains the address.
    NoFlow = 2,
    /// A prefix matched but not the protocol/port.
    Port = 3,
    /// The cgroup (or the whole node, safe mode) is isolated: only loopback is allowed.
    Isolated = 4,
}

impl DenyReason {
    /// Decodes a raw value.
    pub fn from_u32(v: u32) -> Option<DenyReason> {
        match v {
            1 => Some(DenyReason::NoPolicy),
            2 => Some(DenyReason::NoFlow),
            3 => Some(DenyReason::Port),
            4 => Some(DenyReason::Isolated),
            _ => None,
        }
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            DenyReason::NoPolicy => "no-policy",
            DenyReason::NoFlow => "no-flow",
            DenyReason::Port => "port-not-allowed",
            DenyReason::Isolated => "isolated",
        }
    }
}

/// Counter slots per hook.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
pub enum ZoneStat {
    /// Allowed.
    Allowed = 0,
    /// Denied.
    Denied = 1,
    /// Denied, event suppressed by the per-cgroup rate limit.
    Suppressed = 2,
    /// Denied, event lost (ring buffer full).
    Lost = 3,
}

/// Slots per hook in [`ZONE_STATS_MAP`].
pub const ZONE_STATS_PER_HOOK: u32 = 4;
/// Size of [`ZONE_STATS_MAP`].
pub const ZONE_STATS_LEN: u32 = 6 * ZONE_STATS_PER_HOOK;

/// Index of a counter in [`ZONE_STATS_MAP`].
pub const fn zone_stat_index(hook: u32, stat: ZoneStat) -> u32 {
    hook * ZONE_STATS_PER_HOOK + stat as u32
}

/// Rate limiter state per cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RateState {
    /// Start of the current one-second window (`bpf_ktime_get_ns`).
    pub window_ns: u64,
    /// Events emitted in the window.
    pub sent: u32,
    /// Events suppressed in the window (reported with the next emitted event).
    pub suppressed: u32,
}

/// A denied connection attempt or packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DenyEvent {
    /// `bpf_ktime_get_boot_ns()`.
    pub ts_ns: u64,
    /// cgroup v2 id of the container.
    pub cgroup_id: u64,
    /// Thread group id (0 for packets, which have no reliable task).
    pub pid: u32,
    /// Policy id the cgroup followed (0 if none).
    pub policy: u32,
    /// A [`Hook`] value.
    pub hook: u32,
    /// A [`DenyReason`] value.
    pub reason: u32,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...).
    pub proto: u32,
    /// Address family as the caller used it (2 = AF_INET, 10 = AF_INET6).
    pub family: u32,
    /// Remote port (host order).
    pub port: u16,
    /// Local port (host order; 0 when unknown).
    pub local_port: u16,
    /// Events this cgroup had suppressed before this one (rate limit).
    pub suppressed: u32,
    /// Remote address (IPv4 mapped).
    pub addr: [u8; 16],
    /// Task command name (empty for packets).
    pub comm: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<PolicyAddr>() == 20);
const _: () = assert!(core::mem::size_of::<PortRule>() == 8);
const _: () = assert!(core::mem::size_of::<PolicyValue>() == 8 + 8 * MAX_RULES);
const _: () = assert!(core::mem::size_of::<RateState>() == 16);
const _: () = assert!(core::mem::size_of::<DenyEvent>() == 80);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: #[repr(C)], only integers and byte arrays, no padding holes
    // (asserted by the sizes above), every bit pattern valid.
    unsafe impl aya::Pod for super::PolicyAddr {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PolicyValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DenyEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_checks_proto_and_range() {
        let mut v = PolicyValue {
            count: 2,
            ..Default::default()
        };
        v.rules[0] = PortRule {
            lo: 80,
            hi: 80,
            protos: Proto::TCP,
        };
        v.rules[1] = PortRule {
            lo: 0,
            hi: 0,
            protos: Proto::ICMP,
        };
        assert!(v.allows(Proto::TCP, 80));
        assert!(!v.allows(Proto::UDP, 80));
        assert!(!v.allows(Proto::TCP, 81));
        assert!(v.allows(Proto::ICMP, 0));
        // Entries past `count` are ignored even if filled.
        v.rules[2] = PortRule {
            lo: 0,
            hi: 65535,
            protos: Proto::UDP,
        };
        assert!(!v.allows(Proto::UDP, 53));
        assert_eq!(Proto::from_ip(47), 0);
    }
}

//! brainbox-guard's network zones: cgroup-BPF programs attached to each watched container's
//! cgroup. Socket-address hooks (`connect4/6`, `sendmsg4/6`) refuse a forbidden destination with
//! EPERM before any packet exists; `cgroup_skb` egress/ingress is the backstop for what those
//! hooks never see (ICMP echo sockets, TCP Fast Open, anything a future kernel path adds).
//!
//! Default deny: a cgroup without a policy entry, an address without a prefix entry, or a port
//! without a rule is refused. Programs are attached only to watched containers, so the host and
//! unwatched containers never run them.
#![no_std]
#![no_main]

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock_addr},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_boot_ns, bpf_ktime_get_ns, bpf_skb_cgroup_id,
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{lpm_trie::Key, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockAddrContext},
};
use brainbox_ebpf_common::zones::{
    zone_stat_index, DenyEvent, DenyReason, Hook, PolicyAddr, PolicyValue, Proto, RateState,
    ZoneStat, EVENTS_PER_SEC, INBOUND, LOCK_ALL, ZONE_STATS_LEN,
};

/// cgroup v2 id → policy id.
#[map(name = "ZONE_CGROUPS")]
static ZONE_CGROUPS: HashMap<u64, u32> = HashMap::pinned(16384, 0);

/// (policy id, prefix) → allowed protocols and ports.
#[map(name = "ZONE_POLICY")]
static ZONE_POLICY: LpmTrie<PolicyAddr, PolicyValue> = LpmTrie::pinned(65536, 0);

/// Isolation locks: cgroup id (or `LOCK_ALL`) → 1.
#[map(name = "ZONE_LOCK")]
static ZONE_LOCK: HashMap<u64, u32> = HashMap::pinned(16384, 0);

/// Denial events.
#[map(name = "ZONE_EVENTS")]
static ZONE_EVENTS: RingBuf = RingBuf::pinned(1024 * 1024, 0);

/// Allowed/denied/suppressed/lost counters per hook.
#[map(name = "ZONE_STATS")]
static ZONE_STATS: PerCpuArray<u64> = PerCpuArray::pinned(ZONE_STATS_LEN, 0);

/// Denial event rate limit per cgroup.
#[map(name = "ZONE_RATE")]
static ZONE_RATE: LruHashMap<u64, RateState> = LruHashMap::pinned(16384, 0);

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[inline(always)]
fn count(hook: Hook, stat: ZoneStat) {
    if let Some(p) = ZONE_STATS.get_ptr_mut(zone_stat_index(hook as u32, stat)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn mapped_v4(ip_be: u32) -> [u8; 16] {
    let b = ip_be.to_ne_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

#[inline(always)]
fn v6(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

#[inline(always)]
fn lookup(policy: u32, addr: [u8; 16]) -> Option<&'static PolicyValue> {
    let key = Key::new(
        160,
        PolicyAddr {
            policy_be: policy.to_be_bytes(),
            addr,
        },
    );
    ZONE_POLICY.get(&key)
}

/// Whether `cgroup` is isolated, by itself or with the whole node.
#[inline(always)]
fn locked(cgroup: u64) -> bool {
    // SAFETY: values are copied out.
    unsafe { ZONE_LOCK.get(&LOCK_ALL).is_some() || ZONE_LOCK.get(&cgroup).is_some() }
}

/// 127.0.0.0/8 (as v4-mapped) or ::1.
#[inline(always)]
fn loopback(addr: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    if addr[10] == 0xff && addr[11] == 0xff {
        return addr[12] == 127;
    }
    addr[10] == 0 && addr[11] == 0 && addr[12] == 0 && addr[13] == 0 && addr[14] == 0 && addr[15] == 1
}

/// The verdict: Ok(()) allowed, Err(reason) denied.
#[inline(always)]
fn check(policy: Option<u32>, addr: [u8; 16], proto: u32, port: u16) -> Result<(), DenyReason> {
    let Some(policy) = policy else {
        return Err(DenyReason::NoPolicy);
    };
    match lookup(policy, addr) {
        None => Err(DenyReason::NoFlow),
        Some(v) if v.allows(proto, port) => Ok(()),
        Some(_) => Err(DenyReason::Port),
    }
}

#[inline(always)]
fn policy_of(cgroup: u64) -> Option<u32> {
    // SAFETY: the value is copied out.
    unsafe { ZONE_CGROUPS.get(&cgroup) }.copied()
}

/// Reports a denial, at most [`EVENTS_PER_SEC`] per cgroup per second; the rest are counted and
/// the count travels with the next event that gets through.
#[inline(always)]
fn report(
    hook: Hook,
    cgroup: u64,
    policy: Option<u32>,
    reason: DenyReason,
    ev: Remote,
    task: bool,
) {
    count(hook, ZoneStat::Denied);
    // SAFETY: helper without pointer arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut suppressed = 0;
    // SAFETY: the map value is only touched through this pointer while we run; races between
    // CPUs make the limit approximate, never unsafe.
    match ZONE_RATE.get_ptr_mut(&cgroup) {
        Some(st) => {
            let st = unsafe { &mut *st };
            if now.wrapping_sub(st.window_ns) >= 1_000_000_000 {
                st.window_ns = now;
                st.sent = 0;
            }
            if st.sent >= EVENTS_PER_SEC {
                st.suppressed = st.suppressed.wrapping_add(1);
                count(hook, ZoneStat::Suppressed);
                return;
            }
            st.sent += 1;
            suppressed = st.suppressed;
            st.suppressed = 0;
        }
        None => {
            let st = RateState {
                window_ns: now,
                sent: 1,
                suppressed: 0,
            };
            let _ = ZONE_RATE.insert(&cgroup, &st, 0);
        }
    }
    let Some(mut slot) = ZONE_EVENTS.reserve::<DenyEvent>(0) else {
        count(hook, ZoneStat::Lost);
        return;
    };
    let (pid, comm) = if task {
        (
            (bpf_get_current_pid_tgid() >> 32) as u32,
            bpf_get_current_comm().unwrap_or([0u8; 16]),
        )
    } else {
        (0, [0u8; 16])
    };
    slot.write(DenyEvent {
        // SAFETY: helper without pointer arguments.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        cgroup_id: cgroup,
        pid,
        policy: policy.unwrap_or(0),
        hook: hook as u32,
        reason: reason as u32,
        proto: ev.proto,
        family: ev.family,
        port: ev.port,
        local_port: ev.local_port,
        suppressed,
        addr: ev.addr,
        comm,
    });
    slot.submit(0);
}

/// The other end of a connection attempt or packet.
#[derive(Clone, Copy)]
struct Remote {
    addr: [u8; 16],
    port: u16,
    local_port: u16,
    proto: u32,
    family: u32,
}

#[inline(always)]
fn sock_addr(ctx: &SockAddrContext, hook: Hook) -> i32 {
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    // SAFETY: the kernel hands us a valid context. Every field is read with a volatile 4-byte
    // load straight off the context pointer (the verifier refuses loads through a pointer the
    // compiler derived from it), and only fields valid for this hook's family are touched.
    let (family, proto, port_raw) = unsafe {
        (
            read_volatile(addr_of!((*sa).user_family)),
            read_volatile(addr_of!((*sa).protocol)),
            read_volatile(addr_of!((*sa).user_port)),
        )
    };
    let is_v6 = matches!(hook, Hook::Connect6 | Hook::Sendmsg6);
    let addr = if !is_v6 {
        mapped_v4(unsafe { read_volatile(addr_of!((*sa).user_ip4)) })
    } else {
        v6(unsafe {
            [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ]
        })
    };
    if family != AF_INET && family != AF_INET6 {
        // AF_UNSPEC (disconnect) carries no destination.
        count(hook, ZoneStat::Allowed);
        return 1;
    }
    let port = u16::from_be(port_raw as u16);
    // SAFETY: helper without pointer arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let policy = policy_of(cgroup);
    let verdict = if locked(cgroup) && !loopback(&addr) {
        Err(DenyReason::Isolated)
    } else {
        check(policy, addr, Proto::from_ip(proto), port)
    };
    match verdict {
        Ok(()) => {
            count(hook, ZoneStat::Allowed);
            1
        }
        Err(reason) => {
            report(
                hook,
                cgroup,
                policy,
                reason,
                Remote {
                    addr,
                    port,
                    local_port: 0,
                    proto,
                    family,
                },
                true,
            );
            0
        }
    }
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, Hook::Connect4)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, Hook::Connect6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, Hook::Sendmsg4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, Hook::Sendmsg6)
}

/// Parsed network and transport headers of a packet.
struct Packet {
    src: [u8; 16],
    dst: [u8; 16],
    proto: u32,
    sport: u16,
    dport: u16,
    family: u32,
}

#[inline(always)]
fn parse(ctx: &SkBuffContext) -> Option<Packet> {
    // cgroup_skb data starts at the network header.
    let first: u8 = ctx.load(0).ok()?;
    let (src, dst, proto, l4, family) = match first >> 4 {
        4 => {
            let ihl = ((first & 0x0f) as usize) * 4;
            let proto: u8 = ctx.load(9).ok()?;
            let s: u32 = ctx.load(12).ok()?;
            let d: u32 = ctx.load(16).ok()?;
            (mapped_v4(s), mapped_v4(d), proto as u32, ihl, AF_INET)
        }
        6 => {
            let next: u8 = ctx.load(6).ok()?;
            let s: [u8; 16] = ctx.load(8).ok()?;
            let d: [u8; 16] = ctx.load(24).ok()?;
            (s, d, next as u32, 40usize, AF_INET6)
        }
        _ => return None,
    };
    let (sport, dport) = if proto == 6 || proto == 17 {
        let s: u16 = ctx.load(l4).ok()?;
        let d: u16 = ctx.load(l4 + 2).ok()?;
        (u16::from_be(s), u16::from_be(d))
    } else {
        (0, 0)
    };
    Some(Packet {
        src,
        dst,
        proto,
        sport,
        dport,
        family,
    })
}

/// Stateless packet check. A packet is allowed if it belongs to a flow the policy allows in
/// either direction: outbound to (peer, peer port), or inbound from peer to (our port). The
/// socket hooks are the primary control; this catches paths they do not cover.
#[inline(always)]
fn skb(ctx: &SkBuffContext, hook: Hook) -> i32 {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // SAFETY: the context pointer comes from the kernel.
    let cgroup = unsafe { bpf_skb_cgroup_id(skb) };
    let policy = policy_of(cgroup);
    let Some(p) = parse(ctx) else {
        // Not IP (cannot happen on these hooks): nothing to match, so refuse.
        report(
            hook,
            cgroup,
            policy,
            DenyReason::NoFlow,
            Remote {
                addr: [0; 16],
                port: 0,
                local_port: 0,
                proto: 0,
                family: 0,
            },
            false,
        );
        return 0;
    };
    let (peer, peer_port, local_port) = if hook as u32 == Hook::Egress as u32 {
        (p.dst, p.dport, p.sport)
    } else {
        (p.src, p.sport, p.dport)
    };
    let bit = Proto::from_ip(p.proto);
    let verdict = match policy {
        _ if locked(cgroup) && !loopback(&peer) => Err(DenyReason::Isolated),
        None => Err(DenyReason::NoPolicy),
        Some(id) => {
            let out = check(Some(id), peer, bit, peer_port);
            match out {
                Ok(()) => Ok(()),
                Err(first) => match check(Some(id | INBOUND), peer, bit, local_port) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(first),
                },
            }
        }
    };
    match verdict {
        Ok(()) => {
            count(hook, ZoneStat::Allowed);
            1
        }
        Err(reason) => {
            report(
                hook,
                cgroup,
                policy,
                reason,
                Remote {
                    addr: peer,
                    port: peer_port,
                    local_port,
                    proto: p.proto,
                    family: p.family,
                },
                false,
            );
            0
        }
    }
}

#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    skb(&ctx, Hook::Egress)
}

#[cgroup_skb(ingress)]
pub fn ingress(ctx: SkBuffContext) -> i32 {
    skb(&ctx, Hook::Ingress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

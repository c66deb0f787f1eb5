//! The policy compiler: zone policy + the containers the agent knows → the contents of the
//! kernel maps. Pure and deterministic, so it is tested without a kernel and its digest lets a
//! restarted agent show that it enforces the same policy as before.

use brainbox_ebpf_common::zones::{PolicyAddr, PolicyValue, PortRule, Proto, INBOUND, MAX_RULES};
use brainbox_profile::{
    zones::{Cidr, FlowProto, ZonePolicy},
    Zone,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

/// A container's role for the zone policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The agent container of a brainbox pod: only its sidecar's proxy port on loopback.
    Agent,
    /// The sidecar of a brainbox pod: its zone's flows, plus serving the proxy port in the pod.
    Sidecar,
    /// Any other watched container: its zone's flows.
    Standalone,
}

impl Role {
    /// From the `brainbox.io/role` label.
    pub fn from_label(label: Option<&str>) -> Role {
        match label {
            Some("agent") => Role::Agent,
            Some("sidecar") => Role::Sidecar,
            _ => Role::Standalone,
        }
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Sidecar => "sidecar",
            Role::Standalone => "standalone",
        }
    }
}

/// A container the policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Zone (from its profile; unknown profiles are `untrusted`).
    pub zone: Zone,
    /// Role in its pod.
    pub role: Role,
    /// Addresses of the container's network namespace (empty for containers that join
    /// another's namespace).
    pub addrs: Vec<IpAddr>,
}

/// Why a policy cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Too many distinct port rules for one destination prefix.
    #[error("policy for {container} has {count} port rules for {prefix}; at most {max} fit (merge ports into ranges)")]
    TooManyRules {
        container: String,
        prefix: String,
        count: usize,
        max: usize,
    },
    /// A CIDR did not parse (validation should have caught it).
    #[error("flow `{flow}`: {reason}")]
    Cidr { flow: String, reason: String },
}

/// An LPM key: prefix length and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// Prefix length in bits, counting the 32 bits of policy id.
    pub prefix_len: u32,
    /// Policy id and address.
    pub key: PolicyAddr,
}

/// What the compiler produces.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// cgroup id → policy id.
    pub cgroups: BTreeMap<u64, u32>,
    /// LPM entries.
    pub entries: BTreeMap<Entry, PolicyValue>,
    /// policy id → a description (container and role), for denial reports.
    pub policies: BTreeMap<u32, PolicyInfo>,
    /// A digest of the policy independent of policy ids (which change every generation).
    pub digest: String,
}

/// What a policy id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Container id.
    pub container_id: String,
    /// Zone.
    pub zone: Zone,
    /// Role.
    pub role: Role,
}

fn v4(a: Ipv4Addr) -> [u8; 16] {
    a.to_ipv6_mapped().octets()
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => a.octets(),
    }
}

/// (address, prefix length in the 128-bit space).
type Prefix = ([u8; 16], u32);

fn prefix_of(c: &Cidr) -> Prefix {
    match c.addr {
        IpAddr::V4(a) => (v4(a), 96 + c.len as u32),
        IpAddr::V6(a) => (a.octets(), c.len as u32),
    }
}

fn host(a: IpAddr) -> Prefix {
    (addr16(a), 128)
}

fn contains(outer: &Prefix, inner: &Prefix) -> bool {
    if outer.1 > inner.1 {
        return false;
    }
    let o = u128::from_be_bytes(outer.0);
    let i = u128::from_be_bytes(inner.0);
    let mask = if outer.1 == 0 {
        0
    } else {
        u128::MAX << (128 - outer.1)
    };
    o & mask == i & mask
}

fn proto_bit(p: FlowProto) -> u32 {
    match p {
        FlowProto::Tcp => Proto::TCP,
        FlowProto::Udp => Proto::UDP,
        FlowProto::Icmp => Proto::ICMP,
    }
}

/// One direction of one container's policy: prefix → (rules, flow index).
type Half = BTreeMap<Prefix, (BTreeSet<PortRule>, u32)>;

fn add(half: &mut Half, prefix: Prefix, rules: &[PortRule], flow: u32) {
    let e = half
        .entry(prefix)
        .or_insert_with(|| (BTreeSet::new(), flow));
    e.0.extend(rules.iter().copied());
}

/// Base policy ids of the two generations; a reload writes the other one, then flips.
pub const GENERATIONS: [u32; 2] = [1, 0x4000_0000];

/// The generation a policy id belongs to.
pub fn generation_of(id: u32) -> usize {
    usize::from(id & !INBOUND >= GENERATIONS[1])
}

/// Compiles the policy for `members` with policy ids starting at `base`.
pub fn compile(
    policy: &ZonePolicy,
    members: &[Member],
    base: u32,
) -> Result<Compiled, CompileError> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let flows: Vec<(u32, &brainbox_profile::zones::Flow, Vec<PortRule>)> = policy
        .flows
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let protos = proto_bit(f.proto);
            let rules = if f.ports.is_empty() {
                vec![PortRule {
                    lo: 0,
                    hi: 0,
                    protos,
                }]
            } else {
                f.ports
                    .iter()
                    .filter_map(|p| p.range().ok())
                    .map(|(lo, hi)| PortRule { lo, hi, protos })
                    .collect()
            };
            (i as u32 + 1, f, rules)
        })
        .collect();
    // Addresses of each zone's reachable containers (agent containers share their sidecar's).
    let mut zone_addrs: BTreeMap<Zone, Vec<(&str, IpAddr)>> = BTreeMap::new();
    for m in &sorted {
        if m.role != Role::Agent {
            for a in &m.addrs {
                zone_addrs.entry(m.zone).or_default().push((&m.id, *a));
            }
        }
    }
    let proxy = [PortRule {
        lo: policy.in_pod.proxy_port,
        hi: policy.in_pod.proxy_port,
        protos: Proto::TCP,
    }];
    let mut out = Compiled::default();
    let mut digest_input: Vec<String> = Vec::new();
    for (idx, m) in sorted.iter().enumerate() {
        let id = base + idx as u32;
        out.cgroups.insert(m.cgroup_id, id);
        out.policies.insert(
            id,
            PolicyInfo {
                container_id: m.id.clone(),
                zone: m.zone,
                role: m.role,
            },
        );
        let mut egress = Half::new();
        let mut ingress = Half::new();
        if m.role == Role::Agent {
            add(
                &mut egress,
                host(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                &proxy,
                0,
            );
            // A process of the agent container listening on the proxy port itself (before the
            // sidecar binds it) can only ever be reached by its own container: nobody else's
            // policy allows the pod's loopback. Accepting that keeps "talk to yourself" working
            // without opening anything.
            add(
                &mut ingress,
                (v4(Ipv4Addr::new(127, 0, 0, 0)), 96 + 8),
                &proxy,
                0,
            );
        } else {
            if m.role == Role::Sidecar {
                // The agent container's connections to the proxy arrive from the pod's loopback.
                add(
                    &mut ingress,
                    (v4(Ipv4Addr::new(127, 0, 0, 0)), 96 + 8),
                    &proxy,
                    0,
                );
            }
            for (fi, f, rules) in &flows {
                if f.from == m.zone {
                    if let Some(to) = f.to {
                        for (cid, a) in zone_addrs.get(&to).map(Vec::as_slice).unwrap_or(&[]) {
                            if *cid != m.id {
                                add(&mut egress, host(*a), rules, *fi);
                            }
                        }
                    }
                    for c in &f.to_cidrs {
                        let c: Cidr = c.parse().map_err(|reason| CompileError::Cidr {
                            flow: f.name.clone(),
                            reason,
                        })?;
                        add(&mut egress, prefix_of(&c), rules, *fi);
                    }
                }
                if f.to == Some(m.zone) {
                    for (cid, a) in zone_addrs.get(&f.from).map(Vec::as_slice).unwrap_or(&[]) {
                        if *cid != m.id {
                            add(&mut ingress, host(*a), rules, *fi);
                        }
                    }
                }
            }
        }
        for (dir, half, policy_id) in [("out", egress, id), ("in", ingress, id | INBOUND)] {
            // Longest-prefix match returns one entry, so each entry also carries the rules of
            // every shorter prefix that contains it.
            let prefixes: Vec<Prefix> = half.keys().copied().collect();
            for p in &prefixes {
                let (mut rules, flow) = half[p].clone();
                for q in &prefixes {
                    if q != p && contains(q, p) {
                        rules.extend(half[q].0.iter().copied());
                    }
                }
                let rules = merge(rules);
                if rules.len() > MAX_RULES {
                    return Err(CompileError::TooManyRules {
                        container: m.name.clone(),
                        prefix: show_prefix(p),
                        count: rules.len(),
                        max: MAX_RULES,
                    });
                }
                let mut value = PolicyValue {
                    count: rules.len() as u32,
                    flow,
                    ..Default::default()
                };
                for (slot, r) in value.rules.iter_mut().zip(&rules) {
                    *slot = *r;
                }
                digest_input.push(format!(
                    "{} {} {} {:?}",
                    m.id,
                    dir,
                    show_prefix(p),
                    rules
                        .iter()
                        .map(|r| (r.lo, r.hi, r.protos))
                        .collect::<Vec<_>>()
                ));
                out.entries.insert(
                    Entry {
                        prefix_len: 32 + p.1,
                        key: PolicyAddr {
                            policy_be: policy_id.to_be_bytes(),
                            addr: p.0,
                        },
                    },
                    value,
                );
            }
        }
        digest_input.push(format!("{} {:?} {}", m.id, m.zone, m.role.name()));
    }
    digest_input.sort();
    out.digest = fnv64(digest_input.join("\n").as_bytes());
    Ok(out)
}

/// Merges rules with the same protocols whose port ranges touch or overlap.
fn merge(rules: BTreeSet<PortRule>) -> Vec<PortRule> {
    let mut by_proto: BTreeMap<u32, Vec<(u16, u16)>> = BTreeMap::new();
    for r in rules {
        by_proto.entry(r.protos).or_default().push((r.lo, r.hi));
    }
    let mut out = Vec::new();
    for (protos, mut ranges) in by_proto {
        ranges.sort();
        let mut cur: Option<(u16, u16)> = None;
        for (lo, hi) in ranges {
            cur = match cur {
                Some((a, b)) if lo as u32 <= b as u32 + 1 => Some((a, b.max(hi))),
                Some((a, b)) => {
                    out.push(PortRule {
                        lo: a,
                        hi: b,
                        protos,
                    });
                    Some((lo, hi))
                }
                None => Some((lo, hi)),
            };
        }
        if let Some((lo, hi)) = cur {
            out.push(PortRule { lo, hi, protos });
        }
    }
    out
}

/// `a.b.c.d/n` or `v6/n`.
pub fn show_prefix(p: &Prefix) -> String {
    let a = std::net::Ipv6Addr::from(p.0);
    match a.to_ipv4_mapped() {
        Some(v4) if p.1 >= 96 => format!("{v4}/{}", p.1 - 96),
        _ => format!("{a}/{}", p.1),
    }
}

/// Shows a 16-byte (possibly IPv4-mapped) address as people write it.
pub fn show_addr(a: [u8; 16]) -> String {
    let a = std::net::Ipv6Addr::from(a);
    match a.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => a.to_string(),
    }
}

/// FNV-1a 64, hex: a stable digest (std's hashers are not stable across releases).
fn fnv64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy() -> ZonePolicy {
        ZonePolicy::from_yaml(
            "in_pod: {proxy_port: 15001}\nflows:\n\
             - {name: web, from: untrusted, to_cidrs: [198.18.0.0/15], ports: [80, 443], proto: tcp}\n\
             - {name: dns, from: untrusted, to_cidrs: [198.18.0.53/32], ports: [53], proto: udp}\n\
             - {name: orch, from: untrusted, to: internal, ports: [8080], proto: tcp}\n",
            Path::new("t"),
        )
        .unwrap()
    }

    fn member(id: &str, cg: u64, zone: Zone, role: Role, addr: Option<&str>) -> Member {
        Member {
            id: id.into(),
            name: id.into(),
            cgroup_id: cg,
            zone,
            role,
            addrs: addr.map(|a| vec![a.parse().unwrap()]).unwrap_or_default(),
        }
    }

    fn lookup(c: &Compiled, policy: u32, addr: IpAddr) -> Option<&PolicyValue> {
        // The longest matching prefix, as the kernel's trie does.
        let a = addr16(addr);
        c.entries
            .iter()
            .filter(|(e, _)| {
                e.key.policy_be == policy.to_be_bytes()
                    && contains(&(e.key.addr, e.prefix_len - 32), &(a, 128))
            })
            .max_by_key(|(e, _)| e.prefix_len)
            .map(|(_, v)| v)
    }

    fn lab() -> Vec<Member> {
        vec![
            member("a-agent", 1, Zone::Untrusted, Role::Agent, None),
            member(
                "a-side",
                2,
                Zone::Untrusted,
                Role::Sidecar,
                Some("172.17.0.2"),
            ),
            member(
                "b-side",
                3,
                Zone::Untrusted,
                Role::Sidecar,
                Some("172.17.0.3"),
            ),
            member(
                "orch",
                4,
                Zone::Internal,
                Role::Standalone,
                Some("172.17.0.4"),
            ),
        ]
    }

    #[test]
    fn agent_reaches_only_the_proxy_port_on_loopback() {
        let c = compile(&policy(), &lab(), 1).unwrap();
        let id = c.cgroups[&1];
        let lo = lookup(&c, id, "127.0.0.1".parse().unwrap()).unwrap();
        assert!(lo.allows(Proto::TCP, 15001));
        assert!(!lo.allows(Proto::TCP, 15002));
        assert!(!lo.allows(Proto::UDP, 15001));
        for a in ["198.18.0.1", "172.17.0.4", "::1", "127.0.0.2", "0.0.0.0"] {
            assert!(lookup(&c, id, a.parse().unwrap()).is_none(), "{a}");
        }
        // Nothing inbound but its own loopback on the proxy port.
        let inb = lookup(&c, id | INBOUND, "127.0.0.1".parse().unwrap()).unwrap();
        assert!(inb.allows(Proto::TCP, 15001) && !inb.allows(Proto::TCP, 22));
        for a in ["172.17.0.2", "172.17.0.4", "::1"] {
            assert!(
                lookup(&c, id | INBOUND, a.parse().unwrap()).is_none(),
                "{a}"
            );
        }
    }

    #[test]
    fn sidecar_follows_its_zone_and_not_its_peers() {
        let c = compile(&policy(), &lab(), 1).unwrap();
        let id = c.cgroups[&2];
        let out = lookup(&c, id, "198.18.3.4".parse().unwrap()).unwrap();
        assert!(out.allows(Proto::TCP, 443) && !out.allows(Proto::TCP, 22));
        // The /32 inside the /15 carries both its own rule and the /15's.
        let dns = lookup(&c, id, "198.18.0.53".parse().unwrap()).unwrap();
        assert!(dns.allows(Proto::UDP, 53) && dns.allows(Proto::TCP, 80));
        assert!(!lookup(&c, id, "198.18.0.1".parse().unwrap())
            .unwrap()
            .allows(Proto::UDP, 53));
        assert!(lookup(&c, id, "172.17.0.4".parse().unwrap())
            .unwrap()
            .allows(Proto::TCP, 8080));
        // Another brainbox of the same zone: no entry at all.
        assert!(lookup(&c, id, "172.17.0.3".parse().unwrap()).is_none());
        // Serves the proxy port to its pod's loopback.
        assert!(lookup(&c, id | INBOUND, "127.0.0.1".parse().unwrap())
            .unwrap()
            .allows(Proto::TCP, 15001));
        // The orchestrator accepts 8080 from both sidecars.
        let o = c.cgroups[&4];
        for a in ["172.17.0.2", "172.17.0.3"] {
            assert!(lookup(&c, o | INBOUND, a.parse().unwrap())
                .unwrap()
                .allows(Proto::TCP, 8080));
        }
        assert!(lookup(&c, o, "172.17.0.2".parse().unwrap()).is_none());
    }

    #[test]
    fn digest_ignores_policy_ids_and_member_order() {
        let a = compile(&policy(), &lab(), GENERATIONS[0]).unwrap();
        let mut rev = lab();
        rev.reverse();
        let b = compile(&policy(), &rev, GENERATIONS[1]).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.cgroups, b.cgroups);
        let mut fewer = lab();
        fewer.pop();
        assert_ne!(compile(&policy(), &fewer, 1).unwrap().digest, a.digest);
        assert_eq!(generation_of(b.cgroups[&1]), 1);
        assert_eq!(generation_of(a.cgroups[&1] | INBOUND), 0);
    }

    #[test]
    fn ranges_merge_and_overflow_is_an_error() {
        let m = merge(
            [(80, 80), (81, 90), (100, 100)]
                .into_iter()
                .map(|(lo, hi)| PortRule {
                    lo,
                    hi,
                    protos: Proto::TCP,
                })
                .collect(),
        );
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].lo, m[0].hi), (80, 90));
        let ports: Vec<String> = (0..20).map(|i| (1000 + i * 2).to_string()).collect();
        let p = ZonePolicy::from_yaml(
            &format!(
                "in_pod: {{proxy_port: 1}}\nflows:\n- {{name: x, from: untrusted, to_cidrs: [10.0.0.0/8], ports: [{}], proto: tcp}}\n",
                ports.join(",")
            ),
            Path::new("t"),
        )
        .unwrap();
        let e = compile(&p, &lab(), 1).unwrap_err();
        assert!(e.to_string().contains("port rules"), "{e}");
    }

    #[test]
    fn show_prefixes() {
        assert_eq!(
            show_prefix(&(v4(Ipv4Addr::new(10, 0, 0, 0)), 104)),
            "10.0.0.0/8"
        );
        assert_eq!(show_addr(v4(Ipv4Addr::new(1, 2, 3, 4))), "1.2.3.4");
        assert_eq!(
            show_addr("::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
            "::1"
        );
    }
}

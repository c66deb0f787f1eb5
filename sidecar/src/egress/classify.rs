//! The SSRF classifier: what kind of address an IP is, and whether the proxy may dial it.
//!
//! Anything that is not plain global unicast is refused unless a rule names it (a literal IP rule)
//! or allows it (`allow_private`). IPv6 addresses that embed an IPv4 address (mapped, compatible,
//! NAT64, 6to4, Teredo) are refused outright: they are the classic way around an IPv4-only list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of an address; everything but [`AddrClass::Public`] is refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// Global unicast.
    Public,
    /// RFC 1918 private IPv4 and IPv6 unique-local (fc00::/7).
    Private,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10 carrier-grade NAT shared space.
    Cgnat,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// ::ffff:0:0/96.
    Ipv4Mapped,
    /// IPv4-compatible (::/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16), Teredo.
    Ipv4Embedded,
    /// Documentation, benchmarking, protocol assignments, reserved and anything outside 2000::/3.
    Special,
}

impl AddrClass {
    /// A stable lower-case name for reasons, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Private => "private",
            AddrClass::Loopback => "loopback",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Cgnat => "cgnat",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Ipv4Mapped => "ipv4-mapped",
            AddrClass::Ipv4Embedded => "ipv4-embedded",
            AddrClass::Special => "special",
        }
    }

    /// Whether `allow_private` may open this class: never for addresses that cannot be a single
    /// unicast peer, nor for IPv6 forms that smuggle an IPv4 address.
    pub fn openable_by_allow_private(self) -> bool {
        !matches!(
            self,
            AddrClass::Multicast
                | AddrClass::Unspecified
                | AddrClass::Broadcast
                | AddrClass::Ipv4Mapped
                | AddrClass::Ipv4Embedded
        )
    }
}

/// Classifies an address.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in4(ip: u32, net: [u8; 4], bits: u32) -> bool {
    let net = u32::from_be_bytes(net);
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    ip & mask == net & mask
}

/// Classifies an IPv4 address (IANA IPv4 special-purpose registry).
pub fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let a = u32::from(ip);
    if a == u32::MAX {
        return AddrClass::Broadcast;
    }
    const TABLE: &[([u8; 4], u32, AddrClass)] = &[
        ([0, 0, 0, 0], 8, AddrClass::Unspecified),
        ([10, 0, 0, 0], 8, AddrClass::Private),
        ([100, 64, 0, 0], 10, AddrClass::Cgnat),
        ([127, 0, 0, 0], 8, AddrClass::Loopback),
        ([169, 254, 0, 0], 16, AddrClass::LinkLocal),
        ([172, 16, 0, 0], 12, AddrClass::Private),
        ([192, 0, 0, 0], 24, AddrClass::Special),
        ([192, 0, 2, 0], 24, AddrClass::Special),
        ([192, 31, 196, 0], 24, AddrClass::Special),
        ([192, 52, 193, 0], 24, AddrClass::Special),
        ([192, 88, 99, 0], 24, AddrClass::Special),
        ([192, 168, 0, 0], 16, AddrClass::Private),
        ([192, 175, 48, 0], 24, AddrClass::Special),
        ([198, 18, 0, 0], 15, AddrClass::Special),
        ([198, 51, 100, 0], 24, AddrClass::Special),
        ([203, 0, 113, 0], 24, AddrClass::Special),
        ([224, 0, 0, 0], 4, AddrClass::Multicast),
        ([240, 0, 0, 0], 4, AddrClass::Special),
    ];
    TABLE
        .iter()
        .find(|(net, bits, _)| in4(a, *net, *bits))
        .map_or(AddrClass::Public, |(_, _, c)| *c)
}

fn in6(ip: u128, net: u128, bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    ip & mask == net & mask
}

/// Classifies an IPv6 address (IANA IPv6 special-purpose registry, global unicast is 2000::/3).
pub fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let a = u128::from(ip);
    if a == 0 {
        return AddrClass::Unspecified;
    }
    if a == 1 {
        return AddrClass::Loopback;
    }
    const TABLE: &[(u128, u32, AddrClass)] = &[
        (0xffff_0000_0000, 96, AddrClass::Ipv4Mapped),
        (0, 96, AddrClass::Ipv4Embedded),
        (
            0x0064_ff9b_0000_0000_0000_0000_0000_0000,
            96,
            AddrClass::Ipv4Embedded,
        ),
        (
            0x0064_ff9b_0001_0000_0000_0000_0000_0000,
            48,
            AddrClass::Ipv4Embedded,
        ),
        (
            0x2001_0000_0000_0000_0000_0000_0000_0000,
            32,
            AddrClass::Ipv4Embedded,
        ),
        (
            0x2002_0000_0000_0000_0000_0000_0000_0000,
            16,
            AddrClass::Ipv4Embedded,
        ),
        (
            0x0100_0000_0000_0000_0000_0000_0000_0000,
            64,
            AddrClass::Special,
        ),
        (
            0x2001_0000_0000_0000_0000_0000_0000_0000,
            23,
            AddrClass::Special,
        ),
        (
            0x2001_0db8_0000_0000_0000_0000_0000_0000,
            32,
            AddrClass::Special,
        ),
        (
            0x3fff_0000_0000_0000_0000_0000_0000_0000,
            20,
            AddrClass::Special,
        ),
        (
            0x5f00_0000_0000_0000_0000_0000_0000_0000,
            16,
            AddrClass::Special,
        ),
        (
            0xfc00_0000_0000_0000_0000_0000_0000_0000,
            7,
            AddrClass::Private,
        ),
        (
            0xfe80_0000_0000_0000_0000_0000_0000_0000,
            10,
            AddrClass::LinkLocal,
        ),
        (
            0xfec0_0000_0000_0000_0000_0000_0000_0000,
            10,
            AddrClass::Private,
        ),
        (
            0xff00_0000_0000_0000_0000_0000_0000_0000,
            8,
            AddrClass::Multicast,
        ),
    ];
    if let Some((_, _, c)) = TABLE.iter().find(|(net, bits, _)| in6(a, *net, *bits)) {
        return *c;
    }
    if in6(a, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        AddrClass::Public
    } else {
        AddrClass::Special
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn table() {
        for (ip, want) in [
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Unspecified),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("100.64.0.1", AddrClass::Cgnat),
            ("100.127.255.255", AddrClass::Cgnat),
            ("100.128.0.1", AddrClass::Public),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
            ("240.0.0.1", AddrClass::Special),
            ("198.18.0.10", AddrClass::Special),
            ("192.0.2.1", AddrClass::Special),
            ("::", AddrClass::Unspecified),
            ("::1", AddrClass::Loopback),
            ("::ffff:127.0.0.1", AddrClass::Ipv4Mapped),
            ("::ffff:8.8.8.8", AddrClass::Ipv4Mapped),
            ("::127.0.0.1", AddrClass::Ipv4Embedded),
            ("64:ff9b::a9fe:a9fe", AddrClass::Ipv4Embedded),
            ("2002:7f00:1::", AddrClass::Ipv4Embedded),
            ("2001:0:4136:e378::1", AddrClass::Ipv4Embedded),
            ("fd00:ec2::254", AddrClass::Private),
            ("fe80::1", AddrClass::LinkLocal),
            ("fec0::1", AddrClass::Private),
            ("ff02::1", AddrClass::Multicast),
            ("2001:db8::1", AddrClass::Special),
            ("2606:4700:4700::1111", AddrClass::Public),
            ("2a00:1450::1", AddrClass::Public),
            ("4000::1", AddrClass::Special),
        ] {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn allow_private_never_opens_embedded_or_group_addresses() {
        assert!(AddrClass::Private.openable_by_allow_private());
        assert!(AddrClass::Loopback.openable_by_allow_private());
        assert!(!AddrClass::Ipv4Mapped.openable_by_allow_private());
        assert!(!AddrClass::Multicast.openable_by_allow_private());
    }
}

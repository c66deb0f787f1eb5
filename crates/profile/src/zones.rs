//! The zone policy: which zone may open connections to which, on which ports. One file in
//! `profiles/` with `kind: zone-policy` (usually `profiles/zones.yaml`). Everything it does not
//! allow is denied, including traffic between two containers of the same zone.

use crate::{ProfileError, Zone};
use serde::Deserialize;
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

/// The marker line of a zone policy file.
pub const ZONE_POLICY_KIND: &str = "kind: zone-policy";

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FlowProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP / ICMPv6 (no ports).
    Icmp,
}

/// The rule inside a brainbox pod.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InPod {
    /// The sidecar's egress proxy port on the pod's loopback (127.0.0.1). The agent container
    /// may connect there and nowhere else.
    pub proxy_port: u16,
}

/// One allowed zone-to-zone (or zone-to-outside) flow.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Name, reported with denials and in logs.
    pub name: String,
    /// Zone whose containers open the connection (agent containers of pods never: they only
    /// reach their sidecar).
    pub from: Zone,
    /// Destination zone (every container of that zone); exactly one of `to` and `to_cidrs`.
    #[serde(default)]
    pub to: Option<Zone>,
    /// Destination address ranges outside the cluster (`198.18.0.0/15`, `2001:db8::/32`).
    #[serde(default)]
    pub to_cidrs: Vec<String>,
    /// Destination ports; `"8000-8100"` for a range. Must be empty for `icmp`.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Transport protocol.
    pub proto: FlowProto,
}

/// A port or an inclusive range, as written in YAML (`443` or `"8000-8100"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u16),
    /// A range, `"lo-hi"`.
    Range(String),
}

impl PortSpec {
    /// The inclusive range.
    pub fn range(&self) -> Result<(u16, u16), String> {
        match self {
            PortSpec::One(0) => Err("port 0 is not a destination".into()),
            PortSpec::One(p) => Ok((*p, *p)),
            PortSpec::Range(s) => {
                let (a, b) = s
                    .split_once('-')
                    .ok_or_else(|| format!("`{s}` is neither a port nor a `lo-hi` range"))?;
                let lo: u16 = a.trim().parse().map_err(|_| format!("`{s}`: bad port"))?;
                let hi: u16 = b.trim().parse().map_err(|_| format!("`{s}`: bad port"))?;
                if lo == 0 || lo > hi {
                    return Err(format!("`{s}`: need 1 <= lo <= hi"));
                }
                Ok((lo, hi))
            }
        }
    }
}

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = if l.is_empty() {
            max
        } else {
            l.parse().map_err(|_| format!("`{s}`: bad prefix length"))?
        };
        if len > max {
            return Err(format!("`{s}`: prefix longer than {max}"));
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(format!(
                "`{s}`: host bits set (did you mean {masked}/{len}?)"
            ));
        }
        Ok(Cidr { addr, len })
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// The whole zone policy.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZonePolicy {
    /// What, for people.
    #[serde(default)]
    pub description: String,
    /// The in-pod rule.
    pub in_pod: InPod,
    /// Allowed flows; everything else is denied.
    #[serde(default)]
    pub flows: Vec<Flow>,
}

impl ZonePolicy {
    /// Parses and validates a zone policy from YAML (with or without its `kind:` line).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ProfileError> {
        let body: String = text
            .lines()
            .filter(|l| l.trim_end() != ZONE_POLICY_KIND)
            .collect::<Vec<_>>()
            .join("\n");
        let p: ZonePolicy = crate::parse_yaml(&body, path)?;
        p.validate(path)?;
        Ok(p)
    }

    fn validate(&self, path: &Path) -> Result<(), ProfileError> {
        let bad = |field: String, reason: String| ProfileError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        if self.in_pod.proxy_port == 0 {
            return Err(bad("in_pod.proxy_port".into(), "must be 1-65535".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in self.flows.iter().enumerate() {
            let at = |k: &str| format!("flows[{i}].{k}");
            if f.name.is_empty() || !names.insert(f.name.as_str()) {
                return Err(bad(
                    at("name"),
                    format!("`{}` is empty or repeated", f.name),
                ));
            }
            match (f.to.is_some(), f.to_cidrs.is_empty()) {
                (true, false) | (false, true) => {
                    return Err(bad(
                        at("to"),
                        "give exactly one of `to` (a zone) and `to_cidrs`".into(),
                    ))
                }
                _ => {}
            }
            for c in &f.to_cidrs {
                c.parse::<Cidr>().map_err(|e| bad(at("to_cidrs"), e))?;
            }
            match f.proto {
                FlowProto::Icmp if !f.ports.is_empty() => {
                    return Err(bad(at("ports"), "icmp has no ports".into()))
                }
                FlowProto::Tcp | FlowProto::Udp if f.ports.is_empty() => {
                    return Err(bad(
                        at("ports"),
                        "list the ports (a flow to every port is not a policy)".into(),
                    ))
                }
                _ => {}
            }
            for p in &f.ports {
                p.range().map_err(|e| bad(at("ports"), e))?;
            }
        }
        Ok(())
    }

    /// Finds and loads the one `kind: zone-policy` file directly in `dir`.
    pub fn load_dir(dir: &Path) -> Result<(Self, PathBuf), ProfileError> {
        fn read(path: &Path) -> impl Fn(std::io::Error) -> ProfileError + '_ {
            move |source| ProfileError::Read {
                path: path.to_owned(),
                source,
            }
        }
        let mut found: Option<(Self, PathBuf)> = None;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(read(&path))?;
            if !text.lines().any(|l| l.trim_end() == ZONE_POLICY_KIND) {
                continue;
            }
            let p = Self::from_yaml(&text, &path)?;
            if let Some((_, first)) = &found {
                return Err(ProfileError::Duplicate {
                    name: "zone-policy".into(),
                    first: first.clone(),
                    second: path,
                });
            }
            found = Some((p, path));
        }
        found.ok_or_else(|| ProfileError::Invalid {
            path: dir.to_owned(),
            field: "kind".into(),
            reason: format!("no file with `{ZONE_POLICY_KIND}` (zones need one)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<ZonePolicy, ProfileError> {
        ZonePolicy::from_yaml(y, Path::new("z.yaml"))
    }

    #[test]
    fn the_repo_policy_loads_and_names_every_field() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
        let (p, path) = ZonePolicy::load_dir(&dir).unwrap();
        assert!(path.ends_with("zones.yaml"));
        assert!(!p.flows.is_empty());
        // An example for every field: zone and cidr destinations, a range, icmp.
        assert!(p.flows.iter().any(|f| f.to.is_some()));
        assert!(p.flows.iter().any(|f| !f.to_cidrs.is_empty()));
        assert!(p
            .flows
            .iter()
            .any(|f| f.ports.iter().any(|p| matches!(p, PortSpec::Range(_)))));
        assert!(p.flows.iter().any(|f| f.proto == FlowProto::Udp));
        let text = std::fs::read_to_string(&path).unwrap();
        for field in [
            "description:",
            "in_pod:",
            "proxy_port:",
            "name:",
            "from:",
            "to:",
        ] {
            assert!(text.contains(field), "profiles/zones.yaml lacks {field}");
        }
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let ok = "in_pod: {proxy_port: 15001}\nflows:\n- {name: a, from: untrusted, to: internal, ports: [80], proto: tcp}\n";
        parse(ok).unwrap();
        let e = parse("in_pod: {proxy_port: 15001}\nflow: []\n").unwrap_err();
        assert!(e.to_string().contains("flow"), "{e}");
        let e = parse("in_pod: {proxy_port: 0}\n").unwrap_err();
        assert!(e.to_string().contains("proxy_port"), "{e}");
        for (y, field) in [
            ("- {name: a, from: untrusted, ports: [80], proto: tcp}", "to"),
            ("- {name: a, from: untrusted, to: internal, to_cidrs: [10.0.0.0/8], ports: [80], proto: tcp}", "to"),
            ("- {name: a, from: untrusted, to: internal, proto: tcp}", "ports"),
            ("- {name: a, from: untrusted, to: internal, ports: [1], proto: icmp}", "ports"),
            ("- {name: a, from: untrusted, to: internal, ports: [\"9-2\"], proto: tcp}", "ports"),
            ("- {name: a, from: untrusted, to_cidrs: [10.0.0.1/8], ports: [1], proto: tcp}", "to_cidrs"),
            ("- {name: a, from: untrusted, to: internal, ports: [1], proto: tcp}\n- {name: a, from: internal, to: internal, ports: [1], proto: tcp}", "name"),
        ] {
            let e = parse(&format!("in_pod: {{proxy_port: 1}}\nflows:\n{y}\n")).unwrap_err();
            assert!(e.to_string().contains(field), "{y}: {e}");
        }
        assert!(parse("in_pod: {proxy_port: 1}\nflows:\n- {name: a, from: dmz, to: internal, ports: [1], proto: tcp}\n").is_err());
    }

    #[test]
    fn cidrs_parse() {
        let c: Cidr = "198.18.0.0/15".parse().unwrap();
        assert_eq!(c.len, 15);
        let c: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(c.len, 32);
        assert!("::1/129".parse::<Cidr>().is_err());
        assert!("fd00::/8".parse::<Cidr>().is_ok());
        assert!("nope/3".parse::<Cidr>().is_err());
    }
}

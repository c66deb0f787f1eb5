//! The selected egress policy, compiled for matching, and the decision it makes.

use super::classify::{classify, AddrClass};
use brainbox_profile::egress::{EgressPolicy, EgressRule, RuleMode, TunnelKind};
use std::{net::IpAddr, sync::Arc};

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Allowed by a rule.
    Allow,
    /// A `report` rule let through what it would refuse.
    Report,
    /// Refused.
    Deny,
}

impl Verdict {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Report => "report",
            Verdict::Deny => "deny",
        }
    }

    /// Whether traffic passes.
    pub fn passes(self) -> bool {
        self != Verdict::Deny
    }
}

/// A verdict with its reason and the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allow, report or deny.
    pub verdict: Verdict,
    /// Stable reason token (`allowed`, `no-rule`, `path-not-allowed`, ...).
    pub reason: &'static str,
    /// Index of the deciding rule in [`Policy::rules`].
    pub rule: Option<usize>,
}

impl Decision {
    /// A denial without a rule.
    pub fn deny(reason: &'static str) -> Self {
        Self {
            verdict: Verdict::Deny,
            reason,
            rule: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
    Ip(IpAddr),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    host: HostPattern,
    /// The rule's host as written: the `destination` label of metrics (bounded by the policy).
    pub label: Arc<str>,
    ports: Vec<u16>,
    methods: Vec<String>,
    paths: Vec<String>,
    /// Enforce or report.
    pub mode: RuleMode,
    /// May resolve to private addresses.
    pub allow_private: bool,
    /// TLS or any TCP in tunnels.
    pub tunnel: TunnelKind,
}

impl Rule {
    fn compile(r: &EgressRule) -> Self {
        let host = match r.literal_ip() {
            Some(ip) => HostPattern::Ip(ip),
            None => match r.host.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
                None => HostPattern::Exact(r.host.clone()),
            },
        };
        Self {
            host,
            label: Arc::from(r.host.as_str()),
            ports: r.ports.clone(),
            methods: r.methods.clone(),
            paths: r.paths.clone(),
            mode: r.mode,
            allow_private: r.allow_private,
            tunnel: r.tunnel,
        }
    }

    fn matches_host(&self, host: &str, ip: Option<IpAddr>) -> bool {
        match (&self.host, ip) {
            (HostPattern::Ip(want), Some(got)) => *want == got,
            (HostPattern::Exact(h), None) => h == host,
            (HostPattern::Suffix(s), None) => host.len() > s.len() && host.ends_with(s.as_str()),
            _ => false,
        }
    }

    /// Whether the rule names exactly this IP (a literal-IP rule).
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        self.host == HostPattern::Ip(ip)
    }
}

/// The policy for one SPIFFE ID.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy file's name (for audit records).
    pub name: Arc<str>,
    /// Its rules, in file order.
    pub rules: Vec<Rule>,
}

/// A request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Lower-case host (an IP's text form for literal IPs).
    pub host: &'a str,
    /// The host as a literal IP.
    pub ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
    /// `None` for CONNECT; the method and the path without query for plain HTTP.
    pub http: Option<(&'a [u8], &'a [u8])>,
}

impl Policy {
    /// Compiles a policy file.
    pub fn compile(p: &EgressPolicy) -> Self {
        Self {
            name: Arc::from(p.name.as_str()),
            rules: p.rules.iter().map(Rule::compile).collect(),
        }
    }

    /// Decides by host, port, method and path: the first rule that fully allows wins; otherwise a
    /// `report` rule for the host and port lets it through; otherwise the first failure is the
    /// reason.
    pub fn decide(&self, t: &Target<'_>) -> Decision {
        let mut failure: Option<(usize, &'static str)> = None;
        let mut report: Option<(usize, &'static str)> = None;
        for (i, r) in self.rules.iter().enumerate() {
            if !r.matches_host(t.host, t.ip) || !r.ports.contains(&t.port) {
                continue;
            }
            let why = match t.http {
                None if !r.methods.is_empty() || !r.paths.is_empty() => Some("connect-not-allowed"),
                None => None,
                Some((method, path)) => {
                    if !r.methods.is_empty() && !r.methods.iter().any(|m| m.as_bytes() == method) {
                        Some("method-not-allowed")
                    } else if !r.paths.is_empty()
                        && (!is_normal_path(path)
                            || !r.paths.iter().any(|p| path.starts_with(p.as_bytes())))
                    {
                        Some("path-not-allowed")
                    } else {
                        None
                    }
                }
            };
            match why {
                None => {
                    return Decision {
                        verdict: Verdict::Allow,
                        reason: "allowed",
                        rule: Some(i),
                    }
                }
                Some(w) => {
                    if r.mode == RuleMode::Report && report.is_none() {
                        report = Some((i, w));
                    }
                    if failure.is_none() {
                        failure = Some((i, w));
                    }
                }
            }
        }
        if let Some((i, w)) = report {
            return Decision {
                verdict: Verdict::Report,
                reason: w,
                rule: Some(i),
            };
        }
        match failure {
            Some((i, w)) => Decision {
                verdict: Verdict::Deny,
                reason: w,
                rule: Some(i),
            },
            None if t.ip.is_some() => Decision::deny("literal-ip-not-allowed"),
            None => Decision::deny("no-rule"),
        }
    }

    /// Checks a resolved (or literal) address against the deciding rule. Returns the address's
    /// class when the rule does not open it.
    pub fn check_addr(&self, rule: usize, ip: IpAddr) -> Result<(), AddrClass> {
        let Some(r) = self.rules.get(rule) else {
            return Err(classify(ip));
        };
        if r.names_ip(ip) {
            return Ok(());
        }
        match classify(ip) {
            AddrClass::Public => Ok(()),
            c if r.allow_private && c.openable_by_allow_private() => Ok(()),
            c => Err(c),
        }
    }
}

/// Paths a prefix rule can judge: no dot segments, no encoded dots, slashes or backslashes that a
/// back end might decode into a different path than the one checked.
fn is_normal_path(p: &[u8]) -> bool {
    if !p.starts_with(b"/") || p.contains(&b'\\') {
        return false;
    }
    for w in p.windows(3) {
        if w[0] == b'%' {
            let enc = [w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()];
            if matches!(&enc, b"2e" | b"2f" | b"5c" | b"00") {
                return false;
            }
        }
    }
    !p.split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
}

/// The reason token for a forbidden address class.
pub fn addr_reason(c: AddrClass) -> &'static str {
    match c {
        AddrClass::Public => "allowed",
        AddrClass::Private => "address-private",
        AddrClass::Loopback => "address-loopback",
        AddrClass::LinkLocal => "address-link-local",
        AddrClass::Cgnat => "address-cgnat",
        AddrClass::Multicast => "address-multicast",
        AddrClass::Unspecified => "address-unspecified",
        AddrClass::Broadcast => "address-broadcast",
        AddrClass::Ipv4Mapped => "address-ipv4-mapped",
        AddrClass::Ipv4Embedded => "address-ipv4-embedded",
        AddrClass::Special => "address-special",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy() -> Policy {
        let p = EgressPolicy::from_yaml(
            r#"kind: egress-policy
name: t
spiffe_ids: ["spiffe://td/*"]
rules:
  - host: api.example.com
    ports: [443]
  - host: "*.example.org"
    ports: [80, 443]
  - host: status.example.net
    ports: [80]
    methods: [GET]
    paths: ["/v1/"]
  - host: audit.example.net
    ports: [80]
    paths: ["/ok/"]
    mode: report
  - host: 198.18.0.10
    ports: [8080]
  - host: internal.example
    ports: [80]
    allow_private: true
"#,
            Path::new("t"),
        )
        .unwrap();
        Policy::compile(&p)
    }

    fn t<'a>(host: &'a str, port: u16, http: Option<(&'a [u8], &'a [u8])>) -> Target<'a> {
        Target {
            host,
            ip: host.parse().ok(),
            port,
            http,
        }
    }

    #[test]
    fn host_port_wildcard_and_literal_rules() {
        let p = policy();
        let d = |h, port| p.decide(&t(h, port, None));
        assert_eq!(d("api.example.com", 443).verdict, Verdict::Allow);
        assert_eq!(d("api.example.com", 80).reason, "no-rule");
        assert_eq!(d("evil.com", 443).reason, "no-rule");
        assert_eq!(d("a.b.example.org", 443).verdict, Verdict::Allow);
        assert_eq!(d("example.org", 443).reason, "no-rule");
        assert_eq!(d("badexample.org", 443).reason, "no-rule");
        assert_eq!(d("198.18.0.10", 8080).verdict, Verdict::Allow);
        assert_eq!(d("198.18.0.11", 8080).reason, "literal-ip-not-allowed");
        assert_eq!(d("status.example.net", 80).reason, "connect-not-allowed");
    }

    #[test]
    fn methods_paths_and_report_mode() {
        let p = policy();
        let h = |m: &'static str, path: &'static str| {
            p.decide(&t(
                "status.example.net",
                80,
                Some((m.as_bytes(), path.as_bytes())),
            ))
        };
        assert_eq!(h("GET", "/v1/x").verdict, Verdict::Allow);
        assert_eq!(h("POST", "/v1/x").reason, "method-not-allowed");
        assert_eq!(h("GET", "/v2/x").reason, "path-not-allowed");
        assert_eq!(h("GET", "/v1/../admin").reason, "path-not-allowed");
        assert_eq!(h("GET", "/v1/%2e%2e/admin").reason, "path-not-allowed");
        let r = p.decide(&t("audit.example.net", 80, Some((b"GET", b"/other"))));
        assert_eq!((r.verdict, r.reason), (Verdict::Report, "path-not-allowed"));
    }

    #[test]
    fn address_checks_follow_the_rule() {
        let p = policy();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(p.check_addr(0, ip("8.8.8.8")), Ok(()));
        assert_eq!(p.check_addr(0, ip("127.0.0.1")), Err(AddrClass::Loopback));
        assert_eq!(
            p.check_addr(0, ip("::ffff:10.0.0.1")),
            Err(AddrClass::Ipv4Mapped)
        );
        assert_eq!(p.check_addr(4, ip("198.18.0.10")), Ok(()));
        assert_eq!(p.check_addr(5, ip("10.1.1.1")), Ok(()));
        assert_eq!(
            p.check_addr(5, ip("::ffff:10.1.1.1")),
            Err(AddrClass::Ipv4Mapped)
        );
    }
}

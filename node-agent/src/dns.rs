//! `fd.sip.name` and `fd.cip.name`: which of the names the rules mention resolve to an address.
//!
//! Falco does not snoop DNS for these fields. Its DNS manager resolves the names that filters
//! compare them with (`fd.sip.name = "kubernetes.default.svc.cluster.local"` in the upstream
//! *Contact K8S API Server From Container*), refreshes them in the background, and matches an
//! address against the resolved sets. This does the same: the names come from the compiled
//! rules, a thread resolves them with the system resolver (so `/etc/hosts`, cluster DNS and
//! search domains apply as for any process on the node) every `refresh`, and the field's value
//! is the list of those names whose last resolution contains the address. A name that stops
//! resolving keeps its last addresses until a resolution succeeds again or `forget_after`
//! passes, so a flapping resolver does not blind a rule.
//!
//! Nothing is resolved for events: the hot path is one read-locked map lookup.

use std::{
    collections::HashMap,
    net::{IpAddr, ToSocketAddrs},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

/// Most names resolved: each refresh resolves them one by one, and a slow resolver makes a
/// round take up to a few seconds per name.
pub const MAX_NAMES: usize = 256;

/// Resolved names, shared between the refresh thread and the rule engine.
pub struct DnsNames {
    names: Vec<Arc<str>>,
    by_addr: RwLock<HashMap<IpAddr, Vec<Arc<str>>>>,
}

/// One name's last good resolution.
struct Known {
    addrs: Vec<IpAddr>,
    at: Instant,
}

impl DnsNames {
    /// Names to follow (deduplicated, at most [`MAX_NAMES`]; none means nothing to do).
    pub fn new(names: impl IntoIterator<Item = String>) -> Arc<Self> {
        let mut v: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
        v.sort();
        v.dedup();
        if v.len() > MAX_NAMES {
            tracing::warn!(
                names = v.len(),
                kept = MAX_NAMES,
                "rules compare fd.sip.name/fd.cip.name with more host names than are resolved; \
                 the rest never match"
            );
            v.truncate(MAX_NAMES);
        }
        Arc::new(Self {
            names: v,
            by_addr: RwLock::new(HashMap::new()),
        })
    }

    /// The names followed.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The followed names that resolve to `ip` (IPv4-mapped IPv6 counts as IPv4).
    pub fn names_of(&self, ip: IpAddr) -> Option<Vec<Arc<str>>> {
        let ip = canonical(ip);
        let map = self.by_addr.read().ok()?;
        map.get(&ip).filter(|v| !v.is_empty()).cloned()
    }

    /// Resolves every name once with `resolve`, keeping what `known` had for names that fail
    /// (until `forget_after`), and publishes the result. Returns how many names resolved now.
    fn refresh_with(
        &self,
        known: &mut HashMap<Arc<str>, Known>,
        resolve: &dyn Fn(&str) -> std::io::Result<Vec<IpAddr>>,
        forget_after: Duration,
    ) -> usize {
        let now = Instant::now();
        let mut ok = 0;
        for n in &self.names {
            match resolve(n) {
                Ok(addrs) => {
                    ok += 1;
                    known.insert(n.clone(), Known { addrs, at: now });
                }
                Err(e) => {
                    tracing::debug!(name = %n, error = %e, "rule name does not resolve");
                }
            }
        }
        known.retain(|_, k| now.duration_since(k.at) <= forget_after);
        let mut map: HashMap<IpAddr, Vec<Arc<str>>> = HashMap::new();
        for (n, k) in known.iter() {
            for a in &k.addrs {
                let e = map.entry(canonical(*a)).or_default();
                if !e.contains(n) {
                    e.push(n.clone());
                }
            }
        }
        for v in map.values_mut() {
            v.sort();
        }
        if let Ok(mut m) = self.by_addr.write() {
            *m = map;
        }
        ok
    }

    /// Resolves on a background thread, at once and then every `refresh`, for the life of the
    /// process (a resolver that hangs never delays the agent's start). Nothing starts when no
    /// rule names a host.
    pub fn start(self: &Arc<Self>, refresh: Duration, forget_after: Duration) {
        if self.names.is_empty() {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("rule-dns".into())
            .spawn(move || {
                let mut known = HashMap::new();
                let ok = me.refresh_with(&mut known, &system_resolve, forget_after);
                tracing::info!(
                    names = me.names.len(),
                    resolved = ok,
                    "resolved the host names rules compare fd.sip.name/fd.cip.name with"
                );
                loop {
                    std::thread::sleep(refresh);
                    me.refresh_with(&mut known, &system_resolve, forget_after);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rule DNS thread; fd.sip.name/fd.cip.name stay empty");
        }
    }
}

fn system_resolve(name: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok((name, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn names_map_to_addresses_and_survive_a_failed_refresh() {
        let d = DnsNames::new([
            "api.local".to_string(),
            "db.local".into(),
            "api.local".into(),
        ]);
        assert_eq!(d.names().len(), 2);
        let answers = RefCell::new(HashMap::from([
            ("api.local", Ok(vec!["10.0.0.1".parse().unwrap()])),
            (
                "db.local",
                Ok(vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()]),
            ),
        ]));
        let resolve = |n: &str| -> std::io::Result<Vec<IpAddr>> {
            match answers.borrow().get(n) {
                Some(Ok(v)) => Ok(v.clone()),
                _ => Err(std::io::Error::other("NXDOMAIN")),
            }
        };
        let mut known = HashMap::new();
        assert_eq!(
            d.refresh_with(&mut known, &resolve, Duration::from_secs(60)),
            2
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let names: Vec<String> = d
            .names_of(ip)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, ["api.local", "db.local"]);
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(d.names_of("::ffff:10.0.0.1".parse().unwrap()).is_some());
        assert!(d.names_of("10.0.0.2".parse().unwrap()).is_none());
        // The resolver fails for api.local: its last answer stands...
        answers.borrow_mut().insert("api.local", Err(()));
        assert_eq!(
            d.refresh_with(&mut known, &resolve, Duration::from_secs(60)),
            1
        );
        assert_eq!(d.names_of(ip).unwrap().len(), 2);
        // ...until it is too old.
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(d.refresh_with(&mut known, &resolve, Duration::ZERO), 1);
        let left: Vec<String> = d
            .names_of(ip)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(left, ["db.local"]);
        assert!(d.names_of("::1".parse().unwrap()).is_some());
    }

    #[test]
    fn localhost_resolves_through_the_system_resolver() {
        let d = DnsNames::new(["localhost".to_string()]);
        let mut known = HashMap::new();
        assert_eq!(
            d.refresh_with(&mut known, &system_resolve, Duration::from_secs(60)),
            1
        );
        assert!(d.names_of("127.0.0.1".parse().unwrap()).is_some());
    }
}

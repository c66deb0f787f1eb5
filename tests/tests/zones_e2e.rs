//! End to end, with the real Docker daemon and real cgroup-BPF: the zone lab (two brainbox pods,
//! an internal and a control service, a simulated outside host) shows that allowed flows pass,
//! everything else fails with EPERM (or a drop), and each denial is reported.

use brainbox_lab::{
    require,
    zones::{Outside, ZoneLab, LAB_LOCK, OUTSIDE, PROXY_PORT, RESOLVER},
};

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn lab_allowed_flows_pass_and_everything_else_is_denied_and_reported() {
    require::lab();
    let _g = lock();
    let outside = Outside::start().unwrap();
    let mut lab = ZoneLab::start().unwrap();
    let (a_side, a_agent) = lab.pod("a").unwrap();
    let (b_side, _b_agent) = lab.pod("b").unwrap();
    let orch = lab.service("orch", "orchestrator", 8080, "orch").unwrap();
    let ident = lab.service("identity", "control-plane", 8443, "identity").unwrap();

    let proxy = PROXY_PORT.to_string();
    let allowed: Vec<(&str, &brainbox_lab::zones::LabContainer, Vec<&str>)> = vec![
        ("agent -> own sidecar proxy", &a_agent, vec!["tcp", "127.0.0.1", &proxy, "m-allow-1"]),
        ("sidecar -> outside:80", &a_side, vec!["tcp", OUTSIDE, "80", "m-allow-2"]),
        ("sidecar -> outside:443", &a_side, vec!["tcp", OUTSIDE, "443", "m-allow-3"]),
        ("sidecar -> orchestrator:8080", &a_side, vec!["tcp", &orch.ip, "8080", "m-allow-4"]),
        ("sidecar -> identity:8443", &a_side, vec!["tcp", &ident.ip, "8443", "m-allow-5"]),
        ("orchestrator -> identity:8443", &orch, vec!["tcp", &ident.ip, "8443", "m-allow-6"]),
        ("orchestrator -> sidecar admin:9090", &orch, vec!["tcp", &b_side.ip, "9090", "m-allow-7"]),
    ];
    let mut failures = Vec::new();
    for (what, c, args) in &allowed {
        let (ok, out) = c.probe(args);
        if !ok {
            failures.push(format!("allowed flow failed: {what}: {out}"));
        }
    }
    assert!(outside.saw("m-allow-2"), "{:?}", outside.received());

    let denied: Vec<(&str, &brainbox_lab::zones::LabContainer, Vec<&str>)> = vec![
        ("agent -> outside:80", &a_agent, vec!["tcp", OUTSIDE, "80", "m-deny-1"]),
        ("sidecar -> outside:22", &a_side, vec!["tcp", OUTSIDE, "22", "m-deny-2"]),
        ("sidecar -> other brainbox's sidecar", &a_side, vec!["tcp", &b_side.ip, &proxy, "m-deny-3"]),
        ("orchestrator -> outside:80", &orch, vec!["tcp", OUTSIDE, "80", "m-deny-4"]),
        ("identity -> orchestrator:8080", &ident, vec!["tcp", &orch.ip, "8080", "m-deny-5"]),
        ("identity -> outside:443", &ident, vec!["tcp", OUTSIDE, "443", "m-deny-6"]),
        ("orchestrator -> sidecar proxy port", &orch, vec!["tcp", &a_side.ip, &proxy, "m-deny-7"]),
        ("sidecar -> identity:8080 (wrong port)", &a_side, vec!["tcp", &ident.ip, "8080", "m-deny-8"]),
    ];
    for (what, c, args) in &denied {
        let (ok, out) = c.probe(args);
        if ok {
            failures.push(format!("denied flow worked: {what}: {out}"));
        } else if !(out.contains("EPERM") || out.contains("ECONNRESET") || out.contains("ETIMEDOUT")) {
            failures.push(format!("denied flow failed for another reason: {what}: {out}"));
        }
    }
    for m in ["m-deny-1", "m-deny-2", "m-deny-4", "m-deny-6"] {
        if outside.saw(m) {
            failures.push(format!("the outside host received {m}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every denial is reported with the container, destination and rule.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = lab.denials();
        let agent_denial = d.iter().find(|e| {
            e["container"]["id"] == a_agent.c.id.as_str()
                && e["destination"]["addr"] == OUTSIDE
                && e["destination"]["port"] == 80
        });
        let peer_denial = d.iter().find(|e| {
            e["container"]["id"] == a_side.c.id.as_str()
                && e["destination"]["addr"] == b_side.ip.as_str()
        });
        if let (Some(a), Some(p)) = (agent_denial, peer_denial) {
            assert_eq!(a["hook"], "connect4", "{a}");
            assert_eq!(a["proto"], "tcp", "{a}");
            assert_eq!(a["policy"]["role"], "agent", "{a}");
            assert!(a["rule"].as_str().unwrap().starts_with("in-pod"), "{a}");
            assert_eq!(a["process"]["comm"], "zones-probe", "{a}");
            assert_eq!(p["reason"], "no-flow", "{p}");
            assert_eq!(p["policy"]["zone"], "untrusted", "{p}");
            assert!(p["rule"].as_str().unwrap().starts_with("default-deny"), "{p}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "denials not reported; got: {d:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// One bypass attempt from inside an untrusted agent container.
struct Attempt {
    name: &'static str,
    /// Probe arguments, or a shell command when the first element is "sh".
    cmd: Vec<String>,
    /// A string the failure must contain (the kernel's answer), if any.
    expect: Option<&'static str>,
}

fn attempt(name: &'static str, cmd: &[&str], expect: Option<&'static str>) -> Attempt {
    Attempt {
        name,
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        expect,
    }
}

/// The bypass table of docs/zones.md. Each row fails the test if the bypass works (the action
/// succeeds, or the outside host / bridge listener receives anything), or if it fails for a
/// different reason than the one documented.
#[test]
fn bypass_attempts_from_an_untrusted_agent_container_all_fail() {
    require::lab();
    let _g = lock();
    let outside = Outside::start().unwrap();
    let mut lab = ZoneLab::start().unwrap();
    let (a_side, a_agent) = lab.pod("a").unwrap();
    let (b_side, _b_agent) = lab.pod("b").unwrap();
    let orch = lab.service("orch", "orchestrator", 8080, "orch").unwrap();
    // A listener on the host's bridge gateway address.
    let gw = brainbox_lab::docker::docker(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &a_side.c.id])
        .ok()
        .filter(|g| g.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or_else(|| "172.17.0.1".into());
    let host_listener = std::net::TcpListener::bind((gw.as_str(), 0)).unwrap();
    host_listener.set_nonblocking(true).unwrap();
    let host_port = host_listener.local_addr().unwrap().port().to_string();
    let proxy = PROXY_PORT.to_string();
    let mapped_out = format!("::ffff:{OUTSIDE}");
    let mapped_b = format!("::ffff:{}", b_side.ip);
    let r = RESOLVER;
    let rows = vec![
        attempt("direct TCP to the outside host", &["tcp", OUTSIDE, "80", "bp-01"], Some("EPERM")),
        attempt("direct TCP to the outside host, port 443", &["tcp", OUTSIDE, "443", "bp-02"], Some("EPERM")),
        attempt("UDP sendto without connect", &["udp-sendto", r, "53", "bp-03"], Some("EPERM")),
        attempt("UDP connect then send", &["udp-connect", r, "53", "bp-04"], Some("EPERM")),
        attempt("sendmmsg on an unconnected UDP socket", &["sendmmsg", OUTSIDE, "5353", "bp-05"], Some("EPERM")),
        attempt("DNS query to an outside resolver (nslookup)", &["sh", &format!("nslookup -timeout=2 example.com {r}")], None),
        attempt("HTTP without the proxy (wget, no HTTP_PROXY)", &["sh", &format!("wget -T 3 -O- http://{OUTSIDE}/ 2>&1")], None),
        attempt("IPv4-mapped IPv6 to the outside host", &["tcp", &mapped_out, "80", "bp-08"], Some("EPERM")),
        attempt("IPv4-mapped IPv6 UDP sendto", &["udp-sendto", &format!("::ffff:{r}"), "53", "bp-09"], Some("EPERM")),
        attempt("IPv6 loopback to the proxy port ([::1])", &["tcp", "::1", &proxy, "bp-10"], Some("EPERM")),
        attempt("TCP Fast Open sendto without connect", &["tfo", OUTSIDE, "80", "bp-11"], Some("EPERM")),
        attempt("ICMP echo through an unprivileged ping socket", &["icmp-dgram", OUTSIDE, "bp-12"], Some("EPERM")),
        attempt("busybox ping", &["sh", &format!("ping -c 1 -W 2 {OUTSIDE}")], None),
        attempt("raw ICMP socket", &["raw", "icmp"], Some("EPERM")),
        attempt("raw IP socket", &["raw", "ip"], Some("EPERM")),
        attempt("packet socket", &["packet"], Some("EPERM")),
        attempt("sidecar's other port on loopback (9090)", &["tcp", "127.0.0.1", "9090", "bp-17"], Some("EPERM")),
        attempt("sidecar's other port on loopback (9999)", &["tcp", "127.0.0.1", "9999", "bp-18"], Some("EPERM")),
        attempt("UDP to the proxy port", &["udp-sendto", "127.0.0.1", &proxy, "bp-19"], Some("EPERM")),
        attempt("proxy port via the pod's own address", &["tcp", &a_side.ip, &proxy, "bp-20"], Some("EPERM")),
        attempt("proxy port via 0.0.0.0", &["tcp", "0.0.0.0", &proxy, "bp-21"], Some("EPERM")),
        attempt("proxy port via another loopback address (127.0.0.2)", &["tcp", "127.0.0.2", &proxy, "bp-22"], Some("EPERM")),
        attempt("another brainbox's sidecar", &["tcp", &b_side.ip, &proxy, "bp-23"], Some("EPERM")),
        attempt("another brainbox via IPv4-mapped IPv6", &["tcp", &mapped_b, &proxy, "bp-24"], Some("EPERM")),
        attempt("the orchestrator directly (only sidecars may)", &["tcp", &orch.ip, "8080", "bp-25"], Some("EPERM")),
        attempt("the host's bridge gateway", &["tcp", &gw, &host_port, "bp-26"], Some("EPERM")),
        attempt("SO_BINDTODEVICE eth0, then connect out", &["bindtodevice", "eth0", OUTSIDE, "80", "bp-27"], Some("EPERM")),
        attempt("unshare a user+net namespace, then connect out", &["unshare-net", OUTSIDE, "80", "bp-28"], Some("EPERM")),
        attempt("setns into another network namespace", &["setns", "/proc/self/ns/net"], Some("EPERM")),
        attempt("move itself to another cgroup", &["cgroup-move"], None),
    ];
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for row in &rows {
        let (ok, out) = if row.cmd[0] == "sh" {
            a_agent.sh(&row.cmd[1])
        } else {
            let args: Vec<&str> = row.cmd.iter().map(String::as_str).collect();
            a_agent.probe(&args)
        };
        table.push(format!("{:<55} {}", row.name, out));
        if ok {
            failures.push(format!("BYPASS WORKED: {}: {out}", row.name));
        } else if let Some(e) = row.expect {
            if !out.contains(e) {
                failures.push(format!("{}: failed, but not with {e}: {out}", row.name));
            }
        }
    }
    // After the cgroup move attempt the agent is still confined.
    let (ok, out) = a_agent.probe(&["tcp", OUTSIDE, "80", "bp-31"]);
    if ok {
        failures.push(format!("BYPASS WORKED after the cgroup/namespace attempts: {out}"));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let received = outside.received();
    if !received.is_empty() {
        failures.push(format!("the outside host received traffic: {received:?}"));
    }
    if host_listener.accept().is_ok() {
        failures.push("the host's bridge listener accepted a connection".into());
    }
    // Controls: the destinations are reachable for containers the policy does not confine, so
    // the failures above are the policy's doing.
    let plain = brainbox_lab::pod::unwatched(&brainbox_lab::unique("zones-unwatched")).unwrap();
    let o = plain
        .exec(&["nc", "-w", "3", OUTSIDE, "22"])
        .unwrap();
    if !String::from_utf8_lossy(&o.stdout).contains("outside:22") {
        failures.push(format!(
            "control: an unwatched container could not reach the outside host: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let (ok, out) = a_agent.probe(&["tcp", "127.0.0.1", &proxy, "bp-allowed"]);
    if !ok {
        failures.push(format!("control: the agent cannot reach its proxy: {out}"));
    }
    println!("bypass table:\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{}\n\ntable:\n{}", failures.join("\n"), table.join("\n"));
    // Denials were reported (rate-limited per container, so not necessarily every one).
    let d = lab.denials();
    assert!(
        d.iter().any(|e| e["container"]["id"] == a_agent.c.id.as_str() && e["hook"] == "sendmsg4"),
        "no sendmsg4 denial reported: {d:#?}"
    );
    assert!(
        d.iter().any(|e| e["container"]["id"] == a_agent.c.id.as_str() && e["hook"] == "egress" && e["proto"] == "icmp"),
        "no icmp egress denial reported: {d:#?}"
    );
}

//! End to end, with the real Docker daemon and real cgroup-BPF: the zone lab (two brainbox pods,
//! an internal and a control service, a simulated outside host) shows that allowed flows pass,
//! everything else fails with EPERM (or a drop), and each denial is reported.

use brainbox_lab::{
    require,
    zones::{ZoneLab, Outside, LAB_LOCK, OUTSIDE, PROXY_PORT},
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

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
    let ident = lab
        .service("identity", "control-plane", 8443, "identity")
        .unwrap();

    println!(
        "container start -> zone programs attached: {:?}",
        lab.attach_delays
    );
    let proxy = PROXY_PORT.to_string();
    let allowed: Vec<(&str, &brainbox_lab::zones::LabContainer, Vec<&str>)> = vec![
        (
            "agent -> own sidecar proxy",
            &a_agent,
            vec!["tcp", "127.0.0.1", &proxy, "m-allow-1"],
        ),
        (
            "sidecar -> outside:80",
            &a_side,
            vec!["tcp", OUTSIDE, "80", "m-allow-2"],
        ),
        (
            "sidecar -> outside:443",
            &a_side,
            vec!["tcp", OUTSIDE, "443", "m-allow-3"],
        ),
        (
            "sidecar -> orchestrator:8080",
            &a_side,
            vec!["tcp", &orch.ip, "8080", "m-allow-4"],
        ),
        (
            "sidecar -> identity:8443",
            &a_side,
            vec!["tcp", &ident.ip, "8443", "m-allow-5"],
        ),
        (
            "orchestrator -> identity:8443",
            &orch,
            vec!["tcp", &ident.ip, "8443", "m-allow-6"],
        ),
        (
            "orchestrator -> sidecar admin:9090",
            &orch,
            vec!["tcp", &b_side.ip, "9090", "m-allow-7"],
        ),
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
        (
            "agent -> outside:80",
            &a_agent,
            vec!["tcp", OUTSIDE, "80", "m-deny-1"],
        ),
        (
            "sidecar -> outside:22",
            &a_side,
            vec!["tcp", OUTSIDE, "22", "m-deny-2"],
        ),
        (
            "sidecar -> other brainbox's sidecar",
            &a_side,
            vec!["tcp", &b_side.ip, &proxy, "m-deny-3"],
        ),
        (
            "orchestrator -> outside:80",
            &orch,
            vec!["tcp", OUTSIDE, "80", "m-deny-4"],
        ),
        (
            "identity -> orchestrator:8080",
            &ident,
            vec!["tcp", &orch.ip, "8080", "m-deny-5"],
        ),
        (
            "identity -> outside:443",
            &ident,
            vec!["tcp", OUTSIDE, "443", "m-deny-6"],
        ),
        (
            "orchestrator -> sidecar proxy port",
            &orch,
            vec!["tcp", &a_side.ip, &proxy, "m-deny-7"],
        ),
        (
            "sidecar -> identity:8080 (wrong port)",
            &a_side,
            vec!["tcp", &ident.ip, "8080", "m-deny-8"],
        ),
    ];
    for (what, c, args) in &denied {
        let (ok, out) = c.probe(args);
        if ok {
            failures.push(format!("denied flow worked: {what}: {out}"));
        } else if !(out.contains("EPERM")
            || out.contains("ECONNRESET")
            || out.contains("ETIMEDOUT"))
        {
            failures.push(format!(
                "denied flow failed for another reason: {what}: {out}"
            ));
        }
    }
    for m in ["m-deny-1", "m-deny-2", "m-deny-4", "m-deny-6"] {
        if outside.saw(m) {
            failures.push(format!("the outside host received {m}"));
        }
    }
    // Inbound: zone members accept only their flows' peers. A container outside every zone
    // (unwatched) and the host are dropped by the server's ingress hook, so they see a timeout.
    let plain = brainbox_lab::pod::unwatched(&brainbox_lab::unique("zones-in")).unwrap();
    let o = plain.exec(&["nc", "-w", "2", &orch.ip, "8080"]).unwrap();
    if String::from_utf8_lossy(&o.stdout).contains("orch") {
        failures.push("an unwatched container reached the orchestrator".into());
    }
    if let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &format!("{}:8080", orch.ip).parse().unwrap(),
        std::time::Duration::from_secs(2),
    ) {
        use std::io::Read;
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(n) if n > 0) {
            failures.push("the host reached the orchestrator".into());
        }
    }
    // An agent container may talk to itself on the proxy port (nobody else can reach it there).
    let (c_side, c_agent) = lab.pod_with("c", "nc -ll -p 9090 -e echo admin").unwrap();
    brainbox_lab::docker::docker(&[
        "exec",
        "-d",
        &c_agent.c.id,
        "nc",
        "-ll",
        "-p",
        &proxy,
        "-e",
        "echo",
        "self",
    ])
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ok, out) = c_agent.probe(&["tcp", "127.0.0.1", &proxy, "m-self"]);
    if !ok || !out.contains("self") {
        failures.push(format!(
            "agent could not talk to itself on the proxy port: {out}"
        ));
    }
    let (ok, out) = c_side.probe(&["tcp", "127.0.0.1", &proxy, "m-side-to-agent"]);
    if ok || !out.contains("EPERM") {
        failures.push(format!(
            "sidecar -> agent container's listener must be denied: {out}"
        ));
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
        let ingress_denial = d.iter().find(|e| {
            e["container"]["id"] == orch.c.id.as_str()
                && e["hook"] == "ingress"
                && e["local_port"] == 8080
        });
        if let (Some(a), Some(p), Some(_)) = (agent_denial, peer_denial, ingress_denial) {
            assert_eq!(a["hook"], "connect4", "{a}");
            assert_eq!(a["proto"], "tcp", "{a}");
            assert_eq!(a["policy"]["role"], "agent", "{a}");
            assert!(a["rule"].as_str().unwrap().starts_with("in-pod"), "{a}");
            assert_eq!(a["process"]["comm"], "zones-probe", "{a}");
            assert_eq!(p["reason"], "no-flow", "{p}");
            assert_eq!(p["policy"]["zone"], "untrusted", "{p}");
            assert!(
                p["rule"].as_str().unwrap().starts_with("default-deny"),
                "{p}"
            );
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
    let gw = brainbox_lab::docker::docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Gateway}}",
        &a_side.c.id,
    ])
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
        attempt(
            "direct TCP to the outside host",
            &["tcp", OUTSIDE, "80", "bp-01"],
            Some("EPERM"),
        ),
        attempt(
            "direct TCP to the outside host, port 443",
            &["tcp", OUTSIDE, "443", "bp-02"],
            Some("EPERM"),
        ),
        attempt(
            "UDP sendto without connect",
            &["udp-sendto", r, "53", "bp-03"],
            Some("EPERM"),
        ),
        attempt(
            "UDP connect then send",
            &["udp-connect", r, "53", "bp-04"],
            Some("EPERM"),
        ),
        attempt(
            "sendmmsg on an unconnected UDP socket",
            &["sendmmsg", OUTSIDE, "5353", "bp-05"],
            Some("EPERM"),
        ),
        attempt(
            "DNS query to an outside resolver (nslookup)",
            &["sh", &format!("nslookup -timeout=2 example.com {r}")],
            None,
        ),
        attempt(
            "HTTP without the proxy (wget, no HTTP_PROXY)",
            &["sh", &format!("wget -T 3 -O- http://{OUTSIDE}/ 2>&1")],
            None,
        ),
        attempt(
            "IPv4-mapped IPv6 to the outside host",
            &["tcp", &mapped_out, "80", "bp-08"],
            Some("EPERM"),
        ),
        attempt(
            "IPv4-mapped IPv6 UDP sendto",
            &["udp-sendto", &format!("::ffff:{r}"), "53", "bp-09"],
            Some("EPERM"),
        ),
        attempt(
            "IPv6 loopback to the proxy port ([::1])",
            &["tcp", "::1", &proxy, "bp-10"],
            Some("EPERM"),
        ),
        attempt(
            "TCP Fast Open sendto without connect",
            &["tfo", OUTSIDE, "80", "bp-11"],
            Some("EPERM"),
        ),
        attempt(
            "ICMP echo through an unprivileged ping socket",
            &["icmp-dgram", OUTSIDE, "bp-12"],
            Some("EPERM"),
        ),
        attempt(
            "busybox ping",
            &["sh", &format!("ping -c 1 -W 2 {OUTSIDE}")],
            None,
        ),
        attempt("raw ICMP socket", &["raw", "icmp"], Some("EPERM")),
        attempt("raw IP socket", &["raw", "ip"], Some("EPERM")),
        attempt("packet socket", &["packet"], Some("EPERM")),
        attempt(
            "sidecar's other port on loopback (9090)",
            &["tcp", "127.0.0.1", "9090", "bp-17"],
            Some("EPERM"),
        ),
        attempt(
            "sidecar's other port on loopback (9999)",
            &["tcp", "127.0.0.1", "9999", "bp-18"],
            Some("EPERM"),
        ),
        attempt(
            "UDP to the proxy port",
            &["udp-sendto", "127.0.0.1", &proxy, "bp-19"],
            Some("EPERM"),
        ),
        attempt(
            "proxy port via the pod's own address",
            &["tcp", &a_side.ip, &proxy, "bp-20"],
            Some("EPERM"),
        ),
        attempt(
            "proxy port via 0.0.0.0",
            &["tcp", "0.0.0.0", &proxy, "bp-21"],
            Some("EPERM"),
        ),
        attempt(
            "proxy port via another loopback address (127.0.0.2)",
            &["tcp", "127.0.0.2", &proxy, "bp-22"],
            Some("EPERM"),
        ),
        attempt(
            "another brainbox's sidecar",
            &["tcp", &b_side.ip, &proxy, "bp-23"],
            Some("EPERM"),
        ),
        attempt(
            "another brainbox via IPv4-mapped IPv6",
            &["tcp", &mapped_b, &proxy, "bp-24"],
            Some("EPERM"),
        ),
        attempt(
            "the orchestrator directly (only sidecars may)",
            &["tcp", &orch.ip, "8080", "bp-25"],
            Some("EPERM"),
        ),
        attempt(
            "the host's bridge gateway",
            &["tcp", &gw, &host_port, "bp-26"],
            Some("EPERM"),
        ),
        attempt(
            "SO_BINDTODEVICE eth0, then connect out",
            &["bindtodevice", "eth0", OUTSIDE, "80", "bp-27"],
            Some("EPERM"),
        ),
        attempt(
            "unshare a user+net namespace, then connect out",
            &["unshare-net", OUTSIDE, "80", "bp-28"],
            Some("EPERM"),
        ),
        attempt(
            "setns into another network namespace",
            &["setns", "/proc/self/ns/net"],
            Some("EPERM"),
        ),
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
        failures.push(format!(
            "BYPASS WORKED after the cgroup/namespace attempts: {out}"
        ));
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
    let o = plain.exec(&["nc", "-w", "3", OUTSIDE, "22"]).unwrap();
    if !String::from_utf8_lossy(&o.stdout).contains("outside:22") {
        failures.push(format!(
            "control: an unwatched container could not reach the outside host: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    // The host is not confined either.
    match std::net::TcpStream::connect_timeout(
        &format!("{OUTSIDE}:22").parse().unwrap(),
        std::time::Duration::from_secs(3),
    ) {
        Ok(mut s) => {
            use std::io::Write;
            let _ = s.write_all(b"host-control\n");
        }
        Err(e) => failures.push(format!(
            "control: the host could not reach the outside host: {e}"
        )),
    }
    let (ok, out) = a_agent.probe(&["tcp", "127.0.0.1", &proxy, "bp-allowed"]);
    if !ok {
        failures.push(format!("control: the agent cannot reach its proxy: {out}"));
    }
    println!("bypass table:\n{}", table.join("\n"));
    assert!(
        failures.is_empty(),
        "{}\n\ntable:\n{}",
        failures.join("\n"),
        table.join("\n")
    );
    // Denials were reported (rate-limited per container, so not necessarily every one).
    let d = lab.denials();
    assert!(
        d.iter()
            .any(|e| e["container"]["id"] == a_agent.c.id.as_str() && e["hook"] == "sendmsg4"),
        "no sendmsg4 denial reported: {d:#?}"
    );
    assert!(
        d.iter()
            .any(|e| e["container"]["id"] == a_agent.c.id.as_str()
                && e["hook"] == "egress"
                && e["proto"] == "icmp"),
        "no icmp egress denial reported: {d:#?}"
    );
}

fn count_lines(c: &brainbox_lab::zones::LabContainer, path: &str) -> usize {
    c.sh(&format!("cat {path} 2>/dev/null | wc -l"))
        .1
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Kills the node agent with SIGKILL in the middle of a flood of connection attempts: nothing
/// gets through while it is down, and the restarted agent adopts the pinned links (no duplicate
/// attachments) and reports the same policy digest.
#[test]
fn agent_killed_during_a_flood_lets_nothing_through_and_restarts_into_the_same_policy() {
    require::lab();
    let _g = lock();
    let outside = Outside::start().unwrap();
    let mut lab = ZoneLab::start().unwrap();
    let (side, agent) = lab.pod("a").unwrap();
    let digest_before = lab
        .logs_with("zone policy applied")
        .last()
        .map(|l| l["digest"].clone())
        .unwrap();
    let cgroups = [side.cgroup_dir().unwrap(), agent.cgroup_dir().unwrap()];

    // Three flooders: TCP connect, unconnected UDP, TCP via IPv4-mapped IPv6.
    for (i, args) in [
        format!("tcp {OUTSIDE} 80"),
        format!("udp-sendto {RESOLVER} 53"),
        format!("tcp ::ffff:{OUTSIDE} 443"),
    ]
    .iter()
    .enumerate()
    {
        let script = format!(
            "n=0; while [ ! -f /tmp/stop ]; do n=$((n+1)); /probe/zones-probe {args} flood-{i}-$n >> /tmp/flood{i}.log 2>&1; done"
        );
        brainbox_lab::docker::docker(&["exec", "-d", &agent.c.id, "sh", "-c", &script]).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before_kill: usize = (0..3)
        .map(|i| count_lines(&agent, &format!("/tmp/flood{i}.log")))
        .sum();
    // SIGKILL: no chance to clean anything up.
    lab.agent = None;
    std::thread::sleep(std::time::Duration::from_secs(2));
    // While the agent is down, enforcement holds.
    let (ok, out) = agent.probe(&["tcp", OUTSIDE, "80", "down-1"]);
    assert!(!ok && out.contains("EPERM"), "agent down: {out}");
    let (ok, out) = agent.probe(&["tcp", "127.0.0.1", &PROXY_PORT.to_string(), "down-2"]);
    assert!(ok, "agent down: the allowed flow must still pass: {out}");
    let at_restart: usize = (0..3)
        .map(|i| count_lines(&agent, &format!("/tmp/flood{i}.log")))
        .sum();
    lab.start_agent().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    agent.sh("touch /tmp/stop");
    std::thread::sleep(std::time::Duration::from_millis(500));

    let mut lines = Vec::new();
    for i in 0..3 {
        lines.extend(
            agent
                .sh(&format!("cat /tmp/flood{i}.log"))
                .1
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
    }
    let worked: Vec<&String> = lines.iter().filter(|l| l.starts_with("ok")).collect();
    assert!(worked.is_empty(), "flood attempts got through: {worked:?}");
    assert!(
        at_restart > before_kill + 10,
        "the flood did not run while the agent was down ({before_kill} -> {at_restart})"
    );
    assert!(
        lines.iter().all(|l| l.contains("EPERM")),
        "every attempt must fail with EPERM: {:?}",
        lines.iter().find(|l| !l.contains("EPERM"))
    );
    assert!(outside.received().is_empty(), "{:?}", outside.received());

    // The restarted agent adopted both containers' links and attached nothing new.
    let ready = lab.logs_with("zones ready");
    let ready = ready.last().expect("zones ready logged");
    assert_eq!(ready["adopted"], 2, "{ready}");
    assert_eq!(ready["attached"], 0, "{ready}");
    assert_eq!(
        ready["digest"], digest_before,
        "policy digest changed: {ready}"
    );
    for dir in &cgroups {
        let progs = ZoneLab::attached_programs(dir).unwrap();
        assert_eq!(
            progs.values().sum::<usize>(),
            6,
            "{}: {progs:?}",
            dir.display()
        );
        assert!(
            progs.values().all(|n| *n == 1),
            "duplicates on {}: {progs:?}",
            dir.display()
        );
    }
    // Denials during the flood were counted, and beyond the rate limit only counted.
    let addr = lab.agent().metrics_addr().unwrap();
    let body = brainbox_lab::agent::http_get(&addr, "/metrics").unwrap();
    let metric = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let denied = metric("brainbox_zones_decisions_total{hook=\"connect4\",verdict=\"denied\"}")
        + metric("brainbox_zones_decisions_total{hook=\"connect6\",verdict=\"denied\"}")
        + metric("brainbox_zones_decisions_total{hook=\"sendmsg4\",verdict=\"denied\"}");
    println!(
        "flood: {} attempts ({} while the agent was down), 0 through; kernel denial counter {denied}",
        lines.len(),
        at_restart - before_kill
    );
    assert!(
        denied >= lines.len() as f64,
        "denied {denied} < attempts {}\n{body}",
        lines.len()
    );
    // Still enforcing after the restart, and new containers get attached.
    let (ok, out) = agent.probe(&["tcp", OUTSIDE, "80", "after-1"]);
    assert!(!ok && out.contains("EPERM"), "after restart: {out}");
    let (_b_side, _b_agent) = lab.pod("b").unwrap();
    let attached = lab
        .logs_with("zones enforcing container")
        .iter()
        .filter(|l| l["how"] == "attached")
        .count();
    assert_eq!(attached, 2, "the new pod's containers must be attached");
}

/// Profile edits are applied live; a flow allowed throughout never fails during the swaps; a
/// bad profile is refused with a clear error and the policy in force stays.
#[test]
fn policy_hot_reload_is_atomic_and_a_bad_profile_keeps_the_old_policy() {
    require::lab();
    let _g = lock();
    let _outside = Outside::start().unwrap();
    let mut lab = ZoneLab::start().unwrap();
    let (side, agent) = lab.pod("a").unwrap();
    let zones_yaml = lab.profiles.path().join("zones.yaml");
    let original = std::fs::read_to_string(&zones_yaml).unwrap();
    let (ok, out) = side.probe(&["tcp", OUTSIDE, "8080", "hr-1"]);
    assert!(
        !ok && out.contains("EPERM"),
        "8080 must start denied: {out}"
    );

    // An allowed flow runs in a loop across every reload below.
    let script = format!(
        "while [ ! -f /tmp/stop ]; do /probe/zones-probe tcp 127.0.0.1 {PROXY_PORT} hr >> /tmp/allowed.log 2>&1; done"
    );
    brainbox_lab::docker::docker(&["exec", "-d", &agent.c.id, "sh", "-c", &script]).unwrap();

    let wait_reloads = |lab: &mut ZoneLab, message: &str, n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while lab.logs_with(message).len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{message}` #{n} in the agent log"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let widened = original.replace("ports: [80, 443]", "ports: [80, 443, 8080]");
    assert_ne!(
        widened, original,
        "profiles/zones.yaml changed shape; update this test"
    );
    std::fs::write(&zones_yaml, &widened).unwrap();
    wait_reloads(&mut lab, "zone policy reloaded", 1);
    let (ok, out) = side.probe(&["tcp", OUTSIDE, "8080", "hr-2"]);
    assert!(ok, "8080 must be allowed after the reload: {out}");
    // Several more swaps (same policy, new generation each time) under the allowed flow.
    for i in 0..4 {
        std::fs::write(&zones_yaml, format!("{widened}\n# edit {i}\n")).unwrap();
        wait_reloads(&mut lab, "zone policy reloaded", 2 + i);
    }

    // A bad edit: refused, named, and the old policy stays.
    std::fs::write(&zones_yaml, widened.replace("proto: udp", "proto: udpp")).unwrap();
    wait_reloads(
        &mut lab,
        "zone policy rejected; the previous policy stays in force",
        1,
    );
    let rejected = lab.logs_with("zone policy rejected; the previous policy stays in force");
    let err = rejected[0]["error"].as_str().unwrap().to_owned();
    assert!(err.contains("zones.yaml") && err.contains("udpp"), "{err}");
    let (ok, out) = side.probe(&["tcp", OUTSIDE, "8080", "hr-3"]);
    assert!(ok, "the old policy must stay after a bad edit: {out}");
    let (ok, out) = side.probe(&["tcp", OUTSIDE, "22", "hr-4"]);
    assert!(!ok && out.contains("EPERM"), "{out}");
    let (ok, out) = agent.probe(&["tcp", OUTSIDE, "80", "hr-5"]);
    assert!(!ok && out.contains("EPERM"), "{out}");

    agent.sh("touch /tmp/stop");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = agent.sh("cat /tmp/allowed.log").1;
    let total = log.lines().count();
    let failed: Vec<&str> = log.lines().filter(|l| !l.starts_with("ok")).collect();
    println!(
        "allowed flow during reloads: {total} connections, {} failed",
        failed.len()
    );
    assert!(total >= 10, "the allowed-flow loop barely ran: {total}");
    assert!(
        failed.is_empty(),
        "an allowed flow failed during a swap: {failed:?}"
    );
}

//! The `isolate` response end to end, with the real node agent, real eBPF (sensor and zones)
//! and real Docker: a reverse-shell attempt in a brainbox's agent container fires a rule the
//! test profile maps to `isolate`; the whole pod is cut to loopback before evidence is
//! captured, the container runs on (thawed) under observation, and other pods keep their flows.
//! The operator then lifts the isolation with `brainboxctl isolation release` (over a real
//! `nats-server`): the pod's flows come back, and the lift is in the audit chain.

use brainbox_lab::{
    require,
    zones::{ZoneLab, LAB_LOCK},
};
use serde_json::Value;
use std::{
    path::Path,
    time::{Duration, Instant},
};

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

const NODE: &str = "lab-iso";

fn ctl(url: &str, args: &[&str]) -> (bool, String) {
    brainbox_lab::ctl(url, "lab-operator", args)
}

fn isolate_on_netcat(dir: &Path) -> anyhow::Result<()> {
    let p = dir.join("default.yaml");
    let text = std::fs::read_to_string(&p)?;
    let old = "    match:\n      # Any of: rules (exact names), tags (any), priority_at_least (Falco priority).\n      priority_at_least: critical\n    # alert | kill | isolate | recycle\n    action: recycle";
    assert!(text.contains(old), "profiles/default.yaml changed: {text}");
    let text = text.replace(
        old,
        "    match:\n      rules: [\"Netcat Remote Code Execution in Container\"]\n    action: isolate",
    );
    std::fs::write(&p, text)?;
    Ok(())
}

#[test]
fn isolate_cuts_the_pod_to_loopback_and_keeps_it_running() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let _g = lock();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    let env = vec![
        ("BRAINBOX_RULES__ENABLED".to_string(), "true".to_string()),
        ("BRAINBOX_NODE_NAME".to_string(), NODE.to_string()),
        ("BRAINBOX_ALERTS__ENABLED".to_string(), "true".to_string()),
        ("BRAINBOX_ALERTS__NATS_URL".to_string(), url.clone()),
    ];
    let mut lab = ZoneLab::start_with(env, isolate_on_netcat).unwrap();
    // Sidecars without `nc -e` listeners: those would fire the rule themselves.
    let (side, agent) = lab.pod_in(Some("team-a"), "iso", "sleep 86400").unwrap();
    let (other_side, _other_agent) = lab.pod_with("ok", "sleep 86400").unwrap();
    // Another tenant's pod with the same name: Kubernetes pod names are unique only within a
    // namespace, so isolating team-a/iso must leave team-b/iso alone.
    let (twin_side, _twin_agent) = lab.pod_in(Some("team-b"), "iso", "sleep 86400").unwrap();
    let orch = lab.service("orch", "orchestrator", 8080, "orch").unwrap();

    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "iso-before"]);
    assert!(ok, "sidecar -> orchestrator before the attack: {out}");

    // A reverse shell attempt from the agent container (exec'd directly: through `sh -c`, the
    // lab's BusyBox shell runs applets as `/proc/self/exe`, whose process name is `exe`).
    let _ = agent
        .c
        .exec(&["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"]);

    let start = Instant::now();
    let report: Value = loop {
        let events = lab.agent().events();
        if let Some(r) = events.iter().find(|e| {
            e["type"] == "response"
                && e["action"] == "isolate"
                && e["container_id"] == agent.c.id.as_str()
        }) {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no isolate response; events:\n{}\nagent log:\n{}",
            std::fs::read_to_string(lab.agent().events_path()).unwrap_or_default(),
            std::fs::read_to_string(lab.agent().log_path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["isolate", "freeze", "capture", "thaw"],
        "{report:#}"
    );
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["ok"], true, "step failed: {s:#}");
    }
    assert!(report["evidence_id"].is_string(), "{report:#}");
    // Both containers of the pod are locked (they share one network namespace).
    assert_eq!(
        report["steps"][0]["detail"]["cgroups"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{report:#}"
    );

    // The pod is cut off: the sidecar cannot reach what its zone allowed a moment ago.
    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "iso-after"]);
    assert!(
        !ok,
        "the isolated pod still reached the orchestrator: {out}"
    );
    assert!(
        lab.denials().iter().any(|e| e["reason"] == "isolated"),
        "no `isolated` denial reported"
    );
    // It runs on, under observation.
    let (ok, out) = agent.sh("echo alive");
    assert!(
        ok && out.contains("alive"),
        "isolated container not running: {out}"
    );
    // Other pods keep their flows, the same-named pod of another namespace too.
    let (ok, out) = other_side.probe(&["tcp", &orch.ip, "8080", "other-after"]);
    assert!(ok, "isolation leaked to another pod: {out}");
    let (ok, out) = twin_side.probe(&["tcp", &orch.ip, "8080", "twin-after"]);
    assert!(
        ok,
        "isolation leaked to the same-named pod of another namespace: {out}"
    );

    // The operator lists what is isolated on the node: this pod's two containers.
    let (ok, out) = ctl(&url, &["--json", "isolation", "list", "--node", NODE]);
    assert!(ok, "isolation list: {out}");
    let listed: Value = serde_json::from_str(out.trim()).expect("isolation list JSON");
    let ids: Vec<&str> = listed["isolated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["container_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&agent.c.id.as_str()) && ids.contains(&side.c.id.as_str()) && ids.len() == 2,
        "{listed:#}"
    );
    assert!(
        listed["isolated"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["namespace"] == "team-a" && c["pod"] == "iso"),
        "{listed:#}"
    );
    // A lift needs a reason, and names an existing container.
    let (ok, _) = ctl(
        &url,
        &[
            "isolation",
            "release",
            &agent.c.id,
            "--node",
            NODE,
            "--reason",
            " ",
        ],
    );
    assert!(!ok, "a release without a reason was accepted");
    let (ok, out) = ctl(
        &url,
        &[
            "isolation",
            "release",
            "no-such-container",
            "--node",
            NODE,
            "--reason",
            "test",
        ],
    );
    assert!(!ok && out.contains("no container"), "{out}");
    // After looking at the evidence, the operator lifts it (by a short ID prefix): the whole
    // pod is released, the release is audited, and the sidecar's allowed flow works again.
    let short: String = agent.c.id.chars().take(12).collect();
    let (ok, out) = ctl(
        &url,
        &[
            "--json",
            "isolation",
            "release",
            &short,
            "--node",
            NODE,
            "--reason",
            "false positive: lab test",
        ],
    );
    assert!(ok, "isolation release: {out}");
    let released: Value = serde_json::from_str(out.trim()).expect("release JSON");
    assert_eq!(
        released["released"].as_array().map(Vec::len),
        Some(2),
        "{released:#}"
    );
    assert_eq!(
        released["isolated"].as_array().map(Vec::len),
        Some(0),
        "{released:#}"
    );
    assert!(released["audit_seq"].is_u64(), "{released:#}");
    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "iso-released"]);
    assert!(
        ok,
        "the released pod still cannot reach the orchestrator: {out}"
    );
    // Releasing again is refused: nothing to lift.
    let (ok, out) = ctl(
        &url,
        &[
            "isolation",
            "release",
            &short,
            "--node",
            NODE,
            "--reason",
            "again",
        ],
    );
    assert!(!ok && out.contains("not isolated"), "{out}");
    // A node nobody serves is reported as such, not as success.
    let (ok, out) = ctl(
        &url,
        &[
            "isolation",
            "list",
            "--node",
            "no-such-node",
            "--timeout",
            "2",
        ],
    );
    assert!(!ok && out.contains("no agent answers"), "{out}");
}

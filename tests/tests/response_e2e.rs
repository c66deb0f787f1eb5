//! Incident response end to end, with the real Docker daemon and real eBPF: an attack in a lab
//! container fires a rule the profile maps to `recycle`; the container is frozen before capture,
//! the sealed bundle verifies, the audit chain verifies, and the container is recreated from the
//! same image digest with a new id.

use brainbox_lab::{
    agent::Agent,
    bin_path,
    docker::docker,
    pod::{Pod, PodSpec},
    require, unique,
};
use serde_json::Value;
use std::{
    process::Command,
    time::{Duration, Instant},
};

fn wait_for(agent: &Agent, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = agent.events().into_iter().find(|e| pred(e)) {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn critical_alert_recycles_the_container_with_sealed_evidence() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    let mut agent = Agent::start(&[
        ("BRAINBOX_ALERTS__ENABLED", "true"),
        ("BRAINBOX_ALERTS__NATS_URL", url.as_str()),
    ])
    .unwrap();
    let name = unique("e2e-recycle");
    let mut spec = PodSpec::new(&name);
    spec.read_only = false;
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let old_id = pod.agent.id.clone();
    let image_id = docker(&["inspect", "-f", "{{.Image}}", &old_id]).unwrap();
    // Something for the writable layer, so the capture has a change to record.
    let _ = pod.agent.exec(&[
        "sh",
        "-c",
        "echo stolen > /home/agent/loot.txt 2>/dev/null; echo stolen > /tmp/loot.txt",
    ]);
    let _ = brainbox_lab::docker::docker_output(&[
        "exec",
        "-u",
        "0",
        &old_id,
        "sh",
        "-c",
        "echo dropped > /home/agent/dropped.txt",
    ]);

    // A reverse shell attempt: Netcat RCE is CRITICAL in profiles/rules, and the default profile
    // recycles on critical.
    let _ = pod
        .agent
        .exec(&["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"]);

    let alert = wait_for(
        &agent,
        |e| {
            e["type"] == "alert"
                && e["rule"] == "Netcat Remote Code Execution in Container"
                && e["container"]["id"] == old_id.as_str()
        },
        Duration::from_secs(90),
    )
    .expect("no alert for the attack");
    let report = wait_for(
        &agent,
        |e| e["type"] == "response" && e["alert_id"] == alert["id"],
        Duration::from_secs(120),
    )
    .unwrap_or_else(|| {
        panic!(
            "no response report; agent log:\n{}",
            std::fs::read_to_string(agent.log_path()).unwrap_or_default()
        )
    });
    assert_eq!(report["action"], "recycle", "{report:#}");

    // Steps in order, each succeeded, and the audit records are in the same order.
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["freeze", "capture", "kill", "recreate"],
        "{report:#}"
    );
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["ok"], true, "step failed: {s:#}");
    }
    let seqs: Vec<u64> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["audit_seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "audit order {seqs:?}");

    // Frozen before capture: the capture itself recorded the cgroup as frozen.
    let evidence_id = report["evidence_id"]
        .as_str()
        .expect("no evidence id")
        .to_owned();
    let bundle = agent.evidence_dir().join(&evidence_id);
    // Sealed files are immutable where the filesystem allows it. Whether it does, this test
    // asks the filesystem itself (as root with every capability) next to the store.
    let probe = agent.evidence_dir().join(".immutable-probe");
    std::fs::write(&probe, b"x").unwrap();
    let fs_supports = Command::new("chattr")
        .arg("+i")
        .arg(&probe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = Command::new("chattr").arg("-i").arg(&probe).status();
    let _ = std::fs::remove_file(&probe);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    if fs_supports {
        assert_eq!(
            manifest["protection"]["immutable"], true,
            "the agent could not make sealed evidence immutable: {}",
            manifest["protection"]
        );
    }
    let events = std::fs::read_to_string(bundle.join("cgroup/cgroup.events")).unwrap();
    assert!(
        events.lines().any(|l| l.trim() == "frozen 1"),
        "not frozen at capture:\n{events}"
    );
    let procs: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("processes.json")).unwrap())
            .unwrap();
    assert!(
        !procs.as_array().unwrap().is_empty(),
        "no processes captured"
    );
    assert!(
        procs
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["exe_blake3"].is_string()),
        "{procs:#}"
    );
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("layer/index.json")).unwrap())
            .unwrap();
    assert!(
        index.to_string().contains("dropped.txt"),
        "writable layer change missing: {index:#}"
    );
    let alert_in_bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("alert.json")).unwrap()).unwrap();
    assert_eq!(alert_in_bundle["id"], alert["id"]);

    // The bundle and the audit chain verify with the operator's tool.
    let out = Command::new(bin_path("brainboxctl"))
        .args(["evidence", "verify", &evidence_id, "--store"])
        .arg(agent.evidence_dir())
        .arg("--audit")
        .arg(agent.audit_log())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evidence verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin_path("brainboxctl"))
        .args(["audit", "verify"])
        .arg(agent.audit_log())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Recreated from the same image digest, with a new id, same name, running; the old one gone.
    let new_id = report["new_container_id"]
        .as_str()
        .expect("no new container")
        .to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(
        docker(&["inspect", "-f", "{{.Image}}", &new_id]).unwrap(),
        image_id
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.Name}}", &new_id]).unwrap(),
        format!("/{name}-agent")
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &new_id]).unwrap(),
        "true"
    );
    assert!(
        docker(&["inspect", &old_id]).is_err(),
        "old container still exists"
    );
    // The replacement is watched again (same labels), and is clean: its writable layer is new.
    agent.wait_watching(&new_id).unwrap();
    let out = docker(&["exec", &new_id, "cat", "/home/agent/dropped.txt"]);
    assert!(out.is_err(), "the dropped file survived the recycle");

    // The operator sees the alert, once, with the bundle id, through JetStream.
    let out = Command::new(bin_path("brainboxctl"))
        .args([
            "--json",
            "alerts",
            "tail",
            "--count",
            "1",
            "--idle-exit",
            "30",
            "--priority",
            "critical",
        ])
        .env("BRAINBOX_NATS_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "alerts tail: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Value = serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(tailed["alert"]["id"], alert["id"], "{text}");
    assert_eq!(
        tailed["alert"]["evidence_id"],
        evidence_id.as_str(),
        "{text}"
    );

    // The pod's Drop removes the replacement too (same name).
    brainbox_lab::docker::remove_containers(&[&new_id]);
}

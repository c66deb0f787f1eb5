//! Alert noise control end to end, with the real node agent, real eBPF, a real lab container
//! and a real `nats-server -js`: a command that fires one rule three times with the same output
//! reaches the operator as the first alert at once plus one summary counting the other two,
//! while the node's event output keeps all three.

use brainbox_lab::{
    agent::Agent,
    bin_path,
    pod::{Pod, PodSpec},
    require, unique,
};
use serde_json::Value;
use std::{
    process::Command,
    time::{Duration, Instant},
};

const RULE: &str = "Clear Log Activities";

#[test]
fn identical_alerts_reach_the_operator_as_one_plus_a_counted_summary() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    let mut agent = Agent::start(&[
        ("BRAINBOX_ALERTS__ENABLED", "true"),
        ("BRAINBOX_ALERTS__NATS_URL", url.as_str()),
        ("BRAINBOX_ALERTS__COALESCE_SECS", "3"),
    ])
    .unwrap();
    let name = unique("e2e-coalesce");
    let mut spec = PodSpec::new(&name);
    spec.read_only = false;
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();

    // One command truncates a log three times: three openat(O_TRUNC) under /var/log, three
    // identical "Clear Log Activities" alerts (WARNING: no response holds them).
    let _ = pod.agent.exec(&[
        "sh",
        "-c",
        "mkdir -p /var/log && for i in 1 2 3; do : > /var/log/agent.log; done",
    ]);
    let mine = |e: &Value| e["rule"] == RULE && e["container"]["id"] == pod.agent.id.as_str();
    let start = Instant::now();
    let local = loop {
        let n: Vec<Value> = agent
            .events()
            .into_iter()
            .filter(|e| e["type"] == "alert" && mine(e))
            .collect();
        if n.len() >= 3 || start.elapsed() > Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        local.len(),
        3,
        "the event output keeps every alert: {local:#?}"
    );

    // The operator's view: the first at once, then one summary when the 3 s window closes.
    let out = Command::new(bin_path("brainboxctl"))
        .args(["--json", "alerts", "tail", "--idle-exit", "8"])
        .env("BRAINBOX_NATS_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "alerts tail: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["alert"].clone())
        .filter(|a| a["rule"] == RULE && a["container"]["id"] == pod.agent.id.as_str())
        .collect();
    assert_eq!(
        tailed.len(),
        2,
        "expected the first and one summary: {tailed:#?}"
    );
    assert_eq!(tailed[0]["id"], local[0]["id"], "{tailed:#?}");
    assert!(tailed[0].get("repeats").is_none(), "{tailed:#?}");
    assert_eq!(tailed[1]["repeats"], 2, "{tailed:#?}");
    assert_eq!(tailed[1]["id"], local[2]["id"], "{tailed:#?}");
    assert_eq!(tailed[1]["repeats_since"], local[1]["time"], "{tailed:#?}");

    // The agent counts what it folded.
    assert_eq!(
        agent.metric("brainbox_alerts_coalesced_total"),
        Some(2),
        "the coalesced count in the metrics"
    );
}

//! End to end, with the real Docker daemon and real eBPF: execs inside lab containers are
//! reported with the right container, argv and uid; execs in unwatched containers never even
//! leave the kernel.

use brainbox_lab::{
    agent::{http_get, Agent},
    pod::{self, Pod, PodSpec},
    require, unique,
};
use std::time::Duration;

#[test]
fn exec_in_watched_container_is_reported_with_container_argv_and_uid() {
    require::lab();
    let mut agent = Agent::start(&[]).unwrap();
    let name = unique("e2e-exec");
    let pod = Pod::start(&PodSpec::new(&name)).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();

    let out = pod.agent.exec_ok(&["cat", "/etc/hostname"]).unwrap();
    assert!(!out.trim().is_empty(), "cat /etc/hostname printed nothing");

    let ev = agent
        .wait_event(
            |e| {
                e["type"] == "exec"
                    && e["container"]["id"] == pod.agent.id.as_str()
                    && e["process"]["argv"] == serde_json::json!(["cat", "/etc/hostname"])
            },
            Duration::from_secs(90),
        )
        .unwrap();
    assert_eq!(ev["process"]["uid"], 1000, "{ev}");
    assert_eq!(ev["process"]["gid"], 1000, "{ev}");
    assert_eq!(ev["container"]["name"], format!("{name}-agent"), "{ev}");
    assert_eq!(ev["container"]["pod"], name.as_str(), "{ev}");
    assert_eq!(ev["container"]["role"], "agent", "{ev}");
    assert_eq!(ev["container"]["profile"], "default", "{ev}");
    assert!(
        ev["container"]["image"]
            .as_str()
            .unwrap()
            .starts_with("brainbox-lab/busybox:"),
        "{ev}"
    );
    assert!(
        ev["container"]["image_id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{ev}"
    );
    assert_eq!(ev["process"]["exepath"], "/bin/cat", "{ev}");
    assert_eq!(ev["process"]["name"], "cat", "{ev}");
    assert_eq!(ev["evt_type"], "execve", "{ev}");
    assert!(ev["process"]["pid"].as_u64().unwrap() > 1, "{ev}");
    assert!(ev["time"].as_str().unwrap().ends_with('Z'), "{ev}");
}

#[test]
fn exec_in_unwatched_container_is_filtered_in_the_kernel() {
    require::lab();
    // Report even events no container claims: anything the kernel lets through would show here.
    let mut agent = Agent::start(&[("BRAINBOX_EVENTS__INCLUDE_UNATTRIBUTED", "true")]).unwrap();
    let plain = pod::unwatched(&unique("e2e-unwatched")).unwrap();
    let name = unique("e2e-control");
    let watched = Pod::start(&PodSpec::new(&name)).unwrap();
    agent.wait_watching(&watched.agent.id).unwrap();

    let token = unique("/tmp/unwatched-marker");
    // Exits non-zero (no such file) but the exec itself succeeds.
    let _ = plain.exec(&["cat", &token]).unwrap();
    // A later exec in a watched container: once it is reported, the earlier one would have been.
    let control = unique("/tmp/control-marker");
    let _ = watched.agent.exec(&["cat", &control]).unwrap();
    agent
        .wait_event(
            |e| e["process"]["argv"][1] == control.as_str(),
            Duration::from_secs(90),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let leaked: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| e.to_string().contains(&token))
        .collect();
    assert!(
        leaked.is_empty(),
        "exec in an unwatched container was reported: {leaked:?}"
    );
    let unattributed: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| e["container"].is_null())
        .collect();
    assert!(
        unattributed.is_empty(),
        "the kernel let through events of unknown cgroups: {unattributed:?}"
    );
}

#[test]
fn kernel_counters_are_exported_as_metrics() {
    require::lab();
    let mut agent = Agent::start(&[("BRAINBOX_SENSOR__STATS_INTERVAL_SECS", "1")]).unwrap();
    let name = unique("e2e-metrics");
    let pod = Pod::start(&PodSpec::new(&name)).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    pod.agent.exec_ok(&["true"]).unwrap();
    agent
        .wait_event(
            |e| e["container"]["id"] == pod.agent.id.as_str(),
            Duration::from_secs(90),
        )
        .unwrap();
    let addr = agent.metrics_addr().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let body = http_get(&addr, "/metrics").unwrap();
        let events = metric(&body, "brainbox_sensor_kernel_events_total{kind=\"exec\"}");
        let drops = metric(&body, "brainbox_sensor_kernel_drops_total{kind=\"exec\"}");
        if events.unwrap_or(0.0) >= 1.0 {
            assert_eq!(
                drops,
                Some(0.0),
                "drop counter must be exported (and zero here):\n{body}"
            );
            assert!(body.contains("brainbox_watched_containers"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kernel event counter never reached 1:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

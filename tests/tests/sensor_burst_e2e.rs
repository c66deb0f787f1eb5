//! End to end, with real eBPF: a burst of N `openat` calls in a watched container is reported
//! exactly N times (no loss, no duplicates), the kernel counts no drops, and user space reads
//! and evaluates every event the kernel emitted. The ring buffer is sized so the whole burst
//! fits even if user space did not read at all: this checks accounting, not speed.

use brainbox_lab::{
    agent::{http_get, Agent},
    pod::{load_tool_args, Pod, PodSpec, LOAD_TOOL},
    require, unique,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const N: usize = 5000;

/// One test at a time: every agent watches every lab container, so the flood test's 200,000
/// opens would overflow the burst tests' rings too.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum of a kernel counter family over its syscall series (the kernel counts per syscall).
fn kernel_syscalls(body: &str, family: &str) -> f64 {
    kernel_series(body, family, |kind| {
        !matches!(kind, "exec" | "fork" | "exit")
    })
}

/// Sum of a kernel counter family over the series whose `kind` passes `keep`.
fn kernel_series(body: &str, family: &str, keep: impl Fn(&str) -> bool) -> f64 {
    body.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix("{kind=\""))
        .filter_map(|l| l.split_once("\"}"))
        .filter(|(kind, _)| keep(kind))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// The burst's own opens: read-only opens of `path` (the generator creates it first with O_CREAT).
fn burst_opens(events: &[Value], path: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["evt_type"] == "openat"
                && e["args"]["name"] == path
                && !e["args"]["flags"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("O_CREAT")
        })
        .count()
}

#[test]
fn burst_of_openat_is_reported_exactly_once_each_with_zero_drops() {
    burst("raw");
}

/// The same with the per-syscall tracepoints (`sensor.attach = tracepoints`).
#[test]
fn burst_is_reported_exactly_once_each_with_per_syscall_tracepoints() {
    burst("tracepoints");
}

fn burst(attach: &str) {
    require::lab();
    let _serial = serial();
    let mut agent = Agent::start(&[
        ("BRAINBOX_SENSOR__ATTACH", attach),
        ("BRAINBOX_EVENTS__SYSCALLS", "true"),
        // 16 MiB holds ~25k syscall records: far more than the burst.
        ("BRAINBOX_SENSOR__RING_BUFFER_BYTES", "16777216"),
    ])
    .unwrap();
    let name = unique("e2e-burst");
    let mut spec = PodSpec::new(&name);
    spec.agent_args = load_tool_args().unwrap();
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let addr = agent.metrics_addr().unwrap();
    let before = http_get(&addr, "/metrics").unwrap();
    let drops_before = kernel_syscalls(&before, "brainbox_sensor_kernel_drops_total");

    let path = unique("/tmp/burst");
    let n = N.to_string();
    let out = pod
        .agent
        .exec_ok(&[LOAD_TOOL, "openat", "--ops", &n, "--file", &path])
        .unwrap();
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ops"], N, "{report}");
    assert_eq!(report["failed"], 0, "{report}");

    // Wait for the last one, then a little longer: a duplicate would show up after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = burst_opens(&agent.events(), &path);
        if seen >= N {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let events = agent.events();
    let opens: Vec<&Value> = events
        .iter()
        .filter(|e| e["evt_type"] == "openat" && e["args"]["name"] == path.as_str())
        .collect();
    assert_eq!(
        burst_opens(&events, &path),
        N,
        "reported {seen} then {} of {N} opens",
        burst_opens(&events, &path)
    );
    for e in &opens {
        assert_eq!(e["container"]["id"], pod.agent.id.as_str(), "{e}");
        assert_eq!(e["process"]["name"], "brainbox-load", "{e}");
        assert!(e["ret"].as_i64().unwrap() >= 0, "{e}");
    }

    // Every event the kernel emitted was read and evaluated, and none was dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = http_get(&addr, "/metrics").unwrap();
        let k = |m: &str| metric(&body, &format!("{m}{{kind=\"syscall\"}}"));
        let emitted = kernel_syscalls(&body, "brainbox_sensor_kernel_events_total");
        let drops = kernel_syscalls(&body, "brainbox_sensor_kernel_drops_total");
        let openat = metric(
            &body,
            "brainbox_sensor_kernel_events_total{kind=\"openat\"}",
        );
        let read = k("brainbox_sensor_events_read_total");
        let processed = k("brainbox_sensor_events_processed_total");
        assert_eq!(drops, drops_before, "the kernel dropped events:\n{body}");
        assert!(openat >= N as f64, "kernel counted {openat} openat < {N}");
        if read == emitted && processed == emitted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "user space read {read} and processed {processed} of {emitted} emitted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A flood that overflows the ring buffer (one page here) makes the sensor partly blind, the
/// way an attacker would hide a syscall among many. The agent tells the operator: one
/// `Sensor dropped events` alert, CRITICAL, naming the flooding container, whose count matches
/// the kernel's drop counters.
#[test]
fn a_flood_that_overflows_the_ring_buffer_raises_a_counted_alert() {
    require::lab();
    let _serial = serial();
    let mut agent = Agent::start(&[
        ("BRAINBOX_EVENTS__SYSCALLS", "true"),
        ("BRAINBOX_SENSOR__RING_BUFFER_BYTES", "4096"),
        ("BRAINBOX_SENSOR__STATS_INTERVAL_SECS", "1"),
        ("BRAINBOX_SENSOR__DROP_ALERT_SECS", "600"),
    ])
    .unwrap();
    let name = unique("e2e-flood");
    let mut spec = PodSpec::new(&name);
    spec.agent_args = load_tool_args().unwrap();
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let addr = agent.metrics_addr().unwrap();
    let path = unique("/tmp/flood");
    pod.agent
        .exec_ok(&[LOAD_TOOL, "openat", "--ops", "200000", "--file", &path])
        .unwrap();

    let rule = "Sensor dropped events";
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        if let Some(a) = agent
            .events()
            .into_iter()
            .find(|e| e["type"] == "alert" && e["rule"] == rule)
        {
            break a;
        }
        assert!(Instant::now() < deadline, "no `{rule}` alert");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alert["priority"], "critical", "{alert}");
    // The flood's container is named: nearly every dropped event was its own.
    assert_eq!(alert["container"]["id"], pod.agent.id.as_str(), "{alert}");
    assert!(
        alert["output"]
            .as_str()
            .is_some_and(|o| o.contains(&format!("sources: {name}-agent="))),
        "{alert}"
    );
    let output = alert["output"].as_str().unwrap_or_default();
    let reported: f64 = output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("n_drops="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no n_drops in {output}"));
    assert!(reported > 0.0, "{output}");
    // The alert counts what the kernel counted by then (the flood may go on dropping after).
    let body = http_get(&addr, "/metrics").unwrap();
    let kernel = kernel_series(&body, "brainbox_sensor_kernel_drops_total", |_| true);
    assert!(
        reported <= kernel,
        "alert says {reported}, kernel counted {kernel}"
    );
    // Rate-limited: one alert however long the flood (the window here is 10 minutes).
    std::thread::sleep(Duration::from_secs(3));
    let n = agent
        .events()
        .iter()
        .filter(|e| e["type"] == "alert" && e["rule"] == rule)
        .count();
    assert_eq!(n, 1, "one alert per window");
}

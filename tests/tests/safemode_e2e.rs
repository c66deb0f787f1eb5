//! The dead-man switch end to end, with the real node agent, real Docker, real cgroup-BPF zones
//! and a real `nats-server -js`: a test profile asks for a check-in every few seconds; the
//! operator checks in with `brainboxctl checkin`, then stops; the node enters safe mode as the
//! profile says (`close_egress`: every brainbox keeps only its loopback; `freeze`: every
//! brainbox's cgroup is frozen), announces it (`brainboxctl safe-mode status`, the
//! `brainbox_safe_mode` metric, the agent's log), and the next check-in lifts it.

use brainbox_lab::{
    require,
    zones::{short_dead_man, ZoneLab, LAB_LOCK, PROXY_PORT},
};
use std::{
    path::Path,
    time::{Duration, Instant},
};

const INTERVAL_SECS: u64 = 4;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn ctl(url: &str, args: &[&str]) -> (bool, String) {
    brainbox_lab::ctl(url, "lab-operator", args)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn safe_mode_metric(lab: &mut ZoneLab) -> Option<i64> {
    lab.agent().metric("brainbox_safe_mode")
}

fn frozen(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "frozen 1"))
        .unwrap_or(false)
}

/// Thaws cgroups when a test ends however it ends, so the lab's cleanup can remove them.
struct Thaw(Vec<std::path::PathBuf>);

impl Drop for Thaw {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
    }
}

fn lab_with_safety(action: &'static str, url: &str) -> ZoneLab {
    let env = vec![
        ("BRAINBOX_ALERTS__ENABLED".to_string(), "true".to_string()),
        ("BRAINBOX_ALERTS__NATS_URL".to_string(), url.to_string()),
        ("BRAINBOX_ALERTS__SAFETY_TICK_MS".to_string(), "200".into()),
    ];
    ZoneLab::start_with(env, |d| short_dead_man(d, INTERVAL_SECS, action)).unwrap()
}

#[test]
fn missed_checkin_closes_every_brainboxs_egress_and_a_checkin_reopens_it() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let _g = lock();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    // No check-in before the lab: a stored one counts from its own time, and starting the lab
    // takes a good part of the short interval. The agent's start-up grace covers the setup.
    let mut lab = lab_with_safety("close_egress", &url);
    let (side, agent) = lab.pod("sm").unwrap();
    let orch = lab.service("orch", "orchestrator", 8080, "orch").unwrap();
    let proxy = PROXY_PORT.to_string();

    // Checked in: the pod works as its zone says.
    let (ok, _) = ctl(&url, &["checkin"]);
    assert!(ok);
    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "sm-before"]);
    assert!(ok, "sidecar -> orchestrator before safe mode: {out}");

    // The operator goes quiet: safe mode within the interval plus a few ticks.
    wait_until(
        "safe mode entered",
        Duration::from_secs(INTERVAL_SECS * 4),
        || safe_mode_metric(&mut lab) == Some(1),
    );
    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "sm-during"]);
    assert!(
        !ok,
        "the sidecar still reached the orchestrator in safe mode: {out}"
    );
    // Loopback stays: the agent container still reaches its own sidecar.
    let (ok, out) = agent.probe(&["tcp", "127.0.0.1", &proxy, "sm-loop"]);
    assert!(ok, "loopback inside the pod broke in safe mode: {out}");
    // Announced on every channel that works: the log, the control plane.
    assert!(
        lab.agent()
            .logs()
            .iter()
            .any(|l| l["message"] == "ENTERING SAFE MODE"),
        "no safe-mode log line"
    );
    let (ok, status) = ctl(&url, &["--json", "safe-mode", "status"]);
    assert!(ok, "{status}");
    let status = status.replace(' ', "");
    assert!(status.contains("\"safe_mode\":true"), "{status}");
    assert!(status.contains("dead_man"), "{status}");
    // Denials say why.
    wait_until(
        "an `isolated` denial event",
        Duration::from_secs(10),
        || lab.denials().iter().any(|e| e["reason"] == "isolated"),
    );

    // A check-in lifts it (the profile's `lift: checkin`).
    let (ok, out) = ctl(&url, &["checkin"]);
    assert!(ok, "{out}");
    wait_until("safe mode lifted", Duration::from_secs(10), || {
        safe_mode_metric(&mut lab) == Some(0)
    });
    let (ok, out) = side.probe(&["tcp", &orch.ip, "8080", "sm-after"]);
    assert!(ok, "egress did not come back after the check-in: {out}");
}

#[test]
fn missed_checkin_freezes_every_brainbox_and_a_checkin_thaws_them() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let _g = lock();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    // No check-in before the lab: a stored one counts from its own time, and starting the lab
    // takes a good part of the short interval. The agent's start-up grace covers the setup.
    let mut lab = lab_with_safety("freeze", &url);
    let (side, agent) = lab.pod("fz").unwrap();
    let dirs = [side.cgroup_dir().unwrap(), agent.cgroup_dir().unwrap()];
    let _thaw_pod = Thaw(dirs.to_vec());
    assert!(dirs.iter().all(|d| !frozen(d)));

    wait_until(
        "both pod containers frozen",
        Duration::from_secs(INTERVAL_SECS * 4),
        || dirs.iter().all(|d| frozen(d)),
    );
    assert_eq!(safe_mode_metric(&mut lab), Some(1));
    // A container that starts during safe mode is frozen too.
    // (Not through `ZoneLab::run`: it execs into the container, which would hang frozen.)
    let late = lab
        .run_unenforced("late", "default", "sleep 86400")
        .unwrap();
    let late_dir = late.cgroup_dir().unwrap();
    let _thaw = Thaw(vec![dirs[0].clone(), dirs[1].clone(), late_dir.clone()]);
    wait_until("the late container frozen", Duration::from_secs(10), || {
        frozen(&late_dir)
    });

    let (ok, out) = ctl(&url, &["checkin"]);
    assert!(ok, "{out}");
    wait_until("every container thawed", Duration::from_secs(10), || {
        dirs.iter().chain([&late_dir]).all(|d| !frozen(d))
    });
    assert_eq!(safe_mode_metric(&mut lab), Some(0));
    let (ok, out) = agent.sh("echo alive");
    assert!(ok && out.contains("alive"), "{out}");
}

//! Incident-response benchmarks of issue #6, against baselines measured in the same run:
//!
//! - **freeze latency**: the node agent's freeze step (`cgroup.freeze` = 1, then waiting for
//!   `frozen 1` in `cgroup.events`) for a container with busy processes, against `docker pause`
//!   of an identical container (runc's cgroup v1 freezer, through the Docker CLI and daemon).
//! - **capture time against writable-layer size**: the agent's whole capture-and-seal step for a
//!   container whose writable layer holds N MiB of incompressible data, against `tar` copying the
//!   same upper directory to a file (the least any capture of that content must do).
//!
//! Real node agent (this build's profile), real Docker, real eBPF: each round starts a pod, fills
//! the layer, fires `Netcat Remote Code Execution in Container` (mapped to `recycle` by the
//! default profile) and reads the response report's per-step timings.
//!
//! Usage: `brainbox-response-bench [OUT_JSON] [SIZES_MIB...]` (default sizes 0 10 50 100).

use anyhow::{bail, Context, Result};
use brainbox_lab::{
    agent::Agent,
    docker::{docker, docker_output},
    pod::{Pod, PodSpec},
    unique,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .cloned()
        .unwrap_or_else(|| "bench/results/response.json".into());
    let mut sizes: Vec<u64> = args[1.min(args.len())..]
        .iter()
        .map(|s| s.parse().context("sizes are MiB integers"))
        .collect::<Result<_>>()?;
    if sizes.is_empty() {
        sizes = vec![0, 10, 50, 100];
    }
    brainbox_lab::require::lab();
    let mut agent = Agent::start(&[])?;
    let mut rounds = vec![];
    for &mib in &sizes {
        let r = round(&mut agent, mib).with_context(|| format!("round with {mib} MiB"))?;
        eprintln!("{r}");
        rounds.push(r);
    }
    let pause = docker_pause_baseline(5)?;
    let result = json!({
        "benchmark": "response",
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "capture_rounds": rounds,
        "docker_pause_ms": pause,
        "goal": "capture <= 2000 ms for a 100 MiB writable layer",
    });
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Busy processes so the freezer has something to stop.
const BUSY: &str = "for i in 1 2 3 4; do (while :; do :; done) & done; wait";

fn round(agent: &mut Agent, mib: u64) -> Result<Value> {
    let name = unique("bench-resp");
    let mut spec = PodSpec::new(&name);
    spec.read_only = false;
    let pod = Pod::start(&spec)?;
    agent.wait_watching(&pod.agent.id)?;
    let id = pod.agent.id.clone();
    if mib > 0 {
        let o = docker_output(&[
            "exec",
            "-u",
            "0",
            &id,
            "dd",
            "if=/dev/urandom",
            "of=/home/agent/blob",
            "bs=1048576",
            &format!("count={mib}"),
        ])?;
        if !o.status.success() {
            bail!("filling the layer: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
    let upper = docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &id])?;
    // Baseline: copy the upper directory's content once (page cache warm, like the capture).
    let tmp = tempfile::NamedTempFile::new()?;
    let t = Instant::now();
    let st = std::process::Command::new("tar")
        .args(["-C", &upper, "-cf"])
        .arg(tmp.path())
        .arg(".")
        .status()?;
    let tar_ms = t.elapsed().as_secs_f64() * 1000.0;
    if !st.success() {
        bail!("tar of {upper} failed");
    }
    drop(tmp);
    let _ = pod
        .agent
        .exec(&["sh", "-c", &format!("({BUSY}) >/dev/null 2>&1 &")]);
    let _ = pod
        .agent
        .exec(&["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"]);
    let start = Instant::now();
    let report = loop {
        if let Some(r) = agent
            .events()
            .into_iter()
            .find(|e| e["type"] == "response" && e["container_id"] == id.as_str())
        {
            break r;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("no response report for {id}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let step = |name: &str| {
        report["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["step"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (freeze, capture) = (step("freeze"), step("capture"));
    if freeze["ok"] != true || capture["ok"] != true {
        bail!("a step failed: {report}");
    }
    let capture_ms = capture["ms"].as_f64().unwrap_or(0.0);
    let layer = &capture["detail"]["summary"];
    // The recreated container is the lab's to clean up; the pod's own containers go with `pod`.
    if let Some(new) = report["new_container_id"].as_str() {
        let _ = docker_output(&["rm", "-f", new]);
    }
    Ok(json!({
        "layer_mib": mib,
        "freeze_ms": freeze["ms"],
        "freeze_wait_ms": freeze["detail"]["wait_ms"],
        "capture_ms": capture_ms,
        "tar_baseline_ms": tar_ms,
        "capture_vs_tar": if tar_ms > 0.0 { capture_ms / tar_ms } else { 0.0 },
        "capture_summary": layer,
    }))
}

/// `docker pause` of a container with busy processes, median of `n`.
fn docker_pause_baseline(n: usize) -> Result<Value> {
    let name = unique("bench-pause");
    let mut spec = PodSpec::new(&name);
    spec.profile = None;
    let pod = Pod::start(&spec)?;
    let _ = pod
        .agent
        .exec(&["sh", "-c", &format!("({BUSY}) >/dev/null 2>&1 &")]);
    let mut times = vec![];
    for _ in 0..n {
        let t = Instant::now();
        docker(&["pause", &pod.agent.id])?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        docker(&["unpause", &pod.agent.id])?;
    }
    let all = times.clone();
    Ok(json!({ "median": median(&mut times), "all": all }))
}

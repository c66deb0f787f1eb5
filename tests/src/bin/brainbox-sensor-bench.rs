//! `brainbox-sensor-bench`: the two sensor benchmarks of issue #4, run against the real node
//! agent, real eBPF and real lab containers. Run by `bench/sensor/run.sh` (release build, root).
//!
//! Throughput: N watched `openat` calls in a watched container at a target rate; generated
//! vs counted by the kernel vs read by user space, kernel drops, agent CPU and peak RSS.
//!
//! Overhead: the same open/close loop (a) in a watched container with no agent, (b) in the
//! watched container with the agent running, (c) in an unwatched container with the agent
//! running; alternating rounds, medians and ratios against (a).
//!
//! Both are measured for each sensor attach mode (`sensor.attach`: `raw` = two raw syscall
//! tracepoints with an in-kernel dispatch, `tracepoints` = one tracepoint per syscall) in the
//! same run; overhead rounds run every mode against the same baseline runs.
//!
//! brainbox-sensor-bench [--out FILE] [--ops N] [--rate R] [--threads T] [--ring-mib M]
//!                       [--loop-ops N] [--rounds K] [--attach raw,tracepoints]

use anyhow::{bail, Context, Result};
use brainbox_lab::{
    agent::{http_get, Agent},
    docker::Container,
    images,
    pod::{load_tool_args, HARDENING, LOAD_TOOL},
    require, unique,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Opts {
    out: String,
    ops: u64,
    rate: u64,
    threads: u64,
    ring_mib: u32,
    loop_ops: u64,
    rounds: usize,
    attach: Vec<String>,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        out: "bench/results/sensor.json".into(),
        ops: 3_000_000,
        rate: 330_000,
        threads: 2,
        ring_mib: 8,
        loop_ops: 200_000,
        rounds: 7,
        attach: vec!["raw".into(), "tracepoints".into()],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => o.out = v,
            "--ops" => o.ops = v.parse()?,
            "--rate" => o.rate = v.parse()?,
            "--threads" => o.threads = v.parse()?,
            "--ring-mib" => o.ring_mib = v.parse()?,
            "--loop-ops" => o.loop_ops = v.parse()?,
            "--rounds" => o.rounds = v.parse()?,
            "--attach" => o.attach = v.split(',').map(str::to_owned).collect(),
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(o)
}

/// A container from the lab image with the load generator mounted; watched iff `profile`.
fn container(name: &str, profile: bool) -> Result<Container> {
    let image = images::agent_image()?;
    let mut args: Vec<String> = HARDENING.iter().map(|s| s.to_string()).collect();
    args.extend(["--label".into(), format!("brainbox.io/pod={name}")]);
    args.extend(["--label".into(), "brainbox.io/role=agent".into()]);
    if profile {
        args.extend(["--label".into(), "brainbox.io/profile=default".into()]);
    }
    args.extend(load_tool_args()?);
    args.extend(
        [
            "--user",
            "1000:1000",
            "--tmpfs",
            "/tmp:size=16m,mode=1777",
            &image,
            "sleep",
            "86400",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    Container::run(name, &argv)
}

/// Runs the generator in `c` and returns its JSON report.
fn load(c: &Container, ops: u64, threads: u64, rate: Option<u64>) -> Result<Value> {
    let ops = ops.to_string();
    let threads = threads.to_string();
    let mut cmd = vec![LOAD_TOOL, "openat", "--ops", &ops, "--threads", &threads];
    let rate = rate.map(|r| r.to_string());
    if let Some(r) = &rate {
        cmd.extend(["--rate", r]);
    }
    let out = c.exec_ok(&cmd)?;
    serde_json::from_str(out.trim()).with_context(|| format!("generator output: {out}"))
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum of a kernel counter family over every syscall series (`kind` other than the process
/// lifecycle kinds): the kernel counts per syscall, user space per event kind.
fn kernel_syscalls(body: &str, family: &str) -> f64 {
    body.lines()
        .filter_map(|l| l.strip_prefix(family)?.strip_prefix("{kind=\""))
        .filter_map(|l| l.split_once("\"}"))
        .filter(|(kind, _)| !matches!(*kind, "exec" | "fork" | "exit"))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// The counters this bench reads from `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    kernel_events: f64,
    kernel_drops: f64,
    kernel_openat: f64,
    kernel_openat_drops: f64,
    read: f64,
    processed: f64,
}

fn counters(addr: &str) -> Result<Counters> {
    let body = http_get(addr, "/metrics")?;
    Ok(Counters {
        kernel_events: kernel_syscalls(&body, "brainbox_sensor_kernel_events_total"),
        kernel_drops: kernel_syscalls(&body, "brainbox_sensor_kernel_drops_total"),
        kernel_openat: metric(
            &body,
            "brainbox_sensor_kernel_events_total{kind=\"openat\"}",
        ),
        kernel_openat_drops: metric(&body, "brainbox_sensor_kernel_drops_total{kind=\"openat\"}"),
        read: metric(&body, "brainbox_sensor_events_read_total{kind=\"syscall\"}"),
        processed: metric(
            &body,
            "brainbox_sensor_events_processed_total{kind=\"syscall\"}",
        ),
    })
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(ticks / hz)
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} missing from /proc/{pid}/status"))
}

/// Proportional set size (`Pss` in `smaps_rollup`): memory the agent really holds, with the ring
/// buffer's data pages (mapped twice for wrap-around) counted once.
fn pss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("Pss missing from /proc/{pid}/smaps_rollup"))
}

fn start_agent(ring_bytes: u32, attach: &str, wait_for: &[&Container]) -> Result<Agent> {
    let ring = ring_bytes.to_string();
    let mut agent = Agent::start(&[
        ("BRAINBOX_SENSOR__RING_BUFFER_BYTES", ring.as_str()),
        ("BRAINBOX_SENSOR__ATTACH", attach),
        ("BRAINBOX_SENSOR__STATS_INTERVAL_SECS", "1"),
        ("BRAINBOX_LOG__LEVEL", "warn,brainbox_node_agent=info"),
    ])?;
    for c in wait_for {
        agent.wait_watching(&c.id)?;
    }
    Ok(agent)
}

/// Sensor syscall programs loaded right now (`sys_enter_openat` or the raw `sys_enter` one; any
/// sensor instance, ours or another agent's on this machine): a "no agent" baseline is only one
/// if this is 0.
fn openat_programs() -> usize {
    std::process::Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("name sys_enter_opena") || l.contains("name raw_sys_enter"))
                .count()
        })
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn throughput(o: &Opts, attach: &str, watched: &Container) -> Result<Value> {
    let ring_bytes = o.ring_mib * 1024 * 1024;
    // Baseline: what the same generator settings reach with no sensor attached at all.
    let base = load(watched, (o.ops / 5).max(1), o.threads, Some(o.rate))?;
    let base_rate = base["ops_per_sec"].as_f64().unwrap_or(0.0);
    let agent = start_agent(ring_bytes, attach, &[watched])?;
    let addr = agent.metrics_addr()?;
    let pid = agent.pid();
    // Let start-up work (rule compilation, the initial /proc scan) finish before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let before = counters(&addr)?;
    let cpu0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    let gen = load(watched, o.ops, o.threads, Some(o.rate))?;
    let load_secs = t0.elapsed().as_secs_f64();
    let cpu_load = cpu_secs(pid)? - cpu0;
    // Wait until user space has read and evaluated everything the kernel emitted (or 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = counters(&addr)?;
    while (after.processed < after.kernel_events || after.read < after.kernel_events)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        after = counters(&addr)?;
    }
    let drain_secs = t0.elapsed().as_secs_f64();
    let cpu_total = cpu_secs(pid)? - cpu0;
    let generated = gen["ops"].as_u64().unwrap_or(0);
    let kernel = after.kernel_events - before.kernel_events;
    let drops = after.kernel_drops - before.kernel_drops;
    let read = after.read - before.read;
    let processed = after.processed - before.processed;
    let openat = after.kernel_openat - before.kernel_openat;
    let openat_drops = after.kernel_openat_drops - before.kernel_openat_drops;
    let hwm = status_kib(pid, "VmHWM")?;
    let rss_anon = status_kib(pid, "RssAnon")?;
    let rss_file = status_kib(pid, "RssFile")?;
    let rss_shmem = status_kib(pid, "RssShmem")?;
    let pss = pss_kib(pid)?;
    let achieved = gen["ops_per_sec"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "ring_buffer_bytes": ring_bytes,
        "target_rate_ops_per_sec": o.rate,
        "generator_threads": o.threads,
        "generated_openat": generated,
        "generator_elapsed_secs": gen["elapsed_secs"],
        "achieved_rate_ops_per_sec": achieved,
        "baseline_no_agent_rate_ops_per_sec": base_rate,
        "achieved_over_baseline_ratio": if base_rate > 0.0 { achieved / base_rate } else { 0.0 },
        "kernel_openat_events": openat,
        "kernel_openat_drops": openat_drops,
        "kernel_syscall_events": kernel,
        "kernel_syscall_drops": drops,
        "user_events_read": read,
        "user_events_processed": processed,
        // The container's other opens (docker exec, the generator creating its file) are
        // watched too, so the kernel may count a few more than were generated, never fewer.
        "kernel_openat_minus_generated": openat - generated as f64,
        "read_over_kernel_ratio": if kernel > 0.0 { read / kernel } else { 0.0 },
        "load_wall_secs": load_secs,
        "drain_wall_secs": drain_secs,
        "agent_cpu_secs_during_load": cpu_load,
        "agent_cpu_secs_until_drained": cpu_total,
        "agent_cpu_cores_during_load": cpu_load / load_secs,
        "agent_cpu_us_per_event": if processed > 0.0 { cpu_total * 1e6 / processed } else { 0.0 },
        "agent_peak_rss_mib": hwm as f64 / 1024.0,
        "agent_rss_anon_mib": rss_anon as f64 / 1024.0,
        "agent_rss_file_mib": rss_file as f64 / 1024.0,
        "agent_rss_shmem_mib": rss_shmem as f64 / 1024.0,
        "agent_pss_mib": pss as f64 / 1024.0,
        "goal_rate_met": achieved >= 300_000.0,
        "goal_zero_drops_met": drops == 0.0 && read >= kernel && openat >= generated as f64,
        "goal_rss_48mib_met": hwm <= 48 * 1024,
    }))
}

fn overhead(o: &Opts, watched: &Container, unwatched: &Container) -> Result<Value> {
    let mut off = vec![];
    let modes = o.attach.len();
    let mut on = vec![vec![]; modes];
    let mut other = vec![vec![]; modes];
    let mut foreign = vec![];
    let run = |c: &Container| -> Result<f64> {
        load(c, o.loop_ops, 1, None)?["ops_per_sec"]
            .as_f64()
            .context("ops_per_sec")
    };
    // Warm up caches and the generator's pages once, unmeasured.
    run(watched)?;
    for round in 0..o.rounds {
        // Alternate the order so drift (other load on the machine) hits both sides alike.
        let agent_first = round % 2 == 1;
        if !agent_first {
            foreign.push(openat_programs());
            off.push(run(watched)?);
        }
        // Modes in a rotating order too.
        for k in 0..modes {
            let m = (k + round) % modes;
            let agent = start_agent(o.ring_mib * 1024 * 1024, &o.attach[m], &[watched])?;
            on[m].push(run(watched)?);
            other[m].push(run(unwatched)?);
            drop(agent);
        }
        if agent_first {
            foreign.push(openat_programs());
            off.push(run(watched)?);
        }
        let per_mode: Vec<String> = (0..modes)
            .map(|m| {
                format!(
                    "{}: watched {:.0}/s, unwatched {:.0}/s",
                    o.attach[m], on[m][round], other[m][round]
                )
            })
            .collect();
        eprintln!(
            "round {}: no agent {:.0}/s; {}",
            round + 1,
            off[round],
            per_mode.join("; ")
        );
    }
    let m_off = median(&mut off.clone());
    let mut result = json!({
        "ops_per_run": o.loop_ops,
        "rounds": o.rounds,
        // Other sensors (other agents on this machine) attached during each no-agent run.
        "foreign_sensor_programs_during_baseline": foreign,
        "no_agent_ops_per_sec": off,
        "median_no_agent_ops_per_sec": m_off,
    });
    for m in 0..modes {
        let m_on = median(&mut on[m].clone());
        let m_other = median(&mut other[m].clone());
        result[o.attach[m].as_str()] = json!({
            "agent_watched_ops_per_sec": on[m],
            "agent_unwatched_ops_per_sec": other[m],
            "median_agent_watched_ops_per_sec": m_on,
            "median_agent_unwatched_ops_per_sec": m_other,
            "watched_over_baseline_ratio": m_on / m_off,
            "watched_slowdown_pct": (1.0 - m_on / m_off) * 100.0,
            "unwatched_over_baseline_ratio": m_other / m_off,
            "unwatched_slowdown_pct": (1.0 - m_other / m_off) * 100.0,
            "goal_3pct_watched_met": m_on / m_off >= 0.97,
            "goal_3pct_unwatched_met": m_other / m_off >= 0.97,
        });
    }
    Ok(result)
}

fn main() -> Result<()> {
    let o = parse()?;
    require::lab();
    let watched = container(&unique("bench-watched"), true)?;
    let unwatched = container(&unique("bench-unwatched"), false)?;
    let started = Instant::now();
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let over = overhead(&o, &watched, &unwatched)?;
    let mut thr = json!({});
    for mode in &o.attach {
        thr[mode.as_str()] = throughput(&o, mode, &watched)?;
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let result = json!({
        "bench": "sensor",
        "host_cpus": cpus,
        "host_loadavg_at_start": load_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "host_loadavg_at_end": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "attach_modes": o.attach,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "wall_secs": started.elapsed().as_secs_f64(),
        "throughput": thr,
        "overhead": over,
    });
    if let Some(dir) = std::path::Path::new(&o.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

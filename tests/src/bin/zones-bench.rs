//! `zones-bench`: the cost of zone enforcement, measured in one run against a baseline.
//!
//! Two identical client/server container pairs on the Docker bridge; the agent enforces zones on
//! one pair only (client: a brainbox sidecar, `untrusted`; server: `internal`, port 8080, an
//! allowed flow). Rounds alternate enforced/unenforced; medians and ratios are written to
//! `bench/results/zones.json`. Usage: `zones-bench [ROUNDS] [SECONDS]` (as root).

use anyhow::{bail, Context, Result};
use brainbox_lab::zones::{LabContainer, ZoneLab};
use serde_json::json;

fn run(c: &LabContainer, args: &[&str]) -> Result<f64> {
    let (ok, out) = c.probe(args);
    if !ok {
        bail!("{args:?} in {}: {out}", c.c.name);
    }
    out.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unexpected probe output: {out}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let secs: String = args.get(1).cloned().unwrap_or_else(|| "3".into());
    if !nix::unistd::geteuid().is_root() {
        bail!("zones-bench needs root (eBPF, Docker)");
    }
    let mut lab = ZoneLab::start()?;
    let srv_e = lab.run(
        "bench-srv",
        "orchestrator",
        None,
        None,
        "/probe/zones-probe serve 8080",
    )?;
    let (cli_e, _agent) = lab.pod("bench-cli")?;
    let srv_u = lab.run_unenforced(
        "bench-srv-u",
        "orchestrator",
        "/probe/zones-probe serve 8080",
    )?;
    let cli_u = lab.run_unenforced("bench-cli-u", "default", "sleep 86400")?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Warm up both paths once.
    run(&cli_e, &["bench-connect", &srv_e.ip, "8080", "0.5"])?;
    run(&cli_u, &["bench-connect", &srv_u.ip, "8080", "0.5"])?;

    let (mut ce, mut cu, mut be, mut bu) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        // Alternate which side goes first so drift on a shared machine hits both alike.
        let order: [bool; 2] = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for enforced in order {
            let (cli, srv, c, b) = if enforced {
                (&cli_e, &srv_e, &mut ce, &mut be)
            } else {
                (&cli_u, &srv_u, &mut cu, &mut bu)
            };
            c.push(run(cli, &["bench-connect", &srv.ip, "8080", &secs])?);
            b.push(run(cli, &["bench-bulk", &srv.ip, "8080", &secs])?);
        }
        eprintln!(
            "round {}: connect/s enforced {:.0} unenforced {:.0}; bulk MB/s enforced {:.0} unenforced {:.0}",
            r + 1,
            ce[r],
            cu[r],
            be[r] / 1e6,
            bu[r] / 1e6
        );
    }
    let (mce, mcu, mbe, mbu) = (
        median(&mut ce.clone()),
        median(&mut cu.clone()),
        median(&mut be.clone()),
        median(&mut bu.clone()),
    );
    // Cost per program run, measured by the kernel (BPF_ENABLE_STATS, on only for this phase so
    // the rounds above ran without its timing overhead).
    let per_run = {
        let _stats =
            aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
        run(&cli_e, &["bench-connect", &srv_e.ip, "8080", &secs])?;
        run(&cli_e, &["bench-bulk", &srv_e.ip, "8080", &secs])?;
        let mut m = serde_json::Map::new();
        for hook in ["connect4", "sendmsg4", "egress", "ingress"] {
            let path = lab.pin_dir.join("progs").join(hook);
            let out = std::process::Command::new("bpftool")
                .args(["-j", "prog", "show", "pinned"])
                .arg(&path)
                .output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let (ns, cnt) = (
                v["run_time_ns"].as_f64().unwrap_or(0.0),
                v["run_cnt"].as_f64().unwrap_or(0.0),
            );
            m.insert(
                hook.into(),
                json!({"runs": cnt, "avg_ns": if cnt > 0.0 { ns / cnt } else { 0.0 }}),
            );
        }
        serde_json::Value::Object(m)
    };
    let decisions = {
        let addr = lab.agent().metrics_addr()?;
        let body = brainbox_lab::agent::http_get(&addr, "/metrics")?;
        body.lines()
            .filter(|l| {
                l.starts_with("brainbox_zones_decisions_total") && l.contains("\"allowed\"")
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let result = json!({
        "benchmark": "zones",
        "what": "TCP between two lab containers on the Docker bridge, with zone enforcement (cgroup connect4/sendmsg4 + skb egress/ingress on both ends) vs an identical unenforced pair, same run",
        "rounds": rounds,
        "seconds_per_run": secs.parse::<f64>().unwrap_or(0.0),
        "tcp_connect_per_sec": {
            "enforced_median": mce, "unenforced_median": mcu, "ratio": mce / mcu,
            "enforced": ce, "unenforced": cu,
        },
        "bulk_bytes_per_sec": {
            "enforced_median": mbe, "unenforced_median": mbu, "ratio": mbe / mbu,
            "enforced": be, "unenforced": bu,
        },
        "goal_ratio": 0.97,
        "program_cost_per_run": per_run,
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "kernel_allowed_counters": decisions,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    let out = brainbox_lab::workspace_root().join("bench/results/zones.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("cost per program run: {per_run}");
    println!(
        "connect/s: enforced {mce:.0}, unenforced {mcu:.0}, ratio {:.3}\nbulk MB/s: enforced {:.0}, unenforced {:.0}, ratio {:.3}\nwritten to {}",
        mce / mcu,
        mbe / 1e6,
        mbu / 1e6,
        mbe / mbu,
        out.display()
    );
    Ok(())
}

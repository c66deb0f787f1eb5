//! `brainbox-record-events OUT.jsonl [--rounds N]`: records a real event stream for the rules
//! benchmark. Starts the node agent (real eBPF) and a lab pod, drives a realistic mix in the
//! pod's agent container — rounds of ordinary agent work (files, archives, processes, local
//! network) with the detection tests' attacks interleaved every few rounds — and writes the
//! events the agent reported for that container (its `events.output` lines; alerts left out) to
//! OUT. Needs root, Docker and the lab images, like the e2e tests; removes its containers.
//!
//! `bench/rules/record.sh` runs it and compresses the result into `bench/rules/`.

use anyhow::{bail, Context, Result};
use brainbox_lab::{
    agent::Agent,
    docker::Container,
    pod::{Pod, PodSpec, ATTACK_TOOL},
    require, unique,
};
use std::{io::Write, time::Duration};

/// Ordinary work of a coding agent, in BusyBox: edit files, run tools, archive, look around,
/// talk to a local service.
const BENIGN: &str = "set -e; mkdir -p /tmp/work/src; cd /tmp/work; \
    for i in 1 2 3 4 5 6 7 8; do echo \"def f$i(): return $i\" >> src/mod$i.py; done; \
    cat src/*.py | wc -l; grep -rn 'return' src | head -3; sort -r src/mod1.py > sorted.txt; \
    cp sorted.txt copy.txt; mv copy.txt moved.txt; rm moved.txt; ls -la src; find . -name '*.py' | wc -l; \
    sha256sum src/*.py > sums.txt; gzip -kf sums.txt; tar -cf /tmp/work.tar src; tar -tf /tmp/work.tar | wc -l; \
    ps; date; id; env | wc -l; uname -a; cat /etc/hostname >/dev/null; head -c 512 /dev/urandom | od | tail -1; \
    echo done >> /var/log/app.log; (nc -w 1 127.0.0.1 15001 </dev/null || true); \
    (wget -q -T 1 -O /dev/null http://127.0.0.1:15001/ || true); rm -rf /tmp/work /tmp/work.tar";

fn exec(c: &Container, opts: &[&str], cmd: &[&str]) {
    // Attacks may fail (often the point); the recording is what matters.
    let _ = c.exec_with(opts, cmd);
}

/// The detection e2e test's attacks (tests/tests/detect_e2e.rs), one of each.
fn attacks(c: &Container, round: usize) {
    exec(c, &["-t"], &["sh", "-c", "sleep 0.2"]);
    exec(c, &["-u", "0"], &["cat", "/etc/shadow"]);
    exec(c, &[], &["grep", "-r", "aws_secret_access_key", "/tmp"]);
    exec(c, &[], &["sh", "-c", "/dev/shm/payload"]);
    exec(
        c,
        &[],
        &["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"],
    );
    exec(
        c,
        &[],
        &[
            "sh",
            "-c",
            "echo x > /var/log/app.log; : > /var/log/app.log",
        ],
    );
    exec(c, &[], &["grep", "-r", "BEGIN RSA PRIVATE", "/tmp"]);
    exec(
        c,
        &[],
        &["sh", "-c", "echo data > /tmp/data; shred /tmp/data"],
    );
    let link = format!("/tmp/shadow-link-{round}");
    let hard = format!("/tmp/shadow-hard-{round}");
    exec(c, &[], &["ln", "-s", "/etc/shadow", &link]);
    exec(c, &[], &["ln", "/etc/shadow", &hard]);
    exec(c, &[], &[ATTACK_TOOL, "packet-socket"]);
    exec(c, &[], &[ATTACK_TOOL, "ptrace-attach"]);
    exec(c, &[], &[ATTACK_TOOL, "ptrace-traceme"]);
    let fileless = format!("{ATTACK_TOOL} memfd-exec; true");
    exec(c, &[], &["sh", "-c", &fileless]);
    exec(
        c,
        &["-u", "0"],
        &["cp", "/bin/busybox", "/home/agent/dropped"],
    );
    exec(c, &[], &["/home/agent/dropped", "true"]);
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .context("usage: brainbox-record-events OUT.jsonl [--rounds N]")?;
    let mut rounds = 12usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(rounds),
            other => bail!("unknown argument {other}"),
        }
    }
    require::lab();
    // Every watched syscall, not only execs: the stream the rules see.
    let mut agent = Agent::start(&[("BRAINBOX_EVENTS__SYSCALLS", "true")])?;
    let name = unique("rec");
    let mut spec = PodSpec::new(&name);
    // Alert-only, writable, with the attack tool: the default profile would recycle the
    // container at the first critical alert.
    spec.profile = Some("observe");
    spec.read_only = false;
    spec.attack_tool = true;
    let pod = Pod::start(&spec)?;
    agent.wait_watching(&pod.agent.id)?;
    for round in 0..rounds {
        let o = pod.agent.exec(&["sh", "-c", BENIGN])?;
        if !o.status.success() {
            bail!(
                "benign workload failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        // Attacks are rare in a real stream: every fourth round.
        if round % 4 == 3 {
            attacks(&pod.agent, round);
        }
        eprintln!("round {}/{rounds}", round + 1);
    }
    // Everything before the marker has been reported once the marker is.
    let marker = unique("/tmp/record-done");
    let _ = pod.agent.exec(&["cat", &marker])?;
    agent.wait_event(
        |e| e["process"]["argv"][1] == marker.as_str(),
        Duration::from_secs(120),
    )?;
    let text = std::fs::read_to_string(agent.events_path())?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut n = 0usize;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_event = matches!(v["type"].as_str(), Some("exec" | "syscall"));
        if is_event && v["container"]["id"] == pod.agent.id.as_str() {
            writeln!(f, "{line}")?;
            n += 1;
        }
    }
    f.flush()?;
    let alerts = text
        .lines()
        .filter(|l| l.contains("\"type\":\"alert\""))
        .count();
    eprintln!("recorded {n} events ({alerts} alerts raised live) to {out}");
    Ok(())
}

//! `safemode-demo`: the dead-man switch, live, for the demo (scripts/demo.d/65-safemode.sh).
//! A private `nats-server -js`, a zone lab whose profile wants a check-in every 5 s, a brainbox
//! pod and an orchestrator. The operator checks in, then goes quiet: the node closes every
//! brainbox's egress (loopback stays), says so, and the next check-in reopens it. Then a
//! reverse shell in another pod fires a rule mapped to `isolate`. Cleans up after itself.

use anyhow::{bail, Context, Result};
use brainbox_lab::zones::{short_dead_man, ZoneLab, PROXY_PORT};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const INTERVAL: u64 = 5;
const NODE: &str = "demo-node";

/// The server and its JetStream store (removed when dropped, after the server stops).
struct Nats {
    child: Child,
    _store: tempfile::TempDir,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats() -> Result<(Nats, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server (scripts/setup.sh installs it)")?;
    let url = format!("nats://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("nats-server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((Nats { child, _store: dir }, url))
}

fn ctl(url: &str, args: &[&str]) -> Result<String> {
    match brainbox_lab::ctl(url, "demo-operator", args) {
        (true, text) => Ok(text),
        (false, text) => bail!("brainboxctl {args:?}: {text}"),
    }
}

fn safe_mode(lab: &mut ZoneLab) -> Option<i64> {
    lab.agent().metric("brainbox_safe_mode")
}

fn show(what: &str, r: (bool, String)) {
    // ECONNREFUSED means the packets got through and nothing listens there: not a denial.
    let verdict = if r.0 {
        "\x1b[32mconnected\x1b[0m"
    } else if r.1.contains("ECONNREFUSED") {
        return println!(
            "  {what:<46} \x1b[32mreachable\x1b[0m (nothing listens there: RST, not EPERM)"
        );
    } else {
        "\x1b[31mrefused\x1b[0m  "
    };
    let why = if r.0 {
        String::new()
    } else {
        format!("  ({})", r.1)
    };
    println!("  {what:<46} {verdict}{why}");
}

fn main() -> Result<()> {
    let (_nats, url) = nats()?;
    let env = vec![
        ("BRAINBOX_ALERTS__ENABLED".to_string(), "true".to_string()),
        ("BRAINBOX_ALERTS__NATS_URL".to_string(), url.clone()),
        ("BRAINBOX_ALERTS__SAFETY_TICK_MS".to_string(), "250".into()),
        ("BRAINBOX_RULES__ENABLED".to_string(), "true".to_string()),
        ("BRAINBOX_NODE_NAME".to_string(), NODE.to_string()),
    ];
    // No check-in before the lab starts: a stored check-in counts from its own time, and the
    // setup takes most of the short interval. The agent's start-up grace covers it.
    let mut lab = ZoneLab::start_with(env, |d| {
        short_dead_man(d, INTERVAL, "close_egress")?;
        // The second pod's profile isolates on a reverse shell instead of recycling.
        let p = d.join("default.yaml");
        let text = std::fs::read_to_string(&p)?;
        std::fs::write(
            &p,
            text.replace("    action: recycle", "    action: isolate")
                .replace(
                    "priority_at_least: critical",
                    "rules: [\"Netcat Remote Code Execution in Container\"]",
                ),
        )?;
        Ok(())
    })?;
    // Sidecars without `nc -e` listeners (they would fire the rule themselves).
    let (side, agent) = lab.pod_with("sm", "sleep 86400")?;
    let orch = lab.service("orch", "orchestrator", 8080, "orch")?;
    let proxy = PROXY_PORT.to_string();

    println!("profile `default`: safety.checkin_interval_secs = {INTERVAL}, action = close_egress, lift = checkin");
    println!("$ brainboxctl checkin");
    ctl(&url, &["checkin"])?;
    show(
        "sidecar -> orchestrator:8080",
        side.probe(&["tcp", &orch.ip, "8080", "demo"]),
    );
    println!("… the operator goes quiet for {INTERVAL} s …");
    let start = Instant::now();
    while safe_mode(&mut lab) != Some(1) {
        if start.elapsed() > Duration::from_secs(INTERVAL * 4) {
            bail!("safe mode was not entered");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "\x1b[1;31mSAFE MODE\x1b[0m after {:.1} s (brainbox_safe_mode 1)",
        start.elapsed().as_secs_f64()
    );
    if let Some(l) = lab
        .agent()
        .logs()
        .iter()
        .find(|l| l["message"] == "ENTERING SAFE MODE")
    {
        println!("  agent log: {l}");
    }
    show(
        "sidecar -> orchestrator:8080",
        side.probe(&["tcp", &orch.ip, "8080", "demo"]),
    );
    show(
        "agent   -> its sidecar 127.0.0.1:15001 (loopback)",
        agent.probe(&["tcp", "127.0.0.1", &proxy, "demo"]),
    );
    println!("$ brainboxctl safe-mode status");
    print!("{}", ctl(&url, &["safe-mode", "status"])?);
    println!("$ brainboxctl checkin");
    ctl(&url, &["checkin"])?;
    let start = Instant::now();
    while safe_mode(&mut lab) != Some(0) {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("safe mode was not lifted");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("safe mode lifted by the check-in");
    show(
        "sidecar -> orchestrator:8080",
        side.probe(&["tcp", &orch.ip, "8080", "demo"]),
    );

    println!("\nA reverse shell in the pod fires a rule the profile maps to `isolate`:");
    println!("$ docker exec sm-agent nc -w 1 127.0.0.1 1 -e /bin/sh");
    let _ = agent
        .c
        .exec(&["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"]);
    let start = Instant::now();
    let report = loop {
        if let Some(r) = lab
            .agent()
            .events()
            .into_iter()
            .find(|e| e["type"] == "response" && e["action"] == "isolate")
        {
            break r;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no isolate response");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for s in report["steps"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} {:<4} {:>5} ms",
            s["step"].as_str().unwrap_or(""),
            if s["ok"] == true { "ok" } else { "FAIL" },
            s["ms"]
        );
    }
    show(
        "sidecar -> orchestrator:8080 (pod isolated)",
        side.probe(&["tcp", &orch.ip, "8080", "demo"]),
    );
    let (alive, _) = agent.sh("true");
    println!(
        "  the agent container keeps running under observation: {}",
        if alive { "yes" } else { "no" }
    );

    println!(
        "\nThe operator reads the evidence, judges it a false positive, and lifts the isolation:"
    );
    println!("$ brainboxctl isolation list --node {NODE}");
    print!(
        "{}",
        indent(&ctl(&url, &["isolation", "list", "--node", NODE])?)
    );
    let short: String = agent.c.id.chars().take(12).collect();
    println!(
        "$ brainboxctl isolation release {short} --node {NODE} --reason \"demo: false positive\""
    );
    print!(
        "{}",
        indent(&ctl(
            &url,
            &[
                "isolation",
                "release",
                &short,
                "--node",
                NODE,
                "--reason",
                "demo: false positive"
            ],
        )?)
    );
    show(
        "sidecar -> orchestrator:8080 (released)",
        side.probe(&["tcp", &orch.ip, "8080", "demo"]),
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

//! Running the real node agent binary and reading what it reports: events as JSON lines in a
//! file, logs as JSON lines on stderr (also captured to a file).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running node agent, killed on drop.
pub struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `brainbox-node-agent run` with events and logs in a temp dir, plus `env` overrides,
    /// and waits until it reports ready.
    pub fn start(env: &[(&str, &str)]) -> Result<Agent> {
        Self::start_with_hosts(env, None)
    }

    /// [`Agent::start`], with `extra_hosts` lines added to the agent's view of `/etc/hosts`
    /// (its own mount namespace; the node's file is not touched), for rules on host names.
    pub fn start_with_hosts(env: &[(&str, &str)], extra_hosts: Option<&str>) -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let events = dir.path().join("events.jsonl");
        // Each agent gets its own Workload API socket, so parallel tests never share one.
        let workload = dir.path().join("workload");
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let agent_bin = crate::bin_path("brainbox-node-agent");
        let mut cmd = match extra_hosts {
            None => Command::new(&agent_bin),
            Some(lines) => {
                let hosts = dir.path().join("hosts");
                let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                text.push('\n');
                text.push_str(lines);
                text.push('\n');
                std::fs::write(&hosts, text)?;
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg("mount --bind \"$1\" /etc/hosts && exec \"$0\" \"$2\"")
                    .arg(&agent_bin)
                    .arg(&hosts);
                c
            }
        };
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BRAINBOX_EVENTS__OUTPUT", &events)
            .env("BRAINBOX_IDENTITY__SOCKET", workload.join("agent.sock"))
            .env("BRAINBOX_METRICS__LISTEN", "127.0.0.1:0")
            .env("BRAINBOX_LOG__LEVEL", "info")
            // Zones enforce on every watched container of the host; tests that want them turn
            // them on with their own pin directory and label (see `zones::ZoneLab`).
            .env("BRAINBOX_ZONES__ENABLED", "false")
            .env(
                "BRAINBOX_PROFILES_DIR",
                crate::workspace_root().join("profiles"),
            )
            .env("BRAINBOX_RULES__FILES", default_rule_files(&[]))
            .env(
                "BRAINBOX_RESPONSE__EVIDENCE_DIR",
                dir.path().join("evidence"),
            )
            .env("BRAINBOX_RESPONSE__AUDIT_LOG", dir.path().join("audit.log"))
            // Off unless a test turns it on with its own nats-server.
            .env("BRAINBOX_ALERTS__ENABLED", "false")
            .env("BRAINBOX_ALERTS__SPOOL_DIR", dir.path().join("spool"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Tests send traffic only to loopback and to what they start: the agent does not ask
        // the node's DNS servers for the names in rules, except in a lab with its own hosts
        // file (which answers them; `files` comes before `dns`).
        if extra_hosts.is_none() {
            cmd.env("BRAINBOX_RULES__DNS_REFRESH_SECS", "0");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting brainbox-node-agent")?;
        let mut agent = Agent { child, dir };
        agent.wait_log(|l| l["message"] == "agent ready", Duration::from_secs(120))?;
        Ok(agent)
    }

    /// The folder of the agent's Workload API socket (`agent.sock`), to mount into pods.
    pub fn workload_api_dir(&self) -> PathBuf {
        self.dir.path().join("workload")
    }

    /// The events file.
    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// The evidence store.
    pub fn evidence_dir(&self) -> PathBuf {
        self.dir.path().join("evidence")
    }

    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// All events reported so far.
    pub fn events(&self) -> Vec<Value> {
        read_json_lines(&self.events_path())
    }

    /// All log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        read_json_lines(&self.log_path())
    }

    /// Waits for a log line matching `pred`; fails early if the agent exits.
    pub fn wait_log(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Result<Value> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| pred(l)) {
                return Ok(l);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "brainbox-node-agent exited ({status}) before the expected log line; its log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "no matching log line from brainbox-node-agent within {timeout:?}; its log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the agent watches the container with this id.
    pub fn wait_watching(&mut self, container_id: &str) -> Result<()> {
        self.wait_log(
            |l| l["message"] == "watching container" && l["container_id"] == container_id,
            Duration::from_secs(90),
        )
        .map(|_| ())
    }

    /// Waits for an event matching `pred`.
    pub fn wait_event(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Ok(e);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("brainbox-node-agent exited ({status}) while waiting for an event");
            }
            if start.elapsed() > timeout {
                bail!(
                    "no matching event within {timeout:?}; events so far:\n{}",
                    std::fs::read_to_string(self.events_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The metrics endpoint address the agent bound (it listens on port 0 in tests).
    pub fn metrics_addr(&self) -> Result<String> {
        self.logs()
            .into_iter()
            .find(|l| l["message"] == "metrics endpoint up")
            .and_then(|l| l["listen"].as_str().map(str::to_owned))
            .context("the agent did not log its metrics address")
    }

    /// The value of an unlabelled metric (`name value` on `/metrics`), if the agent serves it.
    pub fn metric(&self, name: &str) -> Option<i64> {
        let text = http_get(&self.metrics_addr().ok()?, "/metrics").ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Sealed evidence is read-only and immutable; a plain remove would fail.
        let _ = brainbox_audit::evidence::remove_tree(&self.evidence_dir());
    }
}

/// The `rules.files` value (a TOML array) for the vendored upstream rules, our overrides, and
/// `extra` files after them.
pub fn default_rule_files(extra: &[&Path]) -> String {
    let root = crate::workspace_root();
    let mut files = vec![
        root.join("rules/falco/falco_rules.yaml"),
        root.join("profiles/rules/brainbox-overrides.yaml"),
    ];
    files.extend(extra.iter().map(|p| p.to_path_buf()));
    let quoted: Vec<String> = files
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!("[{}]", quoted.join(","))
}

/// Alerts reported so far (lines with `"type":"alert"`).
pub fn alerts_of(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "alert").collect()
}

/// Reads a JSON-lines file; lines that are not (yet) complete JSON are skipped.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Fetches `http://<addr><path>` with a minimal HTTP/1.0 client (loopback only).
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

//! The network zones lab: a node agent enforcing zones on this lab's containers only (a unique
//! label), brainbox pods whose commands start only once enforcement is observed from inside, an
//! internal and a control container, and a simulated outside host: a network namespace this
//! lab creates, with a veth and addresses in 198.18.0.0/15 (benchmarking space, never routed).
//!
//! Everything is removed on drop: containers first, then the agent, the bpffs pins, the netns.

use crate::{
    agent::Agent,
    docker::{docker, remove_containers, Container},
    images,
    pod::HARDENING,
    unique,
};
use anyhow::{bail, Context, Result};
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, UdpSocket},
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// The outside host's main address.
pub const OUTSIDE: &str = "198.18.77.1";
/// The outside resolver's address (the only one `proxy-egress-dns` allows).
pub const RESOLVER: &str = "198.18.77.53";
/// The host end of the veth.
pub const OUTSIDE_GW: &str = "198.18.77.254";
/// TCP ports the outside host listens on.
pub const OUTSIDE_TCP: &[u16] = &[80, 443, 22, 8080];
/// UDP ports the outside host listens on.
pub const OUTSIDE_UDP: &[u16] = &[53, 5353];
/// The sidecar's proxy port (profiles/zones.yaml `in_pod.proxy_port`).
pub const PROXY_PORT: u16 = 15001;
/// Where the probe is mounted in lab containers.
pub const PROBE: &str = "/probe/zones-probe";

/// Serializes the zones lab tests of one process: they share the outside range.
pub static LAB_LOCK: Mutex<()> = Mutex::new(());

fn sh(cmd: &[&str]) -> Result<String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The simulated outside host: a netns with a veth to the host, TCP/UDP listeners and an ICMP
/// recorder, all run by this process. Every payload it receives is recorded.
pub struct Outside {
    /// netns name.
    pub ns: String,
    host_if: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Outside {
    /// Creates the namespace and starts listening.
    pub fn start() -> Result<Outside> {
        let id = unique("z");
        let suffix = &id[id.len() - 6..];
        let ns = format!("bbz-out-{suffix}");
        let host_if = format!("bbzh{suffix}");
        let peer_if = format!("bbzo{suffix}");
        // Leftovers of a killed run would hold the addresses.
        cleanup_stale_outside();
        sh(&["ip", "netns", "add", &ns])?;
        let mut o = Outside {
            ns: ns.clone(),
            host_if: host_if.clone(),
            seen: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ])?;
        sh(&["ip", "link", "set", &peer_if, "netns", &ns])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{OUTSIDE_GW}/24"),
            "dev",
            &host_if,
        ])?;
        sh(&["ip", "link", "set", &host_if, "up"])?;
        let inns = |args: &[&str]| -> Result<String> {
            let mut v = vec!["ip", "netns", "exec", ns.as_str()];
            v.extend_from_slice(args);
            sh(&v)
        };
        inns(&["ip", "link", "set", "lo", "up"])?;
        inns(&[
            "ip",
            "addr",
            "add",
            &format!("{OUTSIDE}/24"),
            "dev",
            &peer_if,
        ])?;
        inns(&[
            "ip",
            "addr",
            "add",
            &format!("{RESOLVER}/24"),
            "dev",
            &peer_if,
        ])?;
        inns(&["ip", "link", "set", &peer_if, "up"])?;
        inns(&["ip", "route", "add", "default", "via", OUTSIDE_GW])?;
        let nsfile = std::fs::File::open(format!("/run/netns/{ns}"))?;
        for &port in OUTSIDE_TCP {
            o.spawn_in_ns(&nsfile, move |seen, stop| {
                let l = TcpListener::bind(("0.0.0.0", port)).expect("bind outside tcp");
                l.set_nonblocking(true).expect("nonblocking");
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 512];
                            let n = s.read(&mut buf).unwrap_or(0);
                            seen.lock().unwrap().push(format!(
                                "tcp/{port} {}",
                                String::from_utf8_lossy(&buf[..n]).trim()
                            ));
                            let _ = s.write_all(format!("outside:{port}\n").as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        }
        for &port in OUTSIDE_UDP {
            o.spawn_in_ns(&nsfile, move |seen, stop| {
                let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind outside udp");
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        seen.lock()
                            .unwrap()
                            .push(format!("udp/{port} {}", String::from_utf8_lossy(&buf[..n])));
                        let _ = s.send_to(b"outside-udp", from);
                    }
                }
            })?;
        }
        // Echo requests are answered by the kernel; a raw socket records their payloads.
        o.spawn_in_ns(&nsfile, move |seen, stop| {
            let fd = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Raw,
                nix::sys::socket::SockFlag::SOCK_NONBLOCK,
                nix::sys::socket::SockProtocol::Icmp,
            )
            .expect("raw icmp socket");
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf) {
                    Ok(n) => seen
                        .lock()
                        .unwrap()
                        .push(format!("icmp {}", String::from_utf8_lossy(&buf[..n]))),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        // Wait until every listener is up.
        std::thread::sleep(Duration::from_millis(200));
        Ok(o)
    }

    fn spawn_in_ns(
        &mut self,
        nsfile: &std::fs::File,
        f: impl FnOnce(Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) + Send + 'static,
    ) -> Result<()> {
        let fd = nsfile.as_fd().try_clone_to_owned()?;
        let (seen, stop) = (self.seen.clone(), self.stop.clone());
        self.threads.push(std::thread::spawn(move || {
            // setns changes only this thread; sockets it creates belong to the outside netns.
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns outside");
            f(seen, stop)
        }));
        Ok(())
    }

    /// True if the outside host received a payload containing `marker`.
    pub fn saw(&self, marker: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|s| s.contains(marker))
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = sh(&["ip", "link", "del", &self.host_if]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

/// Removes outside namespaces and veths a killed run left behind.
pub fn cleanup_stale_outside() {
    if let Ok(list) = sh(&["ip", "-o", "link", "show"]) {
        for l in list.lines() {
            if let Some(name) = l.split(':').nth(1).map(str::trim) {
                let name = name.split('@').next().unwrap_or(name);
                if name.starts_with("bbzh") {
                    let _ = sh(&["ip", "link", "del", name]);
                }
            }
        }
    }
    if let Ok(list) = sh(&["ip", "netns", "list"]) {
        for l in list.lines() {
            if let Some(name) = l.split_whitespace().next() {
                if name.starts_with("bbz-out-") {
                    let _ = sh(&["ip", "netns", "del", name]);
                }
            }
        }
    }
}

/// A lab container with its zone metadata.
pub struct LabContainer {
    /// The container.
    pub c: Container,
    /// Its address on the Docker bridge (the pod's, for pod members).
    pub ip: String,
}

impl LabContainer {
    /// Runs the probe in the container; returns (worked, output line).
    pub fn probe(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = vec![PROBE];
        cmd.extend_from_slice(args);
        match self.c.exec(&cmd) {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout).trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ),
            Err(e) => (false, format!("docker exec failed: {e}")),
        }
    }

    /// Runs a shell command; returns (exit ok, stdout+stderr).
    pub fn sh(&self, script: &str) -> (bool, String) {
        match self.c.exec(&["sh", "-c", script]) {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout).trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ),
            Err(e) => (false, format!("docker exec failed: {e}")),
        }
    }

    /// The container's cgroup v2 directory on the host.
    pub fn cgroup_dir(&self) -> Result<PathBuf> {
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &self.c.id])?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("no cgroup v2 entry")?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mount = mounts
            .lines()
            .find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                post.starts_with("cgroup2 ")
                    .then(|| pre.split_whitespace().nth(4).map(str::to_owned))?
            })
            .context("no cgroup2 mount")?;
        Ok(Path::new(&mount).join(rel.trim().trim_start_matches('/')))
    }
}

/// A zones lab: its own profiles folder, its own bpffs pin directory, a node agent enforcing
/// zones only on containers carrying this lab's label.
pub struct ZoneLab {
    /// Unique id (label value, names).
    pub id: String,
    /// The node agent (None while a test has it stopped).
    pub agent: Option<Agent>,
    /// bpffs pin directory.
    pub pin_dir: PathBuf,
    /// Profiles folder (a copy of the repo's `profiles/`).
    pub profiles: tempfile::TempDir,
    containers: Vec<String>,
    /// For each container started with [`ZoneLab::run`]: container start → programs attached.
    pub attach_delays: Vec<Duration>,
    /// More agent environment (a test's own settings, e.g. alerts on).
    pub extra_env: Vec<(String, String)>,
}

/// Label key carrying the lab id.
pub const ZLAB_LABEL: &str = "brainbox.io/zones-lab";

impl ZoneLab {
    /// Copies the profiles, and starts an agent enforcing zones on this lab's containers.
    pub fn start() -> Result<ZoneLab> {
        Self::start_with(vec![], |_| Ok(()))
    }

    /// Like [`ZoneLab::start`], with more agent environment and a chance to edit the copied
    /// profiles before the agent reads them.
    pub fn start_with(
        extra_env: Vec<(String, String)>,
        edit_profiles: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<ZoneLab> {
        let id = unique("zl");
        let profiles = tempfile::tempdir()?;
        for e in std::fs::read_dir(crate::workspace_root().join("profiles"))? {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::copy(e.path(), profiles.path().join(e.file_name()))?;
            }
        }
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/brainbox-test/{id}"));
        let mut lab = ZoneLab {
            id,
            agent: None,
            pin_dir,
            profiles,
            containers: Vec::new(),
            attach_delays: Vec::new(),
            extra_env,
        };
        edit_profiles(lab.profiles.path())?;
        lab.start_agent()?;
        Ok(lab)
    }

    /// The environment the lab's agent runs with.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("BRAINBOX_ZONES__ENABLED".into(), "true".into()),
            // The lab's containers run `nc -e` listeners and a bypass tool; detection rules (and
            // their responses) are other tests' business and would recycle them mid-test.
            ("BRAINBOX_RULES__ENABLED".into(), "false".into()),
            (
                "BRAINBOX_ZONES__PIN_DIR".into(),
                self.pin_dir.display().to_string(),
            ),
            (
                "BRAINBOX_ZONES__ONLY_LABEL".into(),
                format!("{ZLAB_LABEL}={}", self.id),
            ),
            (
                "BRAINBOX_PROFILES_DIR".into(),
                self.profiles.path().display().to_string(),
            ),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts (or restarts) the agent and waits until it is ready.
    pub fn start_agent(&mut self) -> Result<()> {
        let env = self.agent_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.agent = Some(Agent::start(&env)?);
        Ok(())
    }

    /// The running agent.
    pub fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("the lab's agent is running")
    }

    /// Starts a watched container and waits until the agent enforces on it.
    ///
    /// Fail-closed start: the container's command runs only after a connection to a port no
    /// policy allows fails with EPERM *from inside the container*, i.e. after the programs are
    /// attached. (Unattached, it would fail with ECONNREFUSED instead.)
    pub fn run(
        &mut self,
        name: &str,
        profile: &str,
        pod: Option<(&str, &str)>,
        join: Option<&LabContainer>,
        cmd: &str,
    ) -> Result<LabContainer> {
        self.run_in(None, name, profile, pod, join, cmd)
    }

    /// [`ZoneLab::run`], with kubelet's namespace label on the container when `namespace` is set.
    fn run_in(
        &mut self,
        namespace: Option<&str>,
        name: &str,
        profile: &str,
        pod: Option<(&str, &str)>,
        join: Option<&LabContainer>,
        cmd: &str,
    ) -> Result<LabContainer> {
        let image = images::agent_image()?;
        let probe = env!("ZONES_PROBE");
        let full = format!("{}-{name}", self.id);
        let mut args: Vec<String> = HARDENING.iter().map(|s| s.to_string()).collect();
        let mut label = |k: &str, v: &str| {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        };
        label(ZLAB_LABEL, &self.id);
        label(brainbox_profile_label(), profile);
        if let Some((pod, role)) = pod {
            label("brainbox.io/pod", pod);
            label("brainbox.io/role", role);
        }
        if let Some(ns) = namespace {
            label("io.kubernetes.pod.namespace", ns);
        }
        args.extend(
            [
                "--user",
                "1000:1000",
                "--tmpfs",
                "/tmp:size=16m",
                "--volume",
                &format!("{probe}:{PROBE}:ro"),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(j) = join {
            args.push("--network".into());
            args.push(format!("container:{}", j.c.id));
        }
        args.push(image);
        args.extend(
            [
                "sh",
                "-c",
                &format!(
                    "until nc -w 1 127.0.0.1 1 </dev/null 2>&1 | grep -q 'not permitted'; do sleep 0.02; done; echo enforced > /tmp/enforced; {cmd}"
                ),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = Container::run(&full, &argv)?;
        self.containers.push(c.id.clone());
        let id = c.id.clone();
        let line = self.agent().wait_log(
            |l| l["message"] == "zones enforcing container" && l["container_id"] == id.as_str(),
            Duration::from_secs(30),
        )?;
        // How long the container ran unconfined: from its start to the agent's attach.
        let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &c.id])?;
        if let (Ok(s), Some(Ok(e))) = (
            humantime::parse_rfc3339(&started),
            line["timestamp"].as_str().map(humantime::parse_rfc3339),
        ) {
            self.attach_delays
                .push(e.duration_since(s).unwrap_or_default());
        }
        let lc = LabContainer {
            ip: match join {
                Some(j) => j.ip.clone(),
                None => docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &c.id])?,
            },
            c,
        };
        // The command starts only once enforcement is visible from inside.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lc.sh("test -f /tmp/enforced").0 {
            if Instant::now() > deadline {
                bail!("{full}: enforcement never became visible inside the container");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(lc)
    }

    /// Starts a container exactly like [`ZoneLab::run`] but without this lab's label, so the
    /// agent does not enforce zones on it (the baseline of the benchmark).
    pub fn run_unenforced(&mut self, name: &str, profile: &str, cmd: &str) -> Result<LabContainer> {
        let image = images::agent_image()?;
        let probe = env!("ZONES_PROBE");
        let full = format!("{}-{name}", self.id);
        let mut args: Vec<String> = HARDENING.iter().map(|s| s.to_string()).collect();
        args.extend(
            [
                "--label",
                &format!("brainbox.io/profile={profile}"),
                "--user",
                "1000:1000",
                "--tmpfs",
                "/tmp:size=16m",
                "--volume",
                &format!("{probe}:{PROBE}:ro"),
                &image,
                "sh",
                "-c",
                cmd,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = Container::run(&full, &argv)?;
        self.containers.push(c.id.clone());
        let ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &c.id])?;
        Ok(LabContainer { c, ip })
    }

    /// A brainbox pod: a sidecar (proxy stand-in on the proxy port, admin on 9090) owning the
    /// netns, and an agent container joining it. Returns (sidecar, agent).
    pub fn pod(&mut self, name: &str) -> Result<(LabContainer, LabContainer)> {
        self.pod_with(
            name,
            &format!(
                "nc -ll -p {PROXY_PORT} -e echo proxy & nc -ll -p 9090 -e echo admin & nc -ll -p 9999 -e echo other & wait"
            ),
        )
    }

    /// A brainbox pod whose sidecar runs `sidecar_cmd`.
    pub fn pod_with(
        &mut self,
        name: &str,
        sidecar_cmd: &str,
    ) -> Result<(LabContainer, LabContainer)> {
        self.pod_in(None, name, sidecar_cmd)
    }

    /// [`ZoneLab::pod_with`] in a Kubernetes namespace (kubelet's namespace label): pods of one
    /// name in two namespaces are two pods.
    pub fn pod_in(
        &mut self,
        namespace: Option<&str>,
        name: &str,
        sidecar_cmd: &str,
    ) -> Result<(LabContainer, LabContainer)> {
        let prefix = match namespace {
            Some(ns) => format!("{ns}-{name}"),
            None => name.to_owned(),
        };
        let side = self.run_in(
            namespace,
            &format!("{prefix}-sidecar"),
            "default",
            Some((name, "sidecar")),
            None,
            sidecar_cmd,
        )?;
        let agent = self.run_in(
            namespace,
            &format!("{prefix}-agent"),
            "default",
            Some((name, "agent")),
            Some(&side),
            "sleep 86400",
        )?;
        Ok((side, agent))
    }

    /// A standalone watched container listening on `port` (answers `reply`).
    pub fn service(
        &mut self,
        name: &str,
        profile: &str,
        port: u16,
        reply: &str,
    ) -> Result<LabContainer> {
        self.run(
            name,
            profile,
            None,
            None,
            &format!("nc -ll -p {port} -e echo {reply}"),
        )
    }

    /// The agent's `net_deny` events.
    pub fn denials(&mut self) -> Vec<serde_json::Value> {
        self.agent()
            .events()
            .into_iter()
            .filter(|e| e["type"] == "net_deny")
            .collect()
    }

    /// Log lines with this message.
    pub fn logs_with(&mut self, message: &str) -> Vec<serde_json::Value> {
        self.agent()
            .logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// Number of programs attached directly to a cgroup (bpftool), by attach type.
    pub fn attached_programs(dir: &Path) -> Result<HashMap<String, usize>> {
        let out = sh(&["bpftool", "-j", "cgroup", "show", dir.to_str().unwrap()])?;
        let v: serde_json::Value = serde_json::from_str(if out.is_empty() { "[]" } else { &out })?;
        let mut m = HashMap::new();
        for p in v.as_array().cloned().unwrap_or_default() {
            *m.entry(p["attach_type"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
        Ok(m)
    }
}

fn brainbox_profile_label() -> &'static str {
    "brainbox.io/profile"
}

impl Drop for ZoneLab {
    fn drop(&mut self) {
        // Members of a pod first (they use the sidecar's namespace), one at a time, then
        // anything still carrying this lab's label (e.g. a container whose start failed).
        for id in self.containers.iter().rev() {
            remove_containers(&[id.as_str()]);
        }
        let filter = format!("label={ZLAB_LABEL}={}", self.id);
        for _ in 0..3 {
            let left = docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default();
            let ids: Vec<&str> = left.split_whitespace().collect();
            if ids.is_empty() {
                break;
            }
            for id in ids {
                remove_containers(&[id]);
            }
        }
        self.agent = None;
        // Unpinning the links and maps frees them (the containers' cgroups are gone already).
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        // The shared parent goes with the last lab (removing a non-empty folder fails).
        if let Some(parent) = self.pin_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Rewrites the lab's copy of `default.yaml` so its dead-man switch fires after `interval_secs`
/// without a check-in, with safe-mode `action` (`freeze` or `close_egress`). For
/// [`ZoneLab::start_with`].
pub fn short_dead_man(dir: &Path, interval_secs: u64, action: &str) -> Result<()> {
    let p = dir.join("default.yaml");
    let text = std::fs::read_to_string(&p)?;
    if !text.contains("checkin_interval_secs: 28800") || !text.contains("action: close_egress") {
        bail!("profiles/default.yaml no longer has the safety section this lab edits");
    }
    let text = text
        .replace(
            "checkin_interval_secs: 28800",
            &format!("checkin_interval_secs: {interval_secs}"),
        )
        .replace("action: close_egress", &format!("action: {action}"));
    std::fs::write(&p, text)?;
    Ok(())
}

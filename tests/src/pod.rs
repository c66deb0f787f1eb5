//! A brainbox "pod" in the lab: the sidecar container owns the network namespace and the agent
//! container joins it (`--network container:`), as containers of one Kubernetes pod do. Both run
//! with every capability dropped, a read-only root file system, no-new-privileges, as non-root,
//! with a tmpfs for secrets.

use crate::{
    docker::Container,
    images::{self, AGENT_UID},
};
use anyhow::Result;

/// Hardening flags every lab container gets.
pub const HARDENING: &[&str] = &[
    "--cap-drop",
    "ALL",
    "--read-only",
    "--security-opt",
    "no-new-privileges",
    "--pids-limit",
    "256",
];

/// A running pod. Dropping it removes both containers (agent first).
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// The untrusted agent container.
    pub agent: Container,
    /// The sidecar container (owns the network namespace).
    pub sidecar: Container,
}

/// How to start a pod.
pub struct PodSpec<'a> {
    /// Pod name (containers are `<name>-sidecar` and `<name>-agent`).
    pub name: &'a str,
    /// Profile label; `None` starts an unwatched pod.
    pub profile: Option<&'a str>,
    /// Command of the agent container.
    pub agent_cmd: &'a [&'a str],
    /// Read-only root file system for the agent container (default true; false gives it a
    /// writable layer, as many real images have).
    pub read_only: bool,
    /// Mount the static `brainbox-attack` tool at [`ATTACK_TOOL`] in the agent container.
    pub attack_tool: bool,
    /// Extra `docker run` arguments for the agent container (before the image).
    pub agent_args: Vec<String>,
    /// Extra `docker run` arguments for the sidecar container (before the image).
    pub sidecar_args: Vec<String>,
    /// The node agent's Workload API socket folder, mounted read-only into the sidecar at
    /// [`WORKLOAD_API_MOUNT`] with `SPIFFE_ENDPOINT_SOCKET` pointing at it (as a DaemonSet's
    /// hostPath would be); `None` leaves the sidecar without identity.
    pub workload_api_dir: Option<std::path::PathBuf>,
}

/// Where the attack tool is mounted inside the agent container.
pub const ATTACK_TOOL: &str = "/opt/brainbox/brainbox-attack";

/// Where pods see the Workload API socket folder.
pub const WORKLOAD_API_MOUNT: &str = "/run/brainbox/workload";

impl<'a> PodSpec<'a> {
    /// A watched pod with the `default` profile whose agent container idles.
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            profile: Some("default"),
            agent_cmd: &["sleep", "86400"],
            read_only: true,
            attack_tool: false,
            agent_args: vec![],
            sidecar_args: vec![],
            workload_api_dir: None,
        }
    }
}

/// Path of the static attack tool built for musl.
pub fn attack_tool_binary() -> std::path::PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    crate::target_dir()
        .join("x86_64-unknown-linux-musl")
        .join(profile)
        .join("brainbox-attack")
}

impl Pod {
    /// Starts the sidecar, then the agent container in its network namespace.
    pub fn start(spec: &PodSpec<'_>) -> Result<Pod> {
        let sidecar_image = images::sidecar_image()?;
        let agent_image = images::agent_image()?;
        let labels = |role: &str| -> Vec<String> {
            let mut v = vec![
                "--label".to_string(),
                format!("brainbox.io/pod={}", spec.name),
                "--label".to_string(),
                format!("brainbox.io/role={role}"),
            ];
            if let Some(p) = spec.profile {
                v.push("--label".into());
                v.push(format!("brainbox.io/profile={p}"));
            }
            v
        };
        let sidecar_name = format!("{}-sidecar", spec.name);
        let mut args: Vec<String> = HARDENING.iter().map(|s| s.to_string()).collect();
        args.extend(labels("sidecar"));
        if let Some(dir) = &spec.workload_api_dir {
            args.extend([
                "--volume".to_string(),
                format!("{}:{WORKLOAD_API_MOUNT}:ro", dir.display()),
                "--env".to_string(),
                format!("SPIFFE_ENDPOINT_SOCKET=unix://{WORKLOAD_API_MOUNT}/agent.sock"),
            ]);
        }
        args.extend(spec.sidecar_args.iter().cloned());
        args.extend(
            [
                "--user",
                "65532:65532",
                "--tmpfs",
                "/run/svid:size=1m,mode=0700,uid=65532",
                "--env",
                &format!("BRAINBOX_POD_NAME={}", spec.name),
                &sidecar_image,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let sidecar = Container::run(&sidecar_name, &argv)?;

        let agent_name = format!("{}-agent", spec.name);
        let net = format!("container:{}", sidecar.id);
        let user = format!("{AGENT_UID}:{AGENT_UID}");
        let tmpfs = format!("/run/secrets:size=1m,mode=0700,uid={AGENT_UID}");
        let mut args: Vec<String> = HARDENING
            .iter()
            .filter(|a| spec.read_only || **a != "--read-only")
            .map(|s| s.to_string())
            .collect();
        args.extend(labels("agent"));
        if spec.attack_tool {
            let tool = attack_tool_binary();
            anyhow::ensure!(
                tool.exists(),
                "{} is missing: build it with `cargo build -p brainbox-lab --bin brainbox-attack \
                 --target x86_64-unknown-linux-musl` (scripts/test.sh does)",
                tool.display()
            );
            args.push("--volume".into());
            args.push(format!("{}:{ATTACK_TOOL}:ro", tool.display()));
        }
        args.extend(spec.agent_args.iter().cloned());
        let var_log = format!("/var/log:size=16m,uid={AGENT_UID}");
        args.extend(
            [
                "--network",
                &net,
                "--user",
                &user,
                "--tmpfs",
                &tmpfs,
                "--tmpfs",
                "/tmp:size=16m,mode=1777",
                "--tmpfs",
                &var_log,
                &agent_image,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(spec.agent_cmd.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = Container::run(&agent_name, &argv)?;
        Ok(Pod {
            name: spec.name.to_owned(),
            agent,
            sidecar,
        })
    }
}

/// Starts a plain container from the agent image with no brainbox labels (not watched).
pub fn unwatched(name: &str) -> Result<Container> {
    let image = images::agent_image()?;
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend(["--user", "1000:1000", &image, "sleep", "86400"]);
    Container::run(name, &args)
}

/// Where the load generator is mounted inside a container by [`load_tool_args`].
pub const LOAD_TOOL: &str = "/opt/brainbox/brainbox-load";

/// Path of the static `brainbox-load` generator built for musl (same profile as the caller).
pub fn load_tool_binary() -> std::path::PathBuf {
    attack_tool_binary().with_file_name("brainbox-load")
}

/// `docker run` arguments that mount the load generator read-only at [`LOAD_TOOL`] (for
/// [`PodSpec::agent_args`]); fails with the build command if it was not built.
pub fn load_tool_args() -> Result<Vec<String>> {
    let tool = load_tool_binary();
    anyhow::ensure!(
        tool.exists(),
        "{} is missing: build it with `cargo build -p brainbox-lab --bin brainbox-load \
         --target x86_64-unknown-linux-musl` (add --release for the benchmark)",
        tool.display()
    );
    Ok(vec![
        "--volume".into(),
        format!("{}:{LOAD_TOOL}:ro", tool.display()),
    ])
}

//! The pod's log pipeline as `brainboxctl inject` wires it: the workload writes its log lines to
//! a Unix socket in a volume it mounts read-only, and the sidecar (another user) redacts them to
//! its standard output, which is what the node's log collector ships.
//!
//! - The injected sidecar environment is a valid sidecar configuration, with and without the
//!   NATS output and the shared fingerprint key (the sidecar's own loader reads it).
//! - In a lab pod built from that environment (sidecar uid 65532, agent uid 1000, the volume a
//!   host folder as an emptyDir would be), a secret the agent writes to the socket leaves the
//!   sidecar as a redacted JSON envelope, and the agent can neither remove nor replace the
//!   socket nor drop a file next to it.

use brainbox_lab::{
    docker::docker_output,
    pod::{Pod, PodSpec, ATTACK_TOOL},
    require, unique,
};
use brainbox_sidecar::config::SidecarConfig;
use brainboxctl::inject::{
    inject_object, InjectConfig, LogsNats, BIN_PATH, LOGS_PATH, LOG_SOCKET, LOG_SOCKET_ENV,
    SIDECAR_NAME,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Environment variables with a value, in order.
type Env = Vec<(String, String)>;

/// `(sidecar env, first workload container's env)` of a pod injected with `cfg`.
fn injected(cfg: &InjectConfig) -> (Env, Env) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-0"},
        "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}
    });
    let out = inject_object(&pod, cfg).unwrap();
    let env = |c: &Value| -> Env {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
            .collect()
    };
    let sidecar = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == SIDECAR_NAME)
        .unwrap();
    (env(sidecar), env(&out["spec"]["containers"][0]))
}

/// `inject --logs-nats-url tls://… --redact-key-secret brainbox-redact-key`.
fn nats_and_shared_key() -> InjectConfig {
    InjectConfig {
        logs_nats: Some(LogsNats {
            url: "tls://brainbox-nats.brainbox-system.svc:4222".into(),
            secret: "brainbox-nats-sidecar".into(),
        }),
        redact_key_secret: Some("brainbox-redact-key".into()),
        ..Default::default()
    }
}

fn load(env: &[(String, String)]) -> SidecarConfig {
    let mut env = env.to_vec();
    env.push(("BRAINBOX_POD_NAME".into(), "agent-0".into()));
    // `load_from` validates too, as `brainbox-sidecar run` does at start.
    brainbox_common::config::load_from(None, env).unwrap_or_else(|e| {
        panic!("the injected environment is no valid sidecar configuration: {e}")
    })
}

#[test]
fn the_injected_environment_is_a_valid_sidecar_configuration() {
    let socket = format!("{LOGS_PATH}/{LOG_SOCKET}");
    let (sidecar, workload) = injected(&InjectConfig::default());
    assert!(workload.contains(&(LOG_SOCKET_ENV.to_string(), socket.clone())));
    let c = load(&sidecar);
    let p = c.redact.pipeline.as_ref().expect("a pipeline");
    let run = p.to_pipeline(&c.pod_name);
    assert_eq!(run.socket.as_deref(), Some(std::path::Path::new(&socket)));
    assert_eq!(run.socket_mode, Some(0o666));
    assert!(matches!(
        run.output,
        brainbox_sidecar::redact::pipeline::Output::Stdout
    ));
    assert!(c.redact.key_file.is_none());

    let (sidecar, _) = injected(&nats_and_shared_key());
    let c = load(&sidecar);
    assert_eq!(
        c.redact.key_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/brainbox-redact/key"))
    );
    let nats = &c.redact.pipeline.as_ref().unwrap().nats;
    let sink = nats.to_sink("agent-0");
    assert_eq!(sink.subject, "brainbox.logs.agent-0");
    assert_eq!(sink.stream, "BRAINBOX_LOGS");
    assert_eq!(sink.stream_subjects, vec!["brainbox.logs.>".to_string()]);
    assert_eq!(nats.nats_auth.user, "sidecar");
    assert_eq!(
        nats.nats_auth.ca_file,
        std::path::Path::new("/run/secrets/brainbox-nats/ca.crt")
    );
}

/// The sidecar's standard output (the redacted lines), as `docker logs` has it.
fn stdout_of(container: &str) -> String {
    let out = docker_output(&["logs", container]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// JSON envelopes on the sidecar's standard output.
fn envelopes(container: &str) -> Vec<Value> {
    stdout_of(container)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("line").is_some())
        .collect()
}

fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A folder of the sidecar's user under `parent`, as the kubelet makes an emptyDir writable to
/// the pod (fsGroup): the sidecar creates its socket (or the installer its copy) in it.
fn sidecar_owned_dir(parent: &std::path::Path, name: &str) -> std::path::PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    nix::unistd::chown(
        &d,
        Some(nix::unistd::Uid::from_raw(65532)),
        Some(nix::unistd::Gid::from_raw(65532)),
    )
    .unwrap();
    d
}

/// A lab pod wired as `brainboxctl inject` wires one (default settings): the sidecar with the
/// injected `BRAINBOX_REDACT__*` environment and `logs` as its `brainbox-logs` volume, the
/// agent with the workload environment, `logs` read-only, and `agent_volumes` (host:container
/// `:ro` pairs) too.
fn start_logs_pod(
    prefix: &str,
    logs: &std::path::Path,
    agent_volumes: &[(&std::path::Path, &str)],
    attack_tool: bool,
    agent_cmd: &[&str],
) -> Pod {
    let (sidecar_env, workload_env) = injected(&InjectConfig::default());
    let name = unique(prefix);
    let mut spec = PodSpec::new(&name);
    spec.profile = None;
    spec.attack_tool = attack_tool;
    spec.agent_cmd = agent_cmd;
    spec.sidecar_args = vec!["--volume".into(), format!("{}:{LOGS_PATH}", logs.display())];
    for (k, v) in sidecar_env
        .iter()
        .filter(|(k, _)| k.starts_with("BRAINBOX_REDACT__"))
    {
        spec.sidecar_args
            .extend(["--env".into(), format!("{k}={v}")]);
    }
    spec.agent_args = vec![
        "--volume".into(),
        format!("{}:{LOGS_PATH}:ro", logs.display()),
    ];
    for (host, at) in agent_volumes {
        spec.agent_args
            .extend(["--volume".into(), format!("{}:{at}:ro", host.display())]);
    }
    for (k, v) in &workload_env {
        spec.agent_args.extend(["--env".into(), format!("{k}={v}")]);
    }
    Pod::start(&spec).unwrap()
}

#[test]
fn an_agent_logs_through_the_socket_and_only_redacted_lines_leave() {
    require::lab();
    let dir = tempfile::tempdir().unwrap();
    let logs = sidecar_owned_dir(dir.path(), "logs");
    let pod = start_logs_pod("logsock", &logs, &[], true, &["sleep", "86400"]);
    let sock = logs.join(LOG_SOCKET);
    wait_for(30, "the sidecar's log socket", || {
        sock.exists().then_some(())
    });

    let token = "ghp_R2d2C3poBB8LukeLeia0123456789abcdEFG";
    let write = |lines: &[&str]| {
        let mut cmd = vec![
            "sh",
            "-c",
            "printf '%s\\n' \"$@\" | \"$0\" log-socket \"$BRAINBOX_LOG_SOCKET\"",
            ATTACK_TOOL,
        ];
        cmd.extend_from_slice(lines);
        let out = pod.agent.exec(&cmd).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(": Ok("), "the agent could not write: {text}");
    };
    let first = format!("INFO cloning with token {token}");
    write(&[&first, "INFO request_id=3f2a1c9e status=200"]);
    let got = wait_for(30, "two redacted lines on the sidecar's stdout", || {
        let e = envelopes(&pod.sidecar.id);
        (e.len() >= 2).then_some(e)
    });
    assert_eq!(got[0]["class"], "secret", "{:?}", got[0]);
    let line = got[0]["line"].as_str().unwrap();
    assert!(
        line.starts_with("INFO cloning with token [REDACTED:"),
        "{line}"
    );
    assert_eq!(got[1]["class"], "clean", "{:?}", got[1]);
    assert_eq!(got[1]["line"], "INFO request_id=3f2a1c9e status=200");
    assert!(
        !stdout_of(&pod.sidecar.id).contains(token),
        "the token left the pod"
    );

    // The agent cannot take the socket over: its mount is read-only.
    for attack in [
        format!("rm -f {LOGS_PATH}/{LOG_SOCKET}"),
        format!("mv {LOGS_PATH}/{LOG_SOCKET} {LOGS_PATH}/old"),
        format!("touch {LOGS_PATH}/decoy"),
        format!("ln -s /tmp/evil {LOGS_PATH}/evil"),
    ] {
        let out = pod.agent.exec(&["sh", "-c", &attack]).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Read-only file system"),
            "{attack}: {err}"
        );
    }
    assert!(sock.exists());
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 1);
    write(&["after the attempts"]);
    wait_for(30, "the third line", || {
        (envelopes(&pod.sidecar.id).len() >= 3).then_some(())
    });
}

/// The whole shipped path for logs to NATS: a sidecar started with exactly the environment
/// `brainboxctl inject --logs-nats-url … --redact-key-secret …` gives it (only the file paths
/// and the address moved to this machine) publishes the agent's redacted lines over TLS, as
/// the NATS user `sidecar`, to a `nats-server` running `deploy/kubernetes/20-nats.yaml`'s own
/// configuration: the sidecar's real sink needs no permission the shipped config lacks.
#[test]
fn an_injected_sidecar_publishes_redacted_logs_to_the_shipped_nats() {
    use brainbox_alerts::testkit::ShippedNats;
    use std::io::Write;
    let nats = ShippedNats::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join(LOG_SOCKET);
    let key = dir.path().join("key");
    std::fs::write(&key, "shared-fingerprint-key-material\n").unwrap();
    let (sidecar_env, _) = injected(&nats_and_shared_key());
    let mut cmd = std::process::Command::new(brainbox_lab::bin_path("brainbox-sidecar"));
    cmd.arg("run")
        .env_clear()
        .env("BRAINBOX_POD_NAME", "agent-0")
        .env(
            "BRAINBOX_METRICS__LISTEN",
            format!("127.0.0.1:{}", brainbox_alerts::testkit::free_port()),
        )
        .env("BRAINBOX_EGRESS__ENABLED", "false")
        .env("BRAINBOX_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null());
    let mut moved = 0;
    for (k, v) in sidecar_env
        .iter()
        .filter(|(k, _)| k.starts_with("BRAINBOX_REDACT__"))
    {
        // The pod's paths and the cluster's address, as they are on this machine.
        let v = match k.as_str() {
            "BRAINBOX_REDACT__PIPELINE__SOCKET" => sock.display().to_string(),
            "BRAINBOX_REDACT__PIPELINE__NATS__URL" => nats.url.clone(),
            "BRAINBOX_REDACT__PIPELINE__NATS__NATS_AUTH__PASSWORD_FILE" => {
                nats.password_file("sidecar").display().to_string()
            }
            "BRAINBOX_REDACT__PIPELINE__NATS__NATS_AUTH__CA_FILE" => nats.ca.display().to_string(),
            "BRAINBOX_REDACT__KEY_FILE" => key.display().to_string(),
            _ => v.clone(),
        };
        moved += usize::from(
            &v != sidecar_env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v)
                .unwrap(),
        );
        cmd.env(k, v);
    }
    assert_eq!(
        moved, 5,
        "the injected environment changed shape: {sidecar_env:?}"
    );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sidecar = Kill(cmd.spawn().expect("start brainbox-sidecar"));
    wait_for(30, "the sidecar's log socket", || {
        sock.exists().then_some(())
    });
    let token = "ghp_R2d2C3poBB8LukeLeia0123456789abcdEFG";
    let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    writeln!(c, "agent-0 cloning with token {token}").unwrap();
    writeln!(c, "agent-0 done").unwrap();
    drop(c);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let lines: Vec<Value> = rt.block_on(async {
        use futures_util::StreamExt;
        let js = async_nats::jetstream::new(nats.client("operator").await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match js.get_stream("BRAINBOX_LOGS").await {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no BRAINBOX_LOGS stream: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let subjects = stream.cached_info().config.subjects.clone();
        assert_eq!(subjects, vec!["brainbox.logs.>".to_string()]);
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: "brainbox.logs.agent-0".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut msgs = consumer.messages().await.unwrap();
        let mut lines = Vec::new();
        while lines.len() < 2 {
            let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
                .await
                .expect("the redacted lines on brainbox.logs.agent-0")
                .unwrap()
                .unwrap();
            for l in std::str::from_utf8(&m.payload).unwrap().lines() {
                lines.push(serde_json::from_str::<Value>(l).unwrap());
            }
        }
        lines
    });
    assert_eq!(lines[0]["class"], "secret", "{:?}", lines[0]);
    let first = lines[0]["line"].as_str().unwrap();
    assert!(
        first.starts_with("agent-0 cloning with token [REDACTED:"),
        "{first}"
    );
    assert!(!first.contains(token));
    assert_eq!(lines[1]["line"], "agent-0 done");
}

/// `inject --wrap-stdout` in a lab pod: the installer (the sidecar image, as its init
/// container would run) copies the binary into the pod's `brainbox-bin` folder, and the agent
/// runs the injected command, `brainbox-sidecar logwrap -- sh -c …`, from it. What the agent
/// prints reaches the sidecar's stdout redacted, and the agent container's own log (what the
/// kubelet would ship) stays empty.
#[test]
fn a_wrapped_agents_prints_leave_only_through_the_sidecar() {
    require::lab();
    let token = "ghp_R2d2C3poBB8LukeLeia0123456789abcdEFG";
    // The `( … &)` leaves an orphan that exits at once: logwrap, PID 1 of the container, must
    // reap it.
    let script = format!(
        "(sleep 0.1 &); echo 'cloning with token {token}'; echo 'to stderr' >&2; exec sleep 86400"
    );
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-0"},
        "spec": {"containers": [{"name": "agent", "image": "agent:1",
            "command": ["sh", "-c", script]}]}
    });
    let cfg = InjectConfig {
        wrap_stdout: true,
        ..Default::default()
    };
    let out = inject_object(&pod, &cfg).unwrap();
    let agent = &out["spec"]["containers"][0];
    let command: Vec<String> = agent["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command[1], "logwrap");
    let dir = tempfile::tempdir().unwrap();
    let (logs, bin) = (
        sidecar_owned_dir(dir.path(), "logs"),
        sidecar_owned_dir(dir.path(), "bin"),
    );
    // The installer init container.
    let image = brainbox_lab::images::sidecar_image().unwrap();
    let installed = brainbox_lab::docker::docker(&[
        "run",
        "--rm",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--volume",
        &format!("{}:{BIN_PATH}", bin.display()),
        &image,
        "install-logwrap",
        BIN_PATH,
    ])
    .unwrap();
    assert!(installed.contains("installed"), "{installed}");

    // The environments do not depend on wrapping.
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let pod = start_logs_pod("logwrap", &logs, &[(&bin, BIN_PATH)], false, &argv);
    let got = wait_for(30, "the agent's two lines on the sidecar's stdout", || {
        let e = envelopes(&pod.sidecar.id);
        (e.len() >= 2).then_some(e)
    });
    let lines: Vec<&str> = got.iter().map(|v| v["line"].as_str().unwrap()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cloning with token [REDACTED:")),
        "{lines:?}"
    );
    assert!(lines.contains(&"to stderr"), "{lines:?}");
    assert!(!stdout_of(&pod.sidecar.id).contains(token));
    // PID 1 (logwrap) reaped the orphan: its only child is the command, and no zombie.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = pod
            .agent
            .exec_ok(&["cat", "/proc/1/task/1/children"])
            .unwrap();
        let pids: Vec<&str> = children.split_whitespace().collect();
        let states: Vec<String> = pids
            .iter()
            .map(|p| {
                let stat = pod
                    .agent
                    .exec_ok(&["cat", &format!("/proc/{p}/stat")])
                    .unwrap_or_default();
                stat.rsplit(") ")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(1)
                    .collect()
            })
            .collect();
        if pids.len() == 1 && !states.iter().any(|s| s == "Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PID 1's children {pids:?} in states {states:?}: an orphan was not reaped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent container's own log, which the kubelet would ship: nothing.
    let own = docker_output(&["logs", &pod.agent.id]).unwrap();
    assert!(
        own.stdout.is_empty() && own.stderr.is_empty(),
        "the agent's own log: {:?} {:?}",
        String::from_utf8_lossy(&own.stdout),
        String::from_utf8_lossy(&own.stderr)
    );
}

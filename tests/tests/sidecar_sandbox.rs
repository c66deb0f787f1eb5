//! The sidecar sandboxes itself: started normally it reports no capabilities, no_new_privs and
//! seccomp mode 2 in `/proc/<pid>/status`, still serves `/metrics` and `/healthz`, and calls
//! outside its filter (unshare, mount, execve) fail with EPERM — on the host as root, and in
//! the `FROM scratch` lab image as uid 65532 under `seccomp/sidecar.json`.

use brainbox_hardening::procstatus::Confinement;
use brainbox_lab::{
    agent::{http_get, read_json_lines},
    docker::{docker, Container},
    hardening::{run_once, seccomp_profile},
    images,
    pod::HARDENING,
    require, unique,
};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Sidecar {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(env: &[(&str, &str)], port: u16) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut cmd = Command::new(brainbox_lab::bin_path("brainbox-sidecar"));
    cmd.arg("run")
        .env_clear()
        .env("BRAINBOX_METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .env("BRAINBOX_SANDBOX__SELF_TEST", "true")
        .env("BRAINBOX_POD_NAME", "sandbox-test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Sidecar {
        child: cmd.spawn().unwrap(),
        log,
        _dir: dir,
    }
}

/// The self-test's verdicts, once all three are logged.
fn self_test_lines(read: impl Fn() -> Vec<Value>) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeMap<String, String> = read()
            .iter()
            .filter(|l| l["message"] == "sandbox self-test")
            .map(|l| {
                (
                    l["syscall"].as_str().unwrap_or("").to_owned(),
                    l["errno"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        if got.len() >= 3 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no self-test lines within 30 s; log: {:?}",
            read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sidecar_on_the_host_drops_every_capability_and_installs_its_filter() {
    require::root();
    let port = free_port();
    let sc = start(&[], port);
    let verdicts = self_test_lines(|| read_json_lines(&sc.log));
    let status = Confinement::of(sc.child.id()).unwrap();
    assert!(status.no_capabilities(), "{status:?}");
    assert_eq!(status.no_new_privs, 1, "{status:?}");
    assert_eq!(status.seccomp, 2, "{status:?}");
    for call in ["unshare", "mount", "execve"] {
        assert_eq!(verdicts[call], "EPERM", "{verdicts:?}");
    }
    // Still serving under the filter.
    let addr = format!("127.0.0.1:{port}");
    let health = http_get(&addr, "/healthz").unwrap();
    assert!(
        health.starts_with("HTTP/1.") && health.contains(" 200 "),
        "{health}"
    );
    let metrics = http_get(&addr, "/metrics").unwrap();
    assert!(metrics.contains("brainbox_sidecar_up 1"), "{metrics}");
}

#[test]
fn sidecar_with_the_sandbox_disabled_is_not_confined_which_shows_the_filter_is_what_refuses() {
    require::root();
    let port = free_port();
    let sc = start(&[("BRAINBOX_SANDBOX__ENABLED", "false")], port);
    let verdicts = self_test_lines(|| read_json_lines(&sc.log));
    let status = Confinement::of(sc.child.id()).unwrap();
    assert_eq!(status.seccomp, 0, "{status:?}");
    assert_ne!(status.cap_eff, 0, "{status:?}");
    assert_eq!(verdicts["mount"], "ENOENT", "{verdicts:?}");
    assert_eq!(verdicts["execve"], "OK", "{verdicts:?}");
}

#[test]
fn sidecar_image_as_uid_65532_is_confined_and_serves() {
    require::root();
    require::docker();
    let image = images::sidecar_image().unwrap();
    let seccomp = format!("seccomp={}", seccomp_profile("sidecar.json").display());
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend([
        "--security-opt",
        &seccomp,
        "--user",
        "65532:65532",
        "--env",
        "BRAINBOX_SANDBOX__SELF_TEST=true",
        "--env",
        "BRAINBOX_METRICS__LISTEN=127.0.0.1:9465",
        &image,
    ]);
    let sidecar = Container::run(&unique("sandbox-sidecar"), &args).unwrap();
    let logs = || -> Vec<Value> {
        let out = brainbox_lab::docker::docker_output(&["logs", &sidecar.id]).unwrap();
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .chain(String::from_utf8_lossy(&out.stdout).lines())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let verdicts = self_test_lines(logs);
    for call in ["unshare", "mount", "execve"] {
        assert_eq!(verdicts[call], "EPERM", "{verdicts:?}");
    }
    let status = Confinement::of(sidecar.pid().unwrap()).unwrap();
    assert!(status.no_capabilities(), "{status:?}");
    assert_eq!(status.no_new_privs, 1, "{status:?}");
    assert_eq!(status.seccomp, 2, "{status:?}");
    // Docker's (here: our) profile plus the sidecar's own two filters.
    assert!(status.seccomp_filters.unwrap_or(3) >= 3, "{status:?}");
    let uid = docker(&["inspect", "--format", "{{.Config.User}}", &sidecar.id]).unwrap();
    assert_eq!(uid, "65532:65532");
    // A pod neighbour (same network namespace) reaches /healthz and /metrics.
    let agent_image = images::agent_image().unwrap();
    let net = format!("container:{}", sidecar.id);
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend(["--network", &net, "--user", "1000:1000"]);
    let (code, out, err) = run_once(
        &args,
        &agent_image,
        &[
            "sh",
            "-c",
            "wget -q -O - http://127.0.0.1:9465/healthz && wget -q -O - http://127.0.0.1:9465/metrics",
        ],
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok") && out.contains("brainbox_sidecar_up 1"),
        "{out}"
    );
}

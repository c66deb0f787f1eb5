//! `brainboxctl inject`: golden outputs for a Pod, a Deployment (plus a Service that passes
//! through) and a Job; every injected pod passes the PodSecurity `restricted` check; injection
//! is idempotent; requests a brainbox may not have are refused.

use brainboxctl::{
    inject::{inject_object, inject_yaml, InjectConfig},
    podsecurity::check_restricted,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use std::{path::PathBuf, process::Command};

const IMAGE: &str =
    "brainbox-guard/sidecar@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn run_cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_brainboxctl"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `brainboxctl inject -f - <flags>` of `input`, which must succeed and pass `restricted`: the
/// first pod template's metadata and spec.
fn inject_first(
    flags: &[&str],
    input: &str,
) -> (
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k8s_openapi::api::core::v1::PodSpec,
) {
    let mut args = vec!["inject", "-f", "-"];
    args.extend_from_slice(flags);
    let (code, out, err) = run_cli(&args, Some(input));
    assert_eq!(code, 0, "{err}");
    let (kind, t) = pod_templates(&out).remove(0);
    let meta = t.metadata.unwrap_or_default();
    let spec = t.spec.unwrap();
    let v = check_restricted(&meta, &spec);
    assert!(v.is_empty(), "{kind} fails restricted: {v:#?}");
    (meta, spec)
}

/// Every pod template in a YAML stream (Pod spec or workload template), with its kind.
fn pod_templates(yaml: &str) -> Vec<(String, PodTemplateSpec)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = serde_json::Value::deserialize(doc).unwrap();
        let kind = v["kind"].as_str().unwrap_or("").to_owned();
        let tpl = match kind.as_str() {
            "Pod" => serde_json::json!({"metadata": v["metadata"], "spec": v["spec"]}),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                v["spec"]["template"].clone()
            }
            "CronJob" => v["spec"]["jobTemplate"]["spec"]["template"].clone(),
            _ => continue,
        };
        out.push((kind, serde_json::from_value(tpl).unwrap()));
    }
    out
}

#[test]
fn golden_outputs_match_and_pass_restricted() {
    let bless = std::env::var_os("BRAINBOX_BLESS").is_some();
    let mut n = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".in.yaml") else {
            continue;
        };
        n += 1;
        let (code, out, err) = run_cli(
            &[
                "inject",
                "-f",
                path.to_str().unwrap(),
                "--sidecar-image",
                IMAGE,
            ],
            None,
        );
        assert_eq!(code, 0, "{name}: {err}");
        let golden = golden_dir().join(format!("{stem}.out.yaml"));
        if bless {
            std::fs::write(&golden, &out).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (BRAINBOX_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            out,
            want,
            "{name}: output differs from {}",
            golden.display()
        );

        // The input fails `restricted`; the injected output passes it.
        let input = std::fs::read_to_string(&path).unwrap();
        for (kind, t) in pod_templates(&input) {
            let v = check_restricted(&t.metadata.unwrap_or_default(), &t.spec.unwrap());
            assert!(
                !v.is_empty(),
                "{name} {kind}: the input already passes restricted"
            );
        }
        let templates = pod_templates(&out);
        assert!(!templates.is_empty(), "{name}");
        for (kind, t) in templates {
            let meta = t.metadata.unwrap_or_default();
            let spec = t.spec.unwrap();
            let v = check_restricted(&meta, &spec);
            assert!(v.is_empty(), "{name} {kind} fails restricted: {v:#?}");
            let sidecar = &spec.init_containers.as_ref().unwrap()[0];
            assert_eq!(sidecar.name, "brainbox-sidecar");
            assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
            assert_eq!(sidecar.image.as_deref(), Some(IMAGE));
            let vols: Vec<_> = spec.volumes.as_ref().unwrap().iter().collect();
            let svid = vols.iter().find(|v| v.name == "brainbox-svid").unwrap();
            assert_eq!(
                svid.empty_dir.as_ref().unwrap().medium.as_deref(),
                Some("Memory")
            );
            let api = vols
                .iter()
                .find(|v| v.name == "brainbox-workload-api")
                .unwrap();
            assert_eq!(api.csi.as_ref().unwrap().driver, "csi.spiffe.io");
            let psc = spec.security_context.as_ref().unwrap();
            assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "Localhost");
            assert_eq!(psc.app_armor_profile.as_ref().unwrap().type_, "Localhost");
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                let sc = c.security_context.as_ref().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            }
        }
    }
    assert!(n >= 3, "expected at least 3 golden inputs, found {n}");
}

#[test]
fn injection_is_idempotent() {
    let input = std::fs::read_to_string(golden_dir().join("deployment.in.yaml")).unwrap();
    let cfg = InjectConfig::default();
    let once = inject_yaml(&input, &cfg).unwrap();
    let twice = inject_yaml(&once, &cfg).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn stdin_works_and_non_workloads_pass_through() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: b\n";
    let (code, out, err) = run_cli(&["inject", "-f", "-"], Some(cm));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kind: ConfigMap") && out.contains("a: b"),
        "{out}"
    );
    assert!(!out.contains("brainbox-sidecar"), "{out}");
}

#[test]
fn what_a_brainbox_may_not_have_is_refused() {
    use serde_json::json;
    let base = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x"}]}
    });
    let c = |sc: serde_json::Value| json!([{"name": "a", "image": "x", "securityContext": sc}]);
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "privileged",
            json!({"containers": c(json!({"privileged": true}))}),
        ),
        (
            "hostPath",
            json!({"containers": c(json!({})), "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
        ),
        (
            "hostNetwork",
            json!({"hostNetwork": true, "containers": c(json!({}))}),
        ),
        (
            "hostPID",
            json!({"hostPID": true, "containers": c(json!({}))}),
        ),
        (
            "runAsUser: 0",
            json!({"securityContext": {"runAsUser": 0}, "containers": c(json!({}))}),
        ),
        (
            "SYS_ADMIN",
            json!({"containers": c(json!({"capabilities": {"add": ["SYS_ADMIN"]}}))}),
        ),
        (
            "hostPort",
            json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
        ),
        (
            "Unconfined",
            json!({"containers": c(json!({"seccompProfile": {"type": "Unconfined"}}))}),
        ),
        (
            "reserved for the sidecar",
            json!({"containers": [{"name": "a", "image": "x",
                "volumeMounts": [{"name": "mine", "mountPath": "/run/brainbox/logs"}]}],
                "volumes": [{"name": "mine", "emptyDir": {}}]}),
        ),
        (
            "`brainbox-logs` is reserved",
            json!({"containers": c(json!({})), "volumes": [{"name": "brainbox-logs", "emptyDir": {}}]}),
        ),
    ];
    for (what, spec) in cases {
        let mut pod = base.clone();
        pod["spec"] = spec;
        let err = inject_object(&pod, &InjectConfig::default()).unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    let (code, _, err) = run_cli(
        &["inject", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  hostPID: true\n  containers:\n  - name: a\n    image: x\n"),
    );
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("hostPID"), "{err}");
}

/// `--logs-nats-url` and `--redact-key-secret`: the sidecar publishes the pod's redacted logs to
/// NATS as the user `sidecar` and fingerprints with a shared key, both from Secrets in the
/// pod's namespace mounted only into the sidecar; the pod still passes `restricted`.
#[test]
fn logs_to_nats_and_a_shared_key_come_from_secrets_mounted_in_the_sidecar_only() {
    let input = std::fs::read_to_string(golden_dir().join("pod.in.yaml")).unwrap();
    let (_, spec) = inject_first(
        &[
            "--sidecar-image",
            IMAGE,
            "--logs-nats-url",
            "tls://brainbox-nats.brainbox-system.svc:4222",
            "--logs-nats-secret",
            "nats-pw",
            "--redact-key-secret",
            "redact-key",
        ],
        &input,
    );
    let vols = spec.volumes.as_ref().unwrap();
    let secret = |name: &str| {
        let s = vols
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .secret
            .clone()
            .unwrap();
        (
            s.secret_name.unwrap(),
            s.items
                .unwrap()
                .into_iter()
                .map(|i| i.key)
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        secret("brainbox-nats"),
        (
            "nats-pw".into(),
            vec!["password".to_string(), "ca.crt".to_string()]
        )
    );
    assert_eq!(
        secret("brainbox-redact-key"),
        ("redact-key".into(), vec!["key".to_string()])
    );
    let sidecar = &spec.init_containers.as_ref().unwrap()[0];
    let env: std::collections::BTreeMap<String, String> = sidecar
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    for (k, v) in [
        ("BRAINBOX_REDACT__PIPELINE__OUTPUT", "nats"),
        (
            "BRAINBOX_REDACT__PIPELINE__NATS__URL",
            "tls://brainbox-nats.brainbox-system.svc:4222",
        ),
        (
            "BRAINBOX_REDACT__PIPELINE__NATS__NATS_AUTH__CA_FILE",
            "/run/secrets/brainbox-nats/ca.crt",
        ),
        (
            "BRAINBOX_REDACT__PIPELINE__NATS__SUBJECT",
            "brainbox.logs.{pod}",
        ),
        (
            "BRAINBOX_REDACT__PIPELINE__NATS__NATS_AUTH__USER",
            "sidecar",
        ),
        (
            "BRAINBOX_REDACT__PIPELINE__NATS__NATS_AUTH__PASSWORD_FILE",
            "/run/secrets/brainbox-nats/password",
        ),
        (
            "BRAINBOX_REDACT__KEY_FILE",
            "/run/secrets/brainbox-redact/key",
        ),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    // The secrets are the sidecar's: no workload container mounts them.
    for c in &spec.containers {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                m.name != "brainbox-nats" && m.name != "brainbox-redact-key",
                "{} mounts {}",
                c.name,
                m.name
            );
        }
        // The log socket's folder is read-only for the workload.
        let logs = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "brainbox-logs")
            .unwrap();
        assert_eq!(logs.read_only, Some(true), "{}", c.name);
    }
}

/// What the injector mounts into the sidecar, its AppArmor profile lets it use: every mount
/// path has a `<path>/** r…` (or `<path>/* r…`) rule, `rw` where the mount is writable, and
/// the workload's profile
/// lets it connect to the sidecar's socket. AppArmor is not in this kernel, so without this a
/// node with AppArmor would refuse the sidecar its own volumes.
#[test]
fn the_apparmor_profiles_allow_what_the_injector_mounts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sidecar_profile = std::fs::read_to_string(root.join("apparmor/brainbox-sidecar")).unwrap();
    let workload_profile =
        std::fs::read_to_string(root.join("apparmor/brainbox-workload")).unwrap();
    let rule = |path: &str| -> Option<String> {
        sidecar_profile
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{path}/** ")) || l.starts_with(&format!("{path}/* ")))
            .map(|l| {
                l.trim_end_matches(',')
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .to_owned()
            })
    };
    let input = std::fs::read_to_string(golden_dir().join("pod.in.yaml")).unwrap();
    let (_, spec) = inject_first(
        &[
            "--logs-nats-url",
            "tls://nats:4222",
            "--redact-key-secret",
            "k",
            "--wrap-stdout",
        ],
        &input,
    );
    // The sidecar and the logwrap installer run the sidecar's binary under its profile.
    let mounts: Vec<_> = spec.init_containers.as_ref().unwrap()[..2]
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .collect();
    assert!(mounts.len() >= 6, "{mounts:?}");
    for m in mounts {
        let perms = rule(&m.mount_path).unwrap_or_else(|| {
            panic!(
                "apparmor/brainbox-sidecar has no `{}/** …` or `/* …` rule for the `{}` mount",
                m.mount_path, m.name
            )
        });
        assert!(perms.contains('r'), "{}: {perms}", m.mount_path);
        if m.read_only != Some(true) {
            assert!(perms.contains('w'), "{} is writable: {perms}", m.mount_path);
        }
    }
    assert!(
        workload_profile
            .lines()
            .any(|l| l.trim().starts_with("unix (connect")
                && l.contains("peer=(label=brainbox-sidecar)")),
        "apparmor/brainbox-workload does not let the workload connect to the sidecar's socket"
    );
}

/// `--wrap-stdout`: each workload command runs under `brainbox-sidecar logwrap` from a
/// read-only copy the installer init container puts into the pod (after the sidecar, before
/// the pod's own init containers); the pod still passes `restricted`; a container without an
/// explicit `command` is refused rather than left printing unredacted.
#[test]
fn wrap_stdout_wraps_each_command_and_refuses_a_container_without_one() {
    let input = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: coder
spec:
  selector:
    matchLabels: {app: coder}
  template:
    metadata:
      labels: {app: coder}
    spec:
      securityContext: {runAsUser: 1000}
      initContainers:
        - name: fetch
          image: tools:3
          command: [\"sh\", \"-c\", \"echo fetching\"]
      containers:
        - name: agent
          image: agent:7
          command: [\"python3\", \"-m\", \"agent\"]
          args: [\"--task\", \"review\"]
";
    let (_, spec) = inject_first(&["--sidecar-image", IMAGE, "--wrap-stdout"], input);
    let init = spec.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "brainbox-sidecar");
    assert_eq!(init[1].name, "brainbox-logwrap-install");
    assert_eq!(init[1].image.as_deref(), Some(IMAGE));
    assert_eq!(
        init[1].args.as_deref(),
        Some(
            &[
                "install-logwrap".to_string(),
                "/run/brainbox/bin".to_string()
            ][..]
        )
    );
    let original = pod_templates(input).remove(0).1.spec.unwrap();
    let workloads = spec.containers.iter().chain(&init[2..]);
    let before = original
        .containers
        .iter()
        .chain(original.init_containers.iter().flatten());
    for (c, o) in workloads.zip(before) {
        let cmd = c.command.clone().unwrap();
        assert_eq!(
            cmd[..3],
            ["/run/brainbox/bin/brainbox-sidecar", "logwrap", "--"],
            "{}",
            c.name
        );
        assert_eq!(&cmd[3..], &o.command.clone().unwrap()[..], "{}", c.name);
        assert_eq!(c.args, o.args, "{}", c.name);
        let bin = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "brainbox-bin")
            .unwrap();
        assert_eq!(bin.read_only, Some(true));
    }

    let no_command = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: x\n";
    let (code, _, err) = run_cli(&["inject", "-f", "-", "--wrap-stdout"], Some(no_command));
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("container `a` has no `command`"), "{err}");
}

//! The PodSecurity `restricted` checker, control by control: a compliant pod passes, and each
//! single deviation the Kubernetes documentation lists is caught under its control's name.

use brainboxctl::podsecurity::check_restricted;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{json, Value};

fn compliant() -> Value {
    json!({
        "metadata": {"name": "ok"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "a", "image": "x",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }],
            "volumes": [{"name": "t", "emptyDir": {}}, {"name": "c", "configMap": {"name": "c"}}]
        }
    })
}

fn controls(v: &Value) -> Vec<&'static str> {
    let t: PodTemplateSpec = serde_json::from_value(v.clone()).unwrap();
    check_restricted(&t.metadata.unwrap_or_default(), &t.spec.unwrap())
        .into_iter()
        .map(|v| v.control)
        .collect()
}

#[test]
fn a_compliant_pod_passes() {
    assert_eq!(controls(&compliant()), Vec::<&str>::new());
}

#[test]
fn each_control_catches_its_deviation() {
    let cases: Vec<(&str, &str, Value)> = vec![
        ("Host Namespaces", "/spec/hostNetwork", json!(true)),
        ("Host Namespaces", "/spec/hostPID", json!(true)),
        ("Host Namespaces", "/spec/hostIPC", json!(true)),
        (
            "Privileged Containers",
            "/spec/containers/0/securityContext/privileged",
            json!(true),
        ),
        (
            "HostProcess",
            "/spec/securityContext/windowsOptions",
            json!({"hostProcess": true}),
        ),
        (
            "Capabilities (baseline)",
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["SYS_ADMIN"]),
        ),
        (
            "Capabilities",
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["CHOWN"]),
        ),
        (
            "Capabilities",
            "/spec/containers/0/securityContext/capabilities/drop",
            json!(["NET_RAW"]),
        ),
        (
            "HostPath Volumes",
            "/spec/volumes/0",
            json!({"name": "h", "hostPath": {"path": "/etc"}}),
        ),
        (
            "Volume Types",
            "/spec/volumes/0",
            json!({"name": "n", "nfs": {"server": "s", "path": "/"}}),
        ),
        (
            "Host Ports",
            "/spec/containers/0/ports",
            json!([{"containerPort": 80, "hostPort": 8080}]),
        ),
        (
            "AppArmor",
            "/spec/containers/0/securityContext/appArmorProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "AppArmor",
            "/metadata/annotations",
            json!({"container.apparmor.security.beta.kubernetes.io/a": "unconfined"}),
        ),
        (
            "SELinux",
            "/spec/securityContext/seLinuxOptions",
            json!({"type": "spc_t"}),
        ),
        (
            "SELinux",
            "/spec/containers/0/securityContext/seLinuxOptions",
            json!({"user": "root"}),
        ),
        (
            "/proc Mount Type",
            "/spec/containers/0/securityContext/procMount",
            json!("Unmasked"),
        ),
        (
            "Seccomp",
            "/spec/securityContext/seccompProfile",
            json!({"type": "Unconfined"}),
        ),
        (
            "Seccomp",
            "/spec/securityContext/seccompProfile",
            Value::Null,
        ),
        (
            "Sysctls",
            "/spec/securityContext/sysctls",
            json!([{"name": "kernel.msgmax", "value": "1"}]),
        ),
        (
            "Privilege Escalation",
            "/spec/containers/0/securityContext/allowPrivilegeEscalation",
            json!(true),
        ),
        (
            "Privilege Escalation",
            "/spec/containers/0/securityContext/allowPrivilegeEscalation",
            Value::Null,
        ),
        (
            "Running as Non-root",
            "/spec/securityContext/runAsNonRoot",
            json!(false),
        ),
        (
            "Running as Non-root",
            "/spec/securityContext/runAsNonRoot",
            Value::Null,
        ),
        (
            "Running as Non-root user",
            "/spec/containers/0/securityContext/runAsUser",
            json!(0),
        ),
    ];
    for (control, path, value) in cases {
        let mut pod = compliant();
        let (parent, key) = path.rsplit_once('/').unwrap();
        match pod.pointer_mut(parent).unwrap() {
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = value.clone(),
            Value::Object(o) => {
                o.insert(key.to_owned(), value.clone());
            }
            other => panic!("{parent} is {other}"),
        }
        let got = controls(&pod);
        assert!(
            got.contains(&control),
            "{path} = {value}: expected {control}, got {got:?}"
        );
    }
    // Safe sysctls and NET_BIND_SERVICE are allowed.
    let mut pod = compliant();
    pod["spec"]["securityContext"]["sysctls"] =
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]);
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
        json!(["NET_BIND_SERVICE"]);
    assert_eq!(controls(&pod), Vec::<&str>::new());
}

//! Every manifest in `deploy/kubernetes/` parses into `k8s-openapi` types, field for field (a
//! misspelt or misplaced key is an error, not silently dropped), and says what the docs say:
//! the DaemonSet's host access and capabilities, `restricted` for brainbox namespaces, the
//! webhook fails closed, and the example brainbox passes `restricted` once injected.

use brainboxctl::{
    inject::{inject_object, InjectConfig},
    podsecurity::check_restricted,
};
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{ConfigMap, Namespace, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

fn docs() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}#{i}: {e}", f.display()));
            if !v.is_null() {
                out.push((
                    format!("{}#{i}", f.file_name().unwrap().to_string_lossy()),
                    v,
                ));
            }
        }
    }
    out
}

/// Parses into `T` and checks that writing `T` back gives the same JSON: nothing was ignored.
fn exact<T: DeserializeOwned + Serialize>(where_: &str, v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{where_}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, v,
        "{where_}: fields were lost or changed in the typed round trip"
    );
    t
}

#[test]
fn every_manifest_parses_into_k8s_openapi_types_exactly() {
    let docs = docs();
    assert!(docs.len() >= 12, "only {} documents", docs.len());
    for (w, v) in &docs {
        match v["kind"].as_str().unwrap_or("") {
            "Namespace" => drop(exact::<Namespace>(w, v)),
            "ServiceAccount" => drop(exact::<ServiceAccount>(w, v)),
            "ClusterRole" => drop(exact::<ClusterRole>(w, v)),
            "ClusterRoleBinding" => drop(exact::<ClusterRoleBinding>(w, v)),
            "Role" => drop(exact::<Role>(w, v)),
            "RoleBinding" => drop(exact::<RoleBinding>(w, v)),
            "ConfigMap" => drop(exact::<ConfigMap>(w, v)),
            "Service" => drop(exact::<Service>(w, v)),
            "StatefulSet" => drop(exact::<StatefulSet>(w, v)),
            "Deployment" => drop(exact::<Deployment>(w, v)),
            "DaemonSet" => drop(exact::<DaemonSet>(w, v)),
            "MutatingWebhookConfiguration" => drop(exact::<MutatingWebhookConfiguration>(w, v)),
            "ValidatingAdmissionPolicy" => drop(exact::<
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
            >(w, v)),
            "ValidatingAdmissionPolicyBinding" => drop(exact::<
                k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            >(w, v)),
            other => panic!("{w}: kind {other:?} has no typed check here"),
        }
    }
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
        .1
}

#[test]
fn the_node_agent_daemonset_has_host_access_and_only_the_documented_capabilities() {
    let docs = docs();
    let ds: DaemonSet = exact("ds", find(&docs, "DaemonSet", "brainbox-node-agent"));
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.host_pid, Some(true));
    let c = &spec.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let mut add = caps.add.clone().unwrap();
    add.sort();
    assert_eq!(
        add,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "KILL",
            "LINUX_IMMUTABLE",
            "NET_ADMIN",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ]
    );
    let host: Vec<(String, String)> = spec
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| Some((v.name, v.host_path?.path)))
        .collect();
    for path in ["/sys/fs/bpf", "/sys/fs/cgroup", "/sys/kernel/tracing"] {
        assert!(
            host.iter().any(|(_, p)| p == path),
            "{path} not mounted: {host:?}"
        );
    }
    let psc = spec.security_context.unwrap();
    assert_eq!(
        psc.seccomp_profile.unwrap().localhost_profile.as_deref(),
        Some("brainbox/node-agent.json")
    );
}

/// NATS is TLS-only, and the node agent connects with `tls://` and the CA, which it gets from
/// the server's TLS Secret without the server's key.
#[test]
fn nats_is_tls_only_and_the_node_agent_trusts_its_ca_without_holding_its_key() {
    let docs = docs();
    let conf = find(&docs, "ConfigMap", "brainbox-nats")["data"]["nats.conf"]
        .as_str()
        .unwrap();
    assert!(conf.contains("tls {"), "{conf}");
    assert!(conf.contains("cert_file: /etc/nats/tls/tls.crt"), "{conf}");
    let sts = find(&docs, "StatefulSet", "brainbox-nats");
    let vols = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls = vols.iter().find(|v| v["name"] == "tls").unwrap();
    assert_eq!(tls["secret"]["secretName"], "brainbox-nats-tls");

    let ds: DaemonSet = exact("ds", find(&docs, "DaemonSet", "brainbox-node-agent"));
    let spec = ds.spec.unwrap().template.spec.unwrap();
    let c = &spec.containers[0];
    let env = |name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(env("BRAINBOX_ALERTS__NATS_URL").starts_with("tls://"));
    let ca = env("BRAINBOX_ALERTS__NATS_AUTH__CA_FILE");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| ca.starts_with(&format!("{}/", m.mount_path)))
        .unwrap_or_else(|| panic!("{ca} is on no mount"));
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let secret = vol.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("brainbox-nats-tls"));
    let keys: Vec<&str> = secret
        .items
        .iter()
        .flatten()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["ca.crt"],
        "the node agent must not mount the server's key"
    );
}

#[test]
fn brainbox_namespaces_enforce_restricted_and_the_webhook_fails_closed() {
    let docs = docs();
    let ns: Namespace = exact("ns", find(&docs, "Namespace", "brainboxes"));
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["brainbox.io/inject"], "enabled");
    let wh: MutatingWebhookConfiguration = exact(
        "wh",
        find(
            &docs,
            "MutatingWebhookConfiguration",
            "brainbox-sidecar-injector",
        ),
    );
    let w = &wh.webhooks.unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(w.side_effects, "None");
    assert_eq!(
        w.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/mutate")
    );
    assert_eq!(
        w.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["brainbox.io/inject"],
        "enabled"
    );
}

#[test]
fn the_example_brainbox_passes_restricted_once_injected() {
    let docs = docs();
    let example = find(&docs, "Deployment", "research-agent");
    let injected = inject_object(example, &InjectConfig::default()).unwrap();
    let d: Deployment = serde_json::from_value(injected).unwrap();
    let t = d.spec.unwrap().template;
    let v = check_restricted(&t.metadata.unwrap(), &t.spec.unwrap());
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_node_agent_may_delete_only_brainbox_pods_on_its_own_node() {
    let docs = docs();
    let role = find(&docs, "ClusterRole", "brainbox-node-agent");
    let writes: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| !matches!(v.as_str(), Some("get" | "list" | "watch")))
        })
        .collect();
    // Events (create/patch) and pod deletion, nothing else.
    for r in &writes {
        let res: Vec<&str> = r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let verbs: Vec<&str> = r["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            res == ["events"] && verbs.iter().all(|v| ["create", "patch"].contains(v))
                || res == ["pods"] && verbs == ["delete"],
            "unexpected write permission: {r}"
        );
    }
    let vap = find(
        &docs,
        "ValidatingAdmissionPolicy",
        "brainbox-node-agent-own-node-pods",
    );
    assert_eq!(vap["spec"]["failurePolicy"], "Fail");
    let rules = vap["spec"]["validations"].to_string();
    assert!(
        rules.contains("authentication.kubernetes.io/node-name"),
        "{rules}"
    );
    assert!(rules.contains("brainbox.io/profile"), "{rules}");
    let binding = find(
        &docs,
        "ValidatingAdmissionPolicyBinding",
        "brainbox-node-agent-own-node-pods",
    );
    assert_eq!(binding["spec"]["validationActions"][0], "Deny");
}

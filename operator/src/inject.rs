//! Sidecar injection, offline (`brainboxctl inject -f pod.yaml`, like `istioctl kube-inject`)
//! and in the admission webhook: every brainbox pod gets the sidecar, its identity volumes, the
//! seccomp and AppArmor profiles, and a hardened security context for every container, so that
//! it passes the Kubernetes PodSecurity `restricted` level.
//!
//! Objects are parsed into `k8s-openapi` types and written back from them, so the output order
//! is stable and a misspelt field in the input does not survive silently into the result.

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
        batch::v1::{CronJob, Job},
        core::v1::{
            AppArmorProfile, CSIVolumeSource, Capabilities, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
            ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

/// Name of the injected sidecar container.
pub const SIDECAR_NAME: &str = "brainbox-sidecar";
/// Annotation set on injected pods (and checked, so injecting twice changes nothing).
pub const INJECTED_ANNOTATION: &str = "brainbox.io/injected";
/// Label naming the pod's brainbox profile (the node agent reads it).
pub const PROFILE_LABEL: &str = "brainbox.io/profile";
/// Volume holding the SVID, key and bundle the sidecar writes (tmpfs).
pub const SVID_VOLUME: &str = "brainbox-svid";
/// Volume holding the Workload API socket (CSI).
pub const WORKLOAD_API_VOLUME: &str = "brainbox-workload-api";
/// Writable `/tmp` for workload containers, whose root file system becomes read-only.
pub const TMP_VOLUME: &str = "brainbox-tmp";
/// Volume holding the log socket the workloads write to and the sidecar redacts from.
pub const LOGS_VOLUME: &str = "brainbox-logs";
/// Where the log socket's directory is mounted (read-only in workload containers: a socket can
/// be connected to on a read-only mount, and the workload cannot replace it).
pub const LOGS_PATH: &str = "/run/brainbox/logs";
/// The log socket's file name in [`LOGS_PATH`].
pub const LOG_SOCKET: &str = "log.sock";
/// The environment variable that tells a workload where to write its log lines.
pub const LOG_SOCKET_ENV: &str = "BRAINBOX_LOG_SOCKET";
/// Volume holding the sidecar's NATS password (with `--logs-nats-url`).
pub const NATS_SECRET_VOLUME: &str = "brainbox-nats";
/// Where that password is mounted in the sidecar.
pub const NATS_SECRET_PATH: &str = "/run/secrets/brainbox-nats";
/// Volume holding the redaction fingerprint key (with `--redact-key-secret`).
pub const REDACT_KEY_VOLUME: &str = "brainbox-redact-key";
/// Where that key is mounted in the sidecar.
pub const REDACT_KEY_PATH: &str = "/run/secrets/brainbox-redact";
/// Volume holding the sidecar binary for `logwrap` (with `--wrap-stdout`).
pub const BIN_VOLUME: &str = "brainbox-bin";
/// Where that binary is (read-only in workload containers).
pub const BIN_PATH: &str = "/run/brainbox/bin";
/// Name of the init container that copies the sidecar binary into [`BIN_VOLUME`].
pub const LOGWRAP_INSTALL_NAME: &str = "brainbox-logwrap-install";
/// Where the sidecar and workloads find the SVID files.
pub const SVID_PATH: &str = "/run/svid";
/// Where the Workload API socket directory is mounted.
pub const WORKLOAD_API_PATH: &str = "/run/spiffe/workload";
/// Port of the sidecar's `/metrics` and `/healthz`.
pub const METRICS_PORT: i32 = 9465;
/// The unprivileged uid/gid the sidecar runs as (distroless `nonroot`).
pub const SIDECAR_UID: i64 = 65532;

/// Capabilities `restricted` lets a container add back.
const RESTRICTED_ADDABLE: &[&str] = &["NET_BIND_SERVICE"];

/// What to inject.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// Sidecar image, ideally pinned by digest (`deploy/images.lock`).
    pub sidecar_image: String,
    /// Profile label value for pods that have none.
    pub default_profile: String,
    /// Kubelet-relative seccomp profile for workload containers.
    pub workload_seccomp: String,
    /// Kubelet-relative seccomp profile for the sidecar.
    pub sidecar_seccomp: String,
    /// AppArmor profile name for workload containers.
    pub workload_apparmor: String,
    /// AppArmor profile name for the sidecar.
    pub sidecar_apparmor: String,
    /// CSI driver that mounts the Workload API socket directory.
    pub csi_driver: String,
    /// Redacted logs go to NATS JetStream instead of the sidecar's standard output.
    pub logs_nats: Option<LogsNats>,
    /// Secret, in the pod's namespace, whose key `key` is the redaction fingerprint key (at
    /// least 16 bytes). Pods given the same key give the same secret the same fingerprint;
    /// without one each sidecar draws a random key and fingerprints correlate only within it.
    pub redact_key_secret: Option<String>,
    /// Run every workload container's `command` under `brainbox-sidecar logwrap`, so what the
    /// agent prints goes through the sidecar's redaction instead of to the node unredacted.
    /// A container without an explicit `command` is refused (its image's entrypoint is not
    /// known here).
    pub wrap_stdout: bool,
}

/// Where the sidecar publishes redacted logs when they go to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsNats {
    /// Server URL (`tls://brainbox-nats.brainbox-system.svc:4222`).
    pub url: String,
    /// Secret in the pod's namespace with the NATS `sidecar` user's password (key `password`)
    /// and the CA of the server's TLS certificate (key `ca.crt`); see
    /// deploy/kubernetes/20-nats.yaml.
    pub secret: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            sidecar_image: "brainbox-guard/sidecar:0.1.0".into(),
            default_profile: "default".into(),
            workload_seccomp: "brainbox/brainbox-workload.json".into(),
            sidecar_seccomp: "brainbox/sidecar.json".into(),
            workload_apparmor: "brainbox-workload".into(),
            sidecar_apparmor: "brainbox-sidecar".into(),
            csi_driver: "csi.spiffe.io".into(),
            logs_nats: None,
            redact_key_secret: None,
            wrap_stdout: false,
        }
    }
}

/// Why a pod cannot be injected. Injection never weakens a pod and never silently drops what
/// the pod asked for: a request the hardened baseline cannot honour is refused.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The YAML or JSON does not parse.
    #[error("{0}")]
    Parse(String),
    /// The pod asks for something a brainbox may not have.
    #[error("{object}: {reason}")]
    Refused {
        /// `Kind/name`.
        object: String,
        /// What is not allowed.
        reason: String,
    },
}

fn refused(object: &str, reason: impl Into<String>) -> InjectError {
    InjectError::Refused {
        object: object.to_owned(),
        reason: reason.into(),
    }
}

/// Injects into every document of a (multi-document) YAML stream. Kinds without a pod template
/// pass through unchanged. Returns the new YAML.
pub fn inject_yaml(input: &str, cfg: &InjectConfig) -> Result<String, InjectError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(input) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| InjectError::Parse(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let json: serde_json::Value =
            serde_yaml::from_value(value).map_err(|e| InjectError::Parse(e.to_string()))?;
        let injected = sorted(inject_object(&json, cfg)?);
        out.push(serde_yaml::to_string(&injected).map_err(|e| InjectError::Parse(e.to_string()))?);
    }
    Ok(out.join("---\n"))
}

/// Keys in lexical order at every level, whatever map serde_json was built with, so the
/// output is byte-for-byte stable (golden tests, diffs in review).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<_> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// Injects into one object (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob);
/// other kinds are returned as they are.
pub fn inject_object(
    obj: &serde_json::Value,
    cfg: &InjectConfig,
) -> Result<serde_json::Value, InjectError> {
    let kind = obj.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    match kind {
        "Pod" => typed(obj, |p: &mut Pod, name| {
            let spec = p.spec.get_or_insert_with(Default::default);
            inject_pod(&mut p.metadata, spec, cfg, name)
        }),
        "Deployment" => typed(obj, |d: &mut Deployment, name| {
            inject_template(
                &mut d.spec.get_or_insert_with(Default::default).template,
                cfg,
                name,
            )
        }),
        "StatefulSet" => typed(obj, |d: &mut StatefulSet, name| {
            inject_template(
                &mut d.spec.get_or_insert_with(Default::default).template,
                cfg,
                name,
            )
        }),
        "DaemonSet" => typed(obj, |d: &mut DaemonSet, name| {
            inject_template(
                &mut d.spec.get_or_insert_with(Default::default).template,
                cfg,
                name,
            )
        }),
        "ReplicaSet" => typed(obj, |d: &mut ReplicaSet, name| {
            let spec = d.spec.get_or_insert_with(Default::default);
            inject_template(
                spec.template.get_or_insert_with(Default::default),
                cfg,
                name,
            )
        }),
        "Job" => typed(obj, |d: &mut Job, name| {
            inject_template(
                &mut d.spec.get_or_insert_with(Default::default).template,
                cfg,
                name,
            )
        }),
        "CronJob" => typed(obj, |d: &mut CronJob, name| {
            let job = &mut d.spec.get_or_insert_with(Default::default).job_template;
            inject_template(
                &mut job.spec.get_or_insert_with(Default::default).template,
                cfg,
                name,
            )
        }),
        _ => Ok(obj.clone()),
    }
}

/// Injects into a workload's pod template.
fn inject_template(
    t: &mut PodTemplateSpec,
    cfg: &InjectConfig,
    name: &str,
) -> Result<(), InjectError> {
    inject_pod(
        t.metadata.get_or_insert_with(Default::default),
        t.spec.get_or_insert_with(Default::default),
        cfg,
        name,
    )
}

fn typed<T, F>(obj: &serde_json::Value, f: F) -> Result<serde_json::Value, InjectError>
where
    T: DeserializeOwned + Serialize + k8s_openapi::Metadata<Ty = ObjectMeta>,
    F: FnOnce(&mut T, &str) -> Result<(), InjectError>,
{
    let mut t: T =
        serde_json::from_value(obj.clone()).map_err(|e| InjectError::Parse(e.to_string()))?;
    let name = format!(
        "{}/{}",
        obj.get("kind").and_then(|k| k.as_str()).unwrap_or("?"),
        t.metadata()
            .name
            .clone()
            .or_else(|| t.metadata().generate_name.clone())
            .unwrap_or_default()
    );
    f(&mut t, &name)?;
    serde_json::to_value(&t).map_err(|e| InjectError::Parse(e.to_string()))
}

/// Injects into one pod template (metadata + spec). Idempotent.
pub fn inject_pod(
    meta: &mut ObjectMeta,
    spec: &mut PodSpec,
    cfg: &InjectConfig,
    object: &str,
) -> Result<(), InjectError> {
    let already = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(INJECTED_ANNOTATION).is_some_and(|v| v == "true"))
        || all_containers(spec).any(|c| c.name == SIDECAR_NAME);
    if already {
        return Ok(());
    }
    for (flag, what) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            return Err(refused(
                object,
                format!("{what}: true is not allowed for a brainbox"),
            ));
        }
    }
    if let Some(vols) = &spec.volumes {
        for v in vols {
            if v.host_path.is_some() {
                return Err(refused(
                    object,
                    format!(
                        "volume `{}` is a hostPath; brainboxes may not mount the host",
                        v.name
                    ),
                ));
            }
        }
    }
    let taken: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    for name in [
        SVID_VOLUME,
        WORKLOAD_API_VOLUME,
        TMP_VOLUME,
        LOGS_VOLUME,
        NATS_SECRET_VOLUME,
        REDACT_KEY_VOLUME,
        BIN_VOLUME,
    ] {
        if taken.contains(&name) {
            return Err(refused(
                object,
                format!("volume name `{name}` is reserved for the sidecar"),
            ));
        }
    }

    // Pod level: non-root, the workload seccomp and AppArmor profiles, no API token.
    let psc = spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    if psc.run_as_user == Some(0) {
        return Err(refused(
            object,
            "securityContext.runAsUser: 0 (root) is not allowed",
        ));
    }
    if psc.run_as_non_root == Some(false) {
        return Err(refused(
            object,
            "securityContext.runAsNonRoot: false is not allowed",
        ));
    }
    psc.run_as_non_root = Some(true);
    psc.seccomp_profile = Some(localhost_seccomp(&cfg.workload_seccomp));
    psc.app_armor_profile = Some(localhost_apparmor(&cfg.workload_apparmor));
    if spec.automount_service_account_token.is_none() {
        // An agent has no business with the Kubernetes API unless its owner says so.
        spec.automount_service_account_token = Some(false);
    }

    // Every workload container: hardened security context, SVIDs read-only, a writable /tmp,
    // the log socket (read-only mount) and where it is.
    let init = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(init) {
        harden_container(c, object)?;
        c.security_context
            .get_or_insert_with(Default::default)
            .run_as_non_root = Some(true);
        let env = c.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == LOG_SOCKET_ENV) {
            env.push(EnvVar {
                name: LOG_SOCKET_ENV.into(),
                value: Some(format!("{LOGS_PATH}/{LOG_SOCKET}")),
                ..Default::default()
            });
        }
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if let Some(m) = mounts
            .iter()
            .find(|m| [SVID_PATH, LOGS_PATH, BIN_PATH].contains(&m.mount_path.as_str()))
        {
            return Err(refused(
                object,
                format!(
                    "container `{}` mounts `{}` at {}, which is reserved for the sidecar",
                    c.name, m.name, m.mount_path
                ),
            ));
        }
        mounts.push(VolumeMount {
            name: SVID_VOLUME.into(),
            mount_path: SVID_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: LOGS_VOLUME.into(),
            mount_path: LOGS_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        });
        if cfg.wrap_stdout {
            let Some(command) = c.command.as_mut().filter(|c| !c.is_empty()) else {
                return Err(refused(
                    object,
                    format!(
                        "container `{}` has no `command`: --wrap-stdout wraps the command, and \
                         the image's entrypoint is not known here; set `command`",
                        c.name
                    ),
                ));
            };
            command.splice(
                0..0,
                [
                    format!("{BIN_PATH}/brainbox-sidecar"),
                    "logwrap".to_string(),
                    "--".to_string(),
                ],
            );
            mounts.push(VolumeMount {
                name: BIN_VOLUME.into(),
                mount_path: BIN_PATH.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        if !mounts.iter().any(|m| m.mount_path == "/tmp") {
            mounts.push(VolumeMount {
                name: TMP_VOLUME.into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            });
        }
    }
    if let Some(eph) = &spec.ephemeral_containers {
        if !eph.is_empty() {
            return Err(refused(
                object,
                "ephemeral containers are not injected; remove them",
            ));
        }
    }

    // The sidecar, as a native sidecar (an init container that keeps running, Kubernetes ≥
    // 1.29): it is up, with its egress proxy and SVID, before any workload container starts,
    // and it does not keep a Job from completing.
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    init.insert(0, sidecar_container(cfg));
    if cfg.wrap_stdout {
        // After the sidecar, before anything of the pod's: the binary `logwrap` runs.
        init.insert(1, logwrap_installer(cfg));
    }

    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(empty_dir(SVID_VOLUME, Some("Memory"), "1Mi"));
    volumes.push(Volume {
        name: WORKLOAD_API_VOLUME.into(),
        // `restricted` forbids hostPath; a CSI volume is allowed. The SPIFFE CSI driver mounts
        // the node's Workload API socket directory (SPIRE's, or the node agent's) read-only.
        csi: Some(CSIVolumeSource {
            driver: cfg.csi_driver.clone(),
            read_only: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    volumes.push(empty_dir(TMP_VOLUME, None, "64Mi"));
    // Only the socket lives here.
    volumes.push(empty_dir(LOGS_VOLUME, Some("Memory"), "1Mi"));
    let secret = |volume: &str, secret: &str, keys: &[&str]| Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(n) = &cfg.logs_nats {
        volumes.push(secret(
            NATS_SECRET_VOLUME,
            &n.secret,
            &["password", "ca.crt"],
        ));
    }
    if let Some(k) = &cfg.redact_key_secret {
        volumes.push(secret(REDACT_KEY_VOLUME, k, &["key"]));
    }
    if cfg.wrap_stdout {
        volumes.push(empty_dir(BIN_VOLUME, None, "64Mi"));
    }

    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels
        .entry(PROFILE_LABEL.into())
        .or_insert_with(|| cfg.default_profile.clone());
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(INJECTED_ANNOTATION.into(), "true".into());
    Ok(())
}

/// An emptyDir volume of at most `size` (`medium: Memory` is tmpfs).
fn empty_dir(name: &str, medium: Option<&str>, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: Some(Quantity(size.into())),
        }),
        ..Default::default()
    }
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

fn localhost_seccomp(path: &str) -> SeccompProfile {
    SeccompProfile {
        type_: "Localhost".into(),
        localhost_profile: Some(path.into()),
    }
}

fn localhost_apparmor(name: &str) -> AppArmorProfile {
    AppArmorProfile {
        type_: "Localhost".into(),
        localhost_profile: Some(name.into()),
    }
}

/// The hardened container security context: no privilege, no escalation, every capability
/// dropped, read-only root file system, not root. Refuses what cannot be made so.
fn harden_container(c: &mut Container, object: &str) -> Result<(), InjectError> {
    let who = format!("{object} container `{}`", c.name);
    let sc = c
        .security_context
        .get_or_insert_with(SecurityContext::default);
    if sc.privileged == Some(true) {
        return Err(refused(&who, "privileged: true is not allowed"));
    }
    if sc.run_as_user == Some(0) {
        return Err(refused(&who, "runAsUser: 0 (root) is not allowed"));
    }
    if sc.run_as_non_root == Some(false) {
        return Err(refused(&who, "runAsNonRoot: false is not allowed"));
    }
    if let Some(p) = &sc.seccomp_profile {
        if p.type_ == "Unconfined" {
            return Err(refused(&who, "seccompProfile Unconfined is not allowed"));
        }
    }
    if let Some(p) = &sc.app_armor_profile {
        if p.type_ == "Unconfined" {
            return Err(refused(&who, "appArmorProfile Unconfined is not allowed"));
        }
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return Err(refused(&who, "procMount other than Default is not allowed"));
    }
    if let Some(ports) = &c.ports {
        if ports.iter().any(|p| p.host_port.is_some_and(|h| h != 0)) {
            return Err(refused(&who, "hostPort is not allowed"));
        }
    }
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    if let Some(add) = &caps.add {
        if let Some(bad) = add
            .iter()
            .find(|a| !RESTRICTED_ADDABLE.contains(&a.as_str()))
        {
            return Err(refused(&who, format!("capability {bad} may not be added")));
        }
    }
    caps.drop = Some(vec!["ALL".into()]);
    sc.privileged = Some(false);
    sc.allow_privilege_escalation = Some(false);
    sc.read_only_root_filesystem = Some(true);
    Ok(())
}

/// The sidecar's `[redact.pipeline]`, as environment: it listens on the pod's log socket
/// (`0666`: the workload runs as another user; the socket's emptyDir is the boundary, only this
/// pod's containers mount it) and writes JSON envelopes with the line's class to its standard
/// output, which the node's log collector picks up; or, with `logs_nats`, publishes them to
/// `brainbox.logs.<pod>` as the NATS user `sidecar`.
fn pipeline_env(cfg: &InjectConfig) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar {
        name: format!("BRAINBOX_REDACT__PIPELINE__{name}"),
        value: Some(value),
        ..Default::default()
    };
    let mut env = vec![
        var("SOCKET", format!("{LOGS_PATH}/{LOG_SOCKET}")),
        var("SOCKET_MODE", "0666".into()),
        var("FORMAT", "json".into()),
    ];
    if cfg.redact_key_secret.is_some() {
        env.push(EnvVar {
            name: "BRAINBOX_REDACT__KEY_FILE".into(),
            value: Some(format!("{REDACT_KEY_PATH}/key")),
            ..Default::default()
        });
    }
    if let Some(n) = &cfg.logs_nats {
        env.extend([
            var("OUTPUT", "nats".into()),
            var("NATS__URL", n.url.clone()),
            var("NATS__SUBJECT", "brainbox.logs.{pod}".into()),
            // One stream for every pod's logs, whichever sidecar creates it first.
            var("NATS__STREAM_SUBJECTS", "[\"brainbox.logs.>\"]".into()),
            var("NATS__NATS_AUTH__USER", "sidecar".into()),
            var(
                "NATS__NATS_AUTH__PASSWORD_FILE",
                format!("{NATS_SECRET_PATH}/password"),
            ),
            // The server speaks TLS only; this CA verifies it.
            var(
                "NATS__NATS_AUTH__CA_FILE",
                format!("{NATS_SECRET_PATH}/ca.crt"),
            ),
        ]);
    }
    env
}

/// The init container that copies the sidecar binary into [`BIN_VOLUME`] for `logwrap`: the
/// sidecar's image, user and confinement, and nothing else.
fn logwrap_installer(cfg: &InjectConfig) -> Container {
    let sidecar = sidecar_container(cfg);
    Container {
        name: LOGWRAP_INSTALL_NAME.into(),
        image: sidecar.image,
        args: Some(vec!["install-logwrap".into(), BIN_PATH.into()]),
        security_context: sidecar.security_context,
        volume_mounts: Some(vec![VolumeMount {
            name: BIN_VOLUME.into(),
            mount_path: BIN_PATH.into(),
            ..Default::default()
        }]),
        resources: sidecar.resources,
        termination_message_policy: sidecar.termination_message_policy,
        ..Default::default()
    }
}

/// The sidecar container.
fn sidecar_container(cfg: &InjectConfig) -> Container {
    let mut requests = BTreeMap::new();
    requests.insert("cpu".to_string(), Quantity("10m".into()));
    requests.insert("memory".to_string(), Quantity("32Mi".into()));
    let mut limits = BTreeMap::new();
    limits.insert("memory".to_string(), Quantity("128Mi".into()));
    let probe = |initial: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(METRICS_PORT),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        ..Default::default()
    };
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(cfg.sidecar_image.clone()),
        args: Some(vec!["run".into()]),
        restart_policy: Some("Always".into()),
        env: Some(
            vec![
                EnvVar {
                    name: "BRAINBOX_POD_NAME".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "BRAINBOX_METRICS__LISTEN".into(),
                    value: Some(format!("0.0.0.0:{METRICS_PORT}")),
                    ..Default::default()
                },
                EnvVar {
                    name: "SPIFFE_ENDPOINT_SOCKET".into(),
                    value: Some(format!("unix://{WORKLOAD_API_PATH}/socket")),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(pipeline_env(cfg))
            .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        startup_probe: Some(probe(0)),
        liveness_probe: Some(probe(5)),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(SIDECAR_UID),
            run_as_group: Some(SIDECAR_UID),
            seccomp_profile: Some(localhost_seccomp(&cfg.sidecar_seccomp)),
            app_armor_profile: Some(localhost_apparmor(&cfg.sidecar_apparmor)),
            ..Default::default()
        }),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: SVID_VOLUME.into(),
                    mount_path: SVID_PATH.into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: WORKLOAD_API_VOLUME.into(),
                    mount_path: WORKLOAD_API_PATH.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: LOGS_VOLUME.into(),
                    mount_path: LOGS_PATH.into(),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(
                [
                    (
                        cfg.logs_nats.is_some(),
                        NATS_SECRET_VOLUME,
                        NATS_SECRET_PATH,
                    ),
                    (
                        cfg.redact_key_secret.is_some(),
                        REDACT_KEY_VOLUME,
                        REDACT_KEY_PATH,
                    ),
                ]
                .into_iter()
                .filter(|(on, _, _)| *on)
                .map(|(_, name, path)| VolumeMount {
                    name: name.into(),
                    mount_path: path.into(),
                    read_only: Some(true),
                    ..Default::default()
                }),
            )
            .collect(),
        ),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

/// The RFC 6902 JSON patch that turns `pod` (an admission request's object) into the injected
/// pod, or `None` when nothing changes.
pub fn pod_patch(
    pod: &serde_json::Value,
    cfg: &InjectConfig,
) -> Result<Option<json_patch::Patch>, InjectError> {
    // Diff against the typed round trip of the input, not the raw input, so the patch holds our
    // changes only and never removes a field the typed model does not know.
    let before: Pod =
        serde_json::from_value(pod.clone()).map_err(|e| InjectError::Parse(e.to_string()))?;
    let before_json =
        serde_json::to_value(&before).map_err(|e| InjectError::Parse(e.to_string()))?;
    let after = inject_object(&before_json, cfg)?;
    let patch = json_patch::diff(&before_json, &after);
    Ok((!patch.0.is_empty()).then_some(patch))
}

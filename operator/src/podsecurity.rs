//! The Kubernetes Pod Security Standards, `restricted` level (which includes `baseline`), as the
//! Kubernetes documentation lists them ("Pod Security Standards", v1.33), checked on a pod
//! template. brainboxctl holds injected pods to it; the tests hold every injected golden to it.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One failed control: which, where, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The control's name in the documentation.
    pub control: &'static str,
    /// Field path and what is wrong.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.control, self.detail)
    }
}

/// Capabilities `baseline` allows to be added.
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls `baseline` allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types `baseline` allows (besides unset/empty).
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn containers(spec: &PodSpec) -> Vec<(String, Option<&SecurityContext>, &Container)> {
    let mut v: Vec<(String, Option<&SecurityContext>, &Container)> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("spec.containers[{i}]"),
                c.security_context.as_ref(),
                c,
            )
        })
        .collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        v.push((
            format!("spec.initContainers[{i}]"),
            c.security_context.as_ref(),
            c,
        ));
    }
    v
}

/// Checks a pod template against `restricted` (and so `baseline`). Empty means it passes.
pub fn check_restricted(meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut fail = |control: &'static str, detail: String| v.push(Violation { control, detail });
    let psc = spec.security_context.as_ref();

    // ---- baseline ----
    // HostProcess
    if psc
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true)
    {
        fail(
            "HostProcess",
            "spec.securityContext.windowsOptions.hostProcess: true".into(),
        );
    }
    // Host Namespaces
    for (flag, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            fail("Host Namespaces", format!("spec.{name}: true"));
        }
    }
    // HostPath Volumes / Volume Types (restricted)
    const VOLUME_TYPES: &str =
        "configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret";
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        if vol.host_path.is_some() {
            fail(
                "HostPath Volumes",
                format!("spec.volumes[{i}].hostPath ({})", vol.name),
            );
        }
        let allowed = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        if !allowed {
            fail(
                "Volume Types",
                format!(
                    "spec.volumes[{i}] ({}) is not one of {VOLUME_TYPES}",
                    vol.name
                ),
            );
        }
    }
    // Sysctls
    for (i, s) in psc
        .and_then(|p| p.sysctls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            fail(
                "Sysctls",
                format!("spec.securityContext.sysctls[{i}].name: {}", s.name),
            );
        }
    }
    // AppArmor (pod level, field and annotations)
    let apparmor_ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    if let Some(p) = psc.and_then(|p| p.app_armor_profile.as_ref()) {
        if !apparmor_ok(&p.type_) {
            fail(
                "AppArmor",
                format!("spec.securityContext.appArmorProfile.type: {}", p.type_),
            );
        }
    }
    for (k, val) in meta.annotations.iter().flatten() {
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && val != "runtime/default"
            && !val.starts_with("localhost/")
        {
            fail("AppArmor", format!("annotation {k}: {val}"));
        }
    }
    // SELinux (pod level)
    if let Some(se) = psc.and_then(|p| p.se_linux_options.as_ref()) {
        selinux(&mut fail, "spec.securityContext.seLinuxOptions", se);
    }
    // Seccomp (pod level): baseline forbids Unconfined; restricted wants RuntimeDefault/Localhost.
    let seccomp_ok = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let pod_seccomp = psc.and_then(|p| p.seccomp_profile.as_ref());
    if let Some(p) = pod_seccomp {
        if !seccomp_ok(&p.type_) {
            fail(
                "Seccomp",
                format!("spec.securityContext.seccompProfile.type: {}", p.type_),
            );
        }
    }
    // Running as Non-root user (pod level)
    if psc.and_then(|p| p.run_as_user) == Some(0) {
        fail(
            "Running as Non-root user",
            "spec.securityContext.runAsUser: 0".into(),
        );
    }
    let pod_non_root = psc.and_then(|p| p.run_as_non_root);
    if pod_non_root == Some(false) {
        fail(
            "Running as Non-root",
            "spec.securityContext.runAsNonRoot: false".into(),
        );
    }

    for (path, sc, c) in containers(spec) {
        // Privileged Containers
        if sc.and_then(|s| s.privileged) == Some(true) {
            fail(
                "Privileged Containers",
                format!("{path}.securityContext.privileged: true"),
            );
        }
        if sc
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            fail(
                "HostProcess",
                format!("{path}.securityContext.windowsOptions.hostProcess: true"),
            );
        }
        // Host Ports
        for (j, p) in c.ports.iter().flatten().enumerate() {
            if p.host_port.is_some_and(|h| h != 0) {
                fail(
                    "Host Ports",
                    format!("{path}.ports[{j}].hostPort: {:?}", p.host_port),
                );
            }
        }
        // AppArmor
        if let Some(p) = sc.and_then(|s| s.app_armor_profile.as_ref()) {
            if !apparmor_ok(&p.type_) {
                fail(
                    "AppArmor",
                    format!("{path}.securityContext.appArmorProfile.type: {}", p.type_),
                );
            }
        }
        // SELinux
        if let Some(se) = sc.and_then(|s| s.se_linux_options.as_ref()) {
            selinux(
                &mut fail,
                &format!("{path}.securityContext.seLinuxOptions"),
                se,
            );
        }
        // /proc Mount Type
        if let Some(m) = sc.and_then(|s| s.proc_mount.as_deref()) {
            if m != "Default" {
                fail(
                    "/proc Mount Type",
                    format!("{path}.securityContext.procMount: {m}"),
                );
            }
        }
        // ---- restricted ----
        // Privilege Escalation
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            fail(
                "Privilege Escalation",
                format!("{path}.securityContext.allowPrivilegeEscalation must be false"),
            );
        }
        // Running as Non-root
        match sc.and_then(|s| s.run_as_non_root) {
            Some(false) => fail(
                "Running as Non-root",
                format!("{path}.securityContext.runAsNonRoot: false"),
            ),
            None if pod_non_root != Some(true) => fail(
                "Running as Non-root",
                format!("{path}: runAsNonRoot is set neither on the container nor on the pod"),
            ),
            _ => {}
        }
        // Running as Non-root user
        if sc.and_then(|s| s.run_as_user) == Some(0) {
            fail(
                "Running as Non-root user",
                format!("{path}.securityContext.runAsUser: 0"),
            );
        }
        // Seccomp
        match sc.and_then(|s| s.seccomp_profile.as_ref()) {
            Some(p) if !seccomp_ok(&p.type_) => fail(
                "Seccomp",
                format!("{path}.securityContext.seccompProfile.type: {}", p.type_),
            ),
            None if pod_seccomp.is_none() => fail(
                "Seccomp",
                format!("{path}: seccompProfile is set neither on the container nor on the pod"),
            ),
            _ => {}
        }
        // Capabilities: baseline (adds from the list) and restricted (drop ALL, add only
        // NET_BIND_SERVICE).
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
            if !BASELINE_CAPS.contains(&add.as_str()) {
                fail("Capabilities (baseline)", format!("{path} adds {add}"));
            }
            if add != "NET_BIND_SERVICE" {
                fail("Capabilities", format!("{path} adds {add}"));
            }
        }
        let drops_all = caps
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            fail(
                "Capabilities",
                format!("{path}.securityContext.capabilities.drop must include ALL"),
            );
        }
    }
    v
}

fn selinux(
    fail: &mut impl FnMut(&'static str, String),
    path: &str,
    se: &k8s_openapi::api::core::v1::SELinuxOptions,
) {
    if let Some(t) = se.type_.as_deref() {
        if !t.is_empty() && !SELINUX_TYPES.contains(&t) {
            fail("SELinux", format!("{path}.type: {t}"));
        }
    }
    if se.user.as_deref().is_some_and(|u| !u.is_empty()) {
        fail("SELinux", format!("{path}.user must be unset"));
    }
    if se.role.as_deref().is_some_and(|r| !r.is_empty()) {
        fail("SELinux", format!("{path}.role must be unset"));
    }
}

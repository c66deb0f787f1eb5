//! The sidecar sandboxes itself: it never needs a privilege, so it gives up every capability
//! and sets `no_new_privs` before its runtime starts any thread (capabilities are per thread),
//! and once its listeners are bound it installs its own seccomp filter on every thread: the
//! container profile `seccomp/sidecar.json` minus what only the container runtime needs to
//! start it (`execve`, user and group changes, `capset`). Whatever Kubernetes or Docker
//! applies around the sidecar, the sidecar is confined by this on its own: a compromised sidecar
//! cannot exec a shell, mount, unshare, ptrace, load BPF or touch keyrings.
//!
//! The filter is compiled in pure Rust (`seccompiler`) from the same JSON the runtime loads, so
//! the static musl binary does not link libseccomp; the tests check the JSON with libseccomp.

use brainbox_hardening::{privileges, seccomp, selftest};
use serde::Deserialize;

/// `[sandbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Drop capabilities, set no_new_privs and install the seccomp filter (default true).
    pub enabled: bool,
    /// After sandboxing, try calls the filter refuses and log the errno each got (for tests and
    /// for operators who want proof in the log).
    pub self_test: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            self_test: false,
        }
    }
}

/// Calls the sidecar's own filter leaves out of `seccomp/sidecar.json`: the container runtime
/// needs them between installing the profile and running the sidecar, the sidecar never does.
pub const REMOVED_FROM_PROFILE: &[&str] = &[
    "seccomp",
    "execve",
    "execveat",
    "capset",
    "setgroups",
    "setuid",
    "setgid",
    "setresuid",
    "setresgid",
];

/// A sandboxing step failed: the sidecar refuses to serve unconfined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Capabilities or prctl.
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    /// The seccomp filter.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
}

/// Step one, while the process has a single thread: drop every capability, set no_new_privs
/// and make the process non-dumpable.
pub fn drop_privileges(cfg: &SandboxConfig) -> Result<(), SandboxError> {
    if !cfg.enabled {
        return Ok(());
    }
    let report = privileges::drop_all()?;
    privileges::set_no_new_privs()?;
    privileges::set_not_dumpable()?;
    tracing::info!(
        bounding_dropped = report.bounding_dropped,
        bounding_kept = report.bounding_kept,
        "sandbox: every capability dropped, no_new_privs set"
    );
    Ok(())
}

/// Step two, once every listener is bound: install the seccomp filter on all threads.
pub fn install_filter(cfg: &SandboxConfig) -> Result<(), SandboxError> {
    if !cfg.enabled {
        tracing::warn!("sandbox disabled by configuration (sandbox.enabled = false)");
        self_test(cfg);
        return Ok(());
    }
    let profile = seccomp::OciProfile::from_json(seccomp::SIDECAR_PROFILE)?;
    let programs = profile.compile(REMOVED_FROM_PROFILE)?;
    seccomp::install(&programs)?;
    tracing::info!(
        filters = programs.len(),
        allowed = profile
            .allowed()
            .iter()
            .filter(|n| !REMOVED_FROM_PROFILE.contains(n))
            .count(),
        "sandbox: seccomp filter installed"
    );
    self_test(cfg);
    Ok(())
}

/// Runs the self-test when configured (also unsandboxed, which shows the difference).
fn self_test(cfg: &SandboxConfig) {
    if cfg.self_test {
        for a in selftest::refused_calls() {
            let errno = a
                .errno
                .map(|e| format!("{e:?}"))
                .unwrap_or_else(|| "OK".into());
            tracing::warn!(syscall = a.syscall, errno = %errno, "sandbox self-test");
        }
    }
}

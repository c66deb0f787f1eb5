//! OCI seccomp profiles (the JSON that Docker's `--security-opt seccomp=` and Kubernetes'
//! `seccompProfile: Localhost` load) and their compilation to a filter a process installs on
//! itself.
//!
//! Only the subset brainbox-guard's profiles use is accepted (`deny_unknown_fields`): a default
//! action, an architecture list, and rules of names + action + optional errno + argument
//! conditions. A typo in a profile is an error here, not a silently ignored key in the runtime.

use crate::SYSCALLS;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The workload profile (agent containers of a brainbox), as shipped in `seccomp/`.
pub const WORKLOAD_PROFILE: &str = include_str!("../../../seccomp/brainbox-workload.json");
/// The sidecar container's profile.
pub const SIDECAR_PROFILE: &str = include_str!("../../../seccomp/sidecar.json");
/// The node agent container's profile.
pub const NODE_AGENT_PROFILE: &str = include_str!("../../../seccomp/node-agent.json");

/// System calls no brainbox-guard profile may allow to workloads: they change mounts or
/// namespaces, inspect or inject into other processes, reach the kernel's most exploited
/// interfaces, or change the machine itself.
pub const REFUSED_FOR_WORKLOADS: &[&str] = &[
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "chroot",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "perf_event_open",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "quotactl",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "syslog",
    "vhangup",
    "sethostname",
    "setdomainname",
    "modify_ldt",
    "uselib",
    "_sysctl",
    "memfd_secret",
];

/// Errors reading or compiling a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The JSON does not parse into the profile schema.
    #[error("seccomp profile: {0}")]
    Parse(#[from] serde_json::Error),
    /// A system call name is not in the x86_64 table.
    #[error("seccomp profile: unknown system call `{0}`")]
    UnknownSyscall(String),
    /// An action string is not one this crate understands.
    #[error("seccomp profile: unsupported action `{0}`")]
    UnknownAction(String),
    /// An argument comparison operator is not one this crate understands.
    #[error("seccomp profile: unsupported operator `{0}`")]
    UnknownOperator(String),
    /// The profile does not target x86_64.
    #[error("seccomp profile: architecture {0:?} is not supported (x86_64 only)")]
    Architecture(Vec<String>),
    /// `seccompiler` refused the filter.
    #[error("seccomp filter: {0}")]
    Backend(#[from] seccompiler::BackendError),
    /// `seccompiler` could not compile or install the filter.
    #[error("seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

/// One OCI seccomp profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OciProfile {
    /// What the profile is for (ignored by runtimes; Docker accepts the key).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Action for every system call no rule matches.
    pub default_action: String,
    /// errno for an `SCMP_ACT_ERRNO` default action (EPERM when absent, as in runc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// `SCMP_ARCH_*` names.
    pub architectures: Vec<String>,
    /// The rules, in order.
    pub syscalls: Vec<SyscallRule>,
}

/// A rule: these system calls get this action (if the argument conditions hold).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyscallRule {
    /// System call names.
    pub names: Vec<String>,
    /// `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO`, …
    pub action: String,
    /// errno for `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Conditions on arguments, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgCondition>,
    /// Why the rule exists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// A condition on one system call argument, in libseccomp's terms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgCondition {
    /// Argument index (0–5).
    pub index: u8,
    /// The datum; for `SCMP_CMP_MASKED_EQ` the mask.
    pub value: u64,
    /// For `SCMP_CMP_MASKED_EQ` the value the masked argument must equal.
    #[serde(default)]
    pub value_two: u64,
    /// `SCMP_CMP_EQ`, `SCMP_CMP_NE`, `SCMP_CMP_LT`, `SCMP_CMP_LE`, `SCMP_CMP_GT`, `SCMP_CMP_GE`,
    /// `SCMP_CMP_MASKED_EQ`.
    pub op: String,
}

/// An action a rule or the default can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Let the call through.
    Allow,
    /// Fail the call with this errno.
    Errno(u32),
    /// Kill the process.
    KillProcess,
    /// Kill the thread.
    KillThread,
    /// Send SIGSYS.
    Trap,
    /// Allow and log.
    Log,
}

impl Action {
    fn parse(s: &str, errno: Option<u32>) -> Result<Self, SeccompError> {
        Ok(match s {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
            "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
            "SCMP_ACT_TRAP" => Action::Trap,
            "SCMP_ACT_LOG" => Action::Log,
            other => return Err(SeccompError::UnknownAction(other.to_owned())),
        })
    }

    fn backend(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::KillProcess => SeccompAction::KillProcess,
            Action::KillThread => SeccompAction::KillThread,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
        }
    }
}

/// The x86_64 number of a system call, by name.
pub fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

impl OciProfile {
    /// Parses a profile and checks every name, action and operator.
    pub fn from_json(json: &str) -> Result<Self, SeccompError> {
        let p: OciProfile = serde_json::from_str(json)?;
        p.validate()?;
        Ok(p)
    }

    /// Checks names, actions, operators and architectures.
    pub fn validate(&self) -> Result<(), SeccompError> {
        self.default_action()?;
        if !self.architectures.iter().any(|a| a == "SCMP_ARCH_X86_64") {
            return Err(SeccompError::Architecture(self.architectures.clone()));
        }
        for r in &self.syscalls {
            Action::parse(&r.action, r.errno_ret)?;
            for n in &r.names {
                syscall_number(n).ok_or_else(|| SeccompError::UnknownSyscall(n.clone()))?;
            }
            for a in &r.args {
                condition(a)?;
            }
        }
        Ok(())
    }

    /// The default action.
    pub fn default_action(&self) -> Result<Action, SeccompError> {
        Action::parse(&self.default_action, self.default_errno_ret)
    }

    /// Names a rule allows, unconditionally or under argument conditions.
    pub fn allowed(&self) -> BTreeSet<&str> {
        self.syscalls
            .iter()
            .filter(|r| r.action == "SCMP_ACT_ALLOW")
            .flat_map(|r| r.names.iter().map(String::as_str))
            .collect()
    }

    /// Compiles the profile into BPF programs for x86_64, to be installed in order, leaving out
    /// every rule for a name in `remove` (so those fall to the default action).
    ///
    /// `seccompiler` filters have one match action each, so a profile with rules of several
    /// actions becomes several filters: one per non-allow action (`match → action`, otherwise
    /// allow) and last the allowlist (`match → allow`, otherwise the default action), which also
    /// lets through the names the earlier filters handle. The kernel runs every installed
    /// filter and obeys the most restrictive answer, so the stack behaves like the profile.
    pub fn compile(&self, remove: &[&str]) -> Result<Vec<BpfProgram>, SeccompError> {
        self.validate()?;
        let default = self.default_action()?;
        let arch = TargetArch::x86_64;
        // Per action, per call: `None` when a rule matches the call unconditionally, otherwise
        // the alternative argument conditions (any one suffices).
        let mut by_action: BTreeMap<Action, BTreeMap<i64, Option<Vec<SeccompRule>>>> =
            BTreeMap::new();
        for r in &self.syscalls {
            let action = Action::parse(&r.action, r.errno_ret)?;
            let conds = r
                .args
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            for n in &r.names {
                if remove.contains(&n.as_str()) {
                    continue;
                }
                let nr =
                    syscall_number(n).ok_or_else(|| SeccompError::UnknownSyscall(n.clone()))?;
                let entry = by_action
                    .entry(action)
                    .or_default()
                    .entry(nr)
                    .or_insert_with(|| Some(Vec::new()));
                if conds.is_empty() {
                    *entry = None;
                } else if let Some(rules) = entry {
                    rules.push(SeccompRule::new(conds.clone())?);
                }
            }
        }
        // seccompiler: an empty rule list matches the call unconditionally.
        let flatten =
            |m: BTreeMap<i64, Option<Vec<SeccompRule>>>| -> BTreeMap<i64, Vec<SeccompRule>> {
                m.into_iter()
                    .map(|(nr, r)| (nr, r.unwrap_or_default()))
                    .collect()
            };
        let mut allow = flatten(by_action.remove(&Action::Allow).unwrap_or_default());
        let mut programs = Vec::new();
        for (action, rules) in by_action {
            if action == default {
                continue;
            }
            let rules = flatten(rules);
            for nr in rules.keys() {
                allow.entry(*nr).or_default();
            }
            programs.push(build(rules, SeccompAction::Allow, action.backend(), arch)?);
        }
        programs.push(build(allow, default.backend(), SeccompAction::Allow, arch)?);
        Ok(programs)
    }
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch)?;
    Ok(filter.try_into()?)
}

fn condition(a: &ArgCondition) -> Result<SeccompCondition, SeccompError> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(SeccompError::UnknownOperator(other.to_owned())),
    };
    Ok(SeccompCondition::new(
        a.index,
        SeccompCmpArgLen::Qword,
        op,
        value,
    )?)
}

/// Installs compiled programs on every thread of the calling process (TSYNC), in order.
/// Sets `no_new_privs` first, as the kernel requires of an unprivileged caller.
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs {
        seccompiler::apply_filter_all_threads(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Capabilities and `no_new_privs`: what a brainbox-guard process gives up once it no longer
//! needs it.

use caps::{CapSet, Capability, CapsHashSet};

/// Errors changing the process's privileges.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A capability set could not be read or changed.
    #[error("capabilities ({set}): {source}")]
    Caps {
        /// Which set.
        set: &'static str,
        /// Why.
        source: caps::errors::CapsError,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    /// A capability name is not known.
    #[error("unknown capability `{0}`")]
    UnknownCapability(String),
}

fn err(set: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |source| PrivilegeError::Caps { set, source }
}

/// Parses `CAP_BPF` or `bpf` into a capability.
pub fn parse_capability(name: &str) -> Result<Capability, PrivilegeError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map_err(|_| PrivilegeError::UnknownCapability(name.to_owned()))
}

/// What [`retain_only`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropReport {
    /// Bounding-set capabilities removed.
    pub bounding_dropped: usize,
    /// Bounding-set capabilities that could not be removed (no CAP_SETPCAP: already unprivileged).
    pub bounding_kept: usize,
}

/// Reduces the process to `keep`: the bounding set (so no exec can regain more), then the
/// ambient and inheritable sets (emptied), then the permitted and effective sets (only `keep`).
/// With `keep` empty the process has no capability at all, even as uid 0.
///
/// Capabilities are per thread on Linux: call this before starting other threads, or from each.
pub fn retain_only(keep: &CapsHashSet) -> Result<DropReport, PrivilegeError> {
    let mut report = DropReport::default();
    let bounding = caps::read(None, CapSet::Bounding).map_err(err("bounding"))?;
    for cap in bounding.difference(keep) {
        match caps::drop(None, CapSet::Bounding, *cap) {
            Ok(()) => report.bounding_dropped += 1,
            // Without CAP_SETPCAP the bounding set cannot shrink; no_new_privs and an empty
            // permitted set still mean nothing in it can be used.
            Err(_) => report.bounding_kept += 1,
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("inheritable"))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("permitted"))?;
    let target: CapsHashSet = permitted.intersection(keep).copied().collect();
    caps::set(None, CapSet::Effective, &target).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &target).map_err(err("permitted"))?;
    Ok(report)
}

/// Drops every capability (see [`retain_only`]).
pub fn drop_all() -> Result<DropReport, PrivilegeError> {
    retain_only(&CapsHashSet::new())
}

/// Sets `no_new_privs`: no exec of this process or its children can gain privileges
/// (set-user-ID bits and file capabilities are ignored).
pub fn set_no_new_privs() -> Result<(), PrivilegeError> {
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

/// Marks the process non-dumpable: no core dumps of its secrets, and other processes of the same
/// uid can no longer ptrace it or read its `/proc/<pid>/mem`, `environ` or fds.
pub fn set_not_dumpable() -> Result<(), PrivilegeError> {
    nix::sys::prctl::set_dumpable(false).map_err(PrivilegeError::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse_with_or_without_prefix() {
        assert_eq!(parse_capability("CAP_BPF").unwrap(), Capability::CAP_BPF);
        assert_eq!(
            parse_capability("perfmon").unwrap(),
            Capability::CAP_PERFMON
        );
        assert!(parse_capability("CAP_FLY").is_err());
    }
}

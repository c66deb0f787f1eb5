//! The node agent needs a few strong capabilities (eBPF, cgroups, reading other processes) and
//! none of the others a root container would have. At start, while the process still has one
//! thread (capabilities are per thread; every thread started later inherits the result), it
//! narrows itself to the list in [`DEFAULT_KEEP`] (or `privileges.keep`):
//!
//! - `bounding` (default): the bounding set becomes the keep list, the ambient and inheritable
//!   sets are emptied, no_new_privs is set. Nothing the agent or a child ever executes can
//!   regain a dropped capability; the effective set is left as it is for the features that run
//!   in the agent today.
//! - `strict`: also the permitted and effective sets become the keep list (what the DaemonSet
//!   uses: the same list it grants).
//! - `off`: nothing is changed (development only).
//!
//! Why each kept capability is needed is in docs/hardening.md.

use brainbox_hardening::privileges::{self, parse_capability, PrivilegeError};
use caps::{CapSet, CapsHashSet};
use serde::Deserialize;

/// The capabilities the agent keeps by default.
pub const DEFAULT_KEEP: &[&str] = &[
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "CAP_NET_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_KILL",
    "CAP_SYS_RESOURCE",
    // Sealed evidence is made immutable (`chattr +i`, a child process: it gets no more than
    // the bounding set).
    "CAP_LINUX_IMMUTABLE",
];

/// How far to go.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrivilegeMode {
    /// Change nothing.
    Off,
    /// Bounding set to the keep list; ambient and inheritable emptied; no_new_privs.
    #[default]
    Bounding,
    /// Also permitted and effective to the keep list.
    Strict,
}

/// `[privileges]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesConfig {
    /// `off`, `bounding` (default) or `strict`.
    pub mode: PrivilegeMode,
    /// Capabilities to keep (`CAP_BPF` or `bpf`).
    pub keep: Vec<String>,
}

impl Default for PrivilegesConfig {
    fn default() -> Self {
        Self {
            mode: PrivilegeMode::Bounding,
            keep: DEFAULT_KEEP.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl PrivilegesConfig {
    /// The keep list as capabilities; names the first unknown one.
    pub fn keep_set(&self) -> Result<CapsHashSet, PrivilegeError> {
        self.keep.iter().map(|n| parse_capability(n)).collect()
    }
}

/// What [`apply`] left the process with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The mode applied.
    pub mode: PrivilegeMode,
    /// Capabilities removed from the bounding set.
    pub bounding_dropped: usize,
    /// The effective set afterwards, by name.
    pub effective: Vec<String>,
}

/// Narrows the process's capabilities as configured. Call before starting any thread.
pub fn apply(cfg: &PrivilegesConfig) -> Result<Applied, PrivilegeError> {
    let keep = cfg.keep_set()?;
    let mut bounding_dropped = 0;
    match cfg.mode {
        PrivilegeMode::Off => {}
        PrivilegeMode::Bounding => {
            let bounding =
                caps::read(None, CapSet::Bounding).map_err(|source| PrivilegeError::Caps {
                    set: "bounding",
                    source,
                })?;
            for cap in bounding.difference(&keep) {
                if caps::drop(None, CapSet::Bounding, *cap).is_ok() {
                    bounding_dropped += 1;
                }
            }
            for (set, name) in [
                (CapSet::Ambient, "ambient"),
                (CapSet::Inheritable, "inheritable"),
            ] {
                caps::clear(None, set)
                    .map_err(|source| PrivilegeError::Caps { set: name, source })?;
            }
            privileges::set_no_new_privs()?;
        }
        PrivilegeMode::Strict => {
            bounding_dropped = privileges::retain_only(&keep)?.bounding_dropped;
            privileges::set_no_new_privs()?;
        }
    }
    let mut effective: Vec<String> = caps::read(None, CapSet::Effective)
        .map_err(|source| PrivilegeError::Caps {
            set: "effective",
            source,
        })?
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    effective.sort();
    Ok(Applied {
        mode: cfg.mode,
        bounding_dropped,
        effective,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keep_list_parses_and_unknown_names_are_refused() {
        let cfg = PrivilegesConfig::default();
        assert_eq!(cfg.keep_set().unwrap().len(), DEFAULT_KEEP.len());
        let bad = PrivilegesConfig {
            keep: vec!["CAP_TELEPORT".into()],
            ..Default::default()
        };
        assert!(bad.keep_set().is_err());
    }
}

//! Setting and clearing the filesystem's immutable flag (`FS_IMMUTABLE_FL`, `chattr +i`).
//!
//! The workspace forbids `unsafe`, and the flag is only reachable through an ioctl, so we run
//! e2fsprogs' `chattr`, batching many paths into one process. Needs `CAP_LINUX_IMMUTABLE`; a
//! filesystem or a container without it refuses, and the caller records that instead.

use std::{path::Path, process::Command};

/// Runs `chattr <flag> [-R] -- paths...`; returns the tool's complaint on failure.
fn chattr(flag: &str, recursive: bool, paths: &[&Path]) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("chattr");
    if recursive {
        cmd.arg("-R");
    }
    cmd.arg(flag).arg("--").args(paths);
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "chattr {flag} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run chattr (e2fsprogs): {e}")),
    }
}

/// Marks `paths` immutable.
pub(crate) fn set(paths: &[&Path]) -> Result<(), String> {
    chattr("+i", false, paths)
}

/// Clears the immutable flag on `dir` and everything below it (for retention and tests).
pub(crate) fn clear_tree(dir: &Path) -> Result<(), String> {
    chattr("-i", true, &[dir])
}

//! Finding a process's cgroup v2 id: `/proc/<pid>/cgroup` gives the path, the cgroup2 mount
//! gives the directory, and the directory's inode is the id `bpf_get_current_cgroup_id()` returns.
//! This works the same for Docker's cgroupfs and systemd drivers and for Kubernetes.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Errors resolving a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 file system is mounted.
    #[error("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)")]
    NoCgroup2,
    /// The process has no unified-hierarchy entry.
    #[error("process {0} has no cgroup v2 entry in /proc/{0}/cgroup")]
    NoEntry(u32),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Finds the cgroup2 mount point in a mountinfo text.
pub fn cgroup2_mount_from(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// The host's cgroup2 mount point.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let path = PathBuf::from("/proc/self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })?;
    cgroup2_mount_from(&text).ok_or(CgroupError::NoCgroup2)
}

/// The unified-hierarchy path in a `/proc/<pid>/cgroup` text.
pub fn unified_path_from(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// The cgroup directory and id of process `pid`.
pub fn cgroup_of_pid(mount: &Path, pid: u32) -> Result<(PathBuf, u64), CgroupError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })?;
    let rel = unified_path_from(&text).ok_or(CgroupError::NoEntry(pid))?;
    let dir = mount.join(rel.trim_start_matches('/'));
    let meta = std::fs::metadata(&dir).map_err(|source| CgroupError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok((dir, meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mountinfo() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu\n\
                  35 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_from(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount_from("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn unified_path() {
        let t = "1:cpu:/docker/abc\n0::/docker/abc\n";
        assert_eq!(unified_path_from(t), Some("/docker/abc"));
        assert_eq!(unified_path_from("1:cpu:/x\n"), None);
    }

    #[test]
    fn own_cgroup_resolves() {
        let mount = cgroup2_mount().unwrap();
        let (dir, id) = cgroup_of_pid(&mount, std::process::id()).unwrap();
        assert!(dir.starts_with(&mount));
        assert!(id > 0);
    }
}

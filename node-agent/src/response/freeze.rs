//! Freezing and killing a container through its cgroup v2 directory: `cgroup.freeze` stops every
//! task at once (nothing inside can hide, delete or exfiltrate while evidence is taken) and
//! `cgroup.kill` kills them all, frozen or not, without racing forks.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Errors freezing or killing.
#[derive(Debug, thiserror::Error)]
pub enum CgroupActionError {
    /// A control file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The cgroup did not report frozen within the deadline.
    #[error("cgroup {0} did not report frozen within {1:?}")]
    Timeout(PathBuf, Duration),
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupActionError> {
    std::fs::write(&path, value).map_err(|source| CgroupActionError::Io { path, source })
}

/// Whether `cgroup.events` says the cgroup is frozen.
pub fn is_frozen(dir: &Path) -> Result<bool, CgroupActionError> {
    let path = dir.join("cgroup.events");
    let text =
        std::fs::read_to_string(&path).map_err(|source| CgroupActionError::Io { path, source })?;
    Ok(parse_frozen(&text))
}

/// `frozen 1` in a `cgroup.events` text.
pub fn parse_frozen(events: &str) -> bool {
    events
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["frozen", "1"])
}

/// Freezes the cgroup and waits (bounded) until the kernel reports every task frozen.
pub fn freeze(dir: &Path, deadline: Duration) -> Result<Duration, CgroupActionError> {
    let start = Instant::now();
    write(dir.join("cgroup.freeze"), "1")?;
    while !is_frozen(dir)? {
        if start.elapsed() > deadline {
            return Err(CgroupActionError::Timeout(dir.to_owned(), deadline));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(start.elapsed())
}

/// Thaws the cgroup.
pub fn thaw(dir: &Path) -> Result<(), CgroupActionError> {
    write(dir.join("cgroup.freeze"), "0")
}

/// Kills every task in the cgroup (works on frozen tasks too).
pub fn kill(dir: &Path) -> Result<(), CgroupActionError> {
    write(dir.join("cgroup.kill"), "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_events() {
        assert!(parse_frozen("populated 1\nfrozen 1\n"));
        assert!(!parse_frozen("populated 1\nfrozen 0\n"));
        assert!(!parse_frozen(""));
    }

    #[test]
    fn missing_cgroup_is_an_error_not_a_panic() {
        let e = freeze(Path::new("/nonexistent/cgroup"), Duration::from_millis(10)).unwrap_err();
        assert!(e.to_string().contains("cgroup.freeze"), "{e}");
    }
}

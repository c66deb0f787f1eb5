//! Writing the SVID, its key and the bundle so that no reader ever sees half a file or a
//! certificate with another certificate's key (spiffe-helper's known failures).
//!
//! The layout is Kubernetes' atomic-writer layout:
//!
//! ```text
//! /run/svid/..2026_11_25_17_00_01.123456789/{svid.pem, svid_key.pem, bundle.pem}
//! /run/svid/..data -> ..2026_11_25_17_00_01.123456789       (swapped by one rename)
//! /run/svid/svid.pem -> ..data/svid.pem                     (and svid_key.pem, bundle.pem)
//! ```
//!
//! Each version directory is written completely (files created exclusively, 0600 for the key,
//! fsynced, then the directory fsynced) before `..data` is replaced by renaming a new symlink
//! over it. A reader that resolves `..data` once and reads the files inside it always gets a
//! matching set; a reader that opens `svid.pem` and `svid_key.pem` separately can straddle a
//! swap only between its two `open` calls. Single files (JWTs) are written to a temporary
//! file in the same directory, fsynced and renamed.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{symlink, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// The symlink that points at the current version directory.
pub const DATA_LINK: &str = "..data";
/// Certificate chain (leaf first).
pub const SVID_FILE: &str = "svid.pem";
/// Private key (PKCS#8), mode 0600.
pub const KEY_FILE: &str = "svid_key.pem";
/// Trust bundle.
pub const BUNDLE_FILE: &str = "bundle.pem";

/// Versions kept besides the current one, so a reader holding the previous version's path
/// can finish reading it.
const KEEP_OLD_VERSIONS: usize = 1;

fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes one file atomically: temporary file in the same directory, fsync, rename, fsync the
/// directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, data, mode)?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes a new version of the SVID files into `dir` and makes it current atomically.
/// Returns the version directory.
pub fn publish(
    dir: &Path,
    chain_pem: &str,
    key_pem: &str,
    bundle_pem: &str,
) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let now = time_stamp();
    let mut version = dir.join(format!("..{now}"));
    let mut n = 0;
    while version.exists() {
        n += 1;
        version = dir.join(format!("..{now}_{n}"));
    }
    fs::create_dir(&version)?;
    write_new(&version.join(SVID_FILE), chain_pem.as_bytes(), 0o644)?;
    write_new(&version.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_new(&version.join(BUNDLE_FILE), bundle_pem.as_bytes(), 0o644)?;
    sync_dir(&version)?;

    let version_name = version
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&version_name, &tmp_link)?;
    // The one atomic step: readers see the old set or the new set.
    fs::rename(&tmp_link, dir.join(DATA_LINK))?;
    for f in [SVID_FILE, KEY_FILE, BUNDLE_FILE] {
        let link = dir.join(f);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(f), &link)?;
        }
    }
    sync_dir(dir)?;
    prune(dir, &version_name)?;
    Ok(version)
}

/// Removes version directories older than the newest `KEEP_OLD_VERSIONS` besides `current`.
fn prune(dir: &Path, current: &std::ffi::OsStr) -> std::io::Result<()> {
    let mut versions: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let s = n.to_string_lossy();
            s.starts_with("..") && s != DATA_LINK && s != "..data_tmp" && n != current
        })
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    versions.sort();
    let drop_n = versions.len().saturating_sub(KEEP_OLD_VERSIONS);
    for (_, p) in versions.into_iter().take(drop_n) {
        fs::remove_dir_all(p)?;
    }
    Ok(())
}

fn time_stamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn publish_swaps_versions_and_keeps_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = publish(dir.path(), "C1", "K1", "B1").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(SVID_FILE)).unwrap(),
            "C1"
        );
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let v2 = publish(dir.path(), "C2", "K2", "B2").unwrap();
        assert_ne!(v1, v2);
        assert_eq!(fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(), "K2");
        assert_eq!(
            fs::read_to_string(dir.path().join(BUNDLE_FILE)).unwrap(),
            "B2"
        );
        publish(dir.path(), "C3", "K3", "B3").unwrap();
        // The first version is pruned; the previous one is kept for slow readers.
        assert!(!v1.exists());
        assert!(v2.exists());
    }

    #[test]
    fn write_atomic_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jwt_svc.token");
        write_atomic(&p, b"first", 0o600).unwrap();
        write_atomic(&p, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }
}

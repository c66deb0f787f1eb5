//! The known-good image baseline: the image ids (content digests) brainboxes may run, from
//! `images.allowed` and from the lock file `scripts/images.sh` writes (`deploy/images.lock`).
//! A watched container started from any other image is reported as an `image_unapproved` event
//! (a JSON line like exec events). With no allowed image configured the check is off.

use crate::runtime::ContainerInfo;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeSet, path::PathBuf};

/// `[images]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Approved image ids (`sha256:…`).
    pub allowed: Vec<String>,
    /// A lock file (`deploy/images.lock` format) whose image ids are approved too.
    pub lock_file: Option<PathBuf>,
}

/// Errors loading the baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The lock file cannot be read or parsed.
    #[error("images.lock_file {path}: {reason}")]
    LockFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An allowed entry is not an image id.
    #[error("images.allowed: `{0}` is not an image id (sha256:<64 hex>)")]
    NotADigest(String),
}

/// `deploy/images.lock`: what `scripts/images.sh` built.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImagesLock {
    /// One entry per image.
    pub images: Vec<LockedImage>,
}

/// One built image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// `sidecar`, `node-agent`, `brainboxctl`, or a workload image's name.
    pub name: String,
    /// The tag it was built as.
    pub reference: String,
    /// Image id (config digest), what the runtime reports for a container.
    pub id: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The approved image ids.
#[derive(Debug, Clone, Default)]
pub struct ImageBaseline {
    allowed: BTreeSet<String>,
}

/// The `image_unapproved` event.
#[derive(Debug, Serialize)]
pub struct ImageUnapproved<'a> {
    /// Always `image_unapproved`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 3339 wall-clock time.
    pub time: String,
    /// Node name.
    pub node: &'a str,
    /// The container (its `image_id` is the unapproved one).
    pub container: &'a ContainerInfo,
    /// How many ids the baseline holds.
    pub baseline_size: usize,
}

impl ImageBaseline {
    /// Builds the baseline from the configuration.
    pub fn load(cfg: &ImagesConfig) -> Result<Self, BaselineError> {
        let mut allowed = BTreeSet::new();
        for a in &cfg.allowed {
            if !is_digest(a) {
                return Err(BaselineError::NotADigest(a.clone()));
            }
            allowed.insert(a.clone());
        }
        if let Some(path) = &cfg.lock_file {
            let err = |reason: String| BaselineError::LockFile {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let lock: ImagesLock = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
            for i in lock.images {
                if !is_digest(&i.id) {
                    return Err(err(format!("`{}` is not an image id", i.id)));
                }
                allowed.insert(i.id);
            }
        }
        Ok(Self { allowed })
    }

    /// True when a baseline is configured.
    pub fn enforced(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// The event to report for a container, if its image is not approved.
    pub fn check<'a>(&self, node: &'a str, c: &'a ContainerInfo) -> Option<ImageUnapproved<'a>> {
        if !self.enforced() || self.allowed.contains(&c.image_id) {
            return None;
        }
        Some(ImageUnapproved {
            kind: "image_unapproved",
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            node,
            container: c,
            baseline_size: self.allowed.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(image_id: &str) -> ContainerInfo {
        ContainerInfo {
            id: "c1".into(),
            name: "n".into(),
            image: "img:1".into(),
            image_id: image_id.into(),
            profile: "default".into(),
            pod: None,
            namespace: None,
            pod_uid: None,
            role: None,
            cgroup_id: 1,
            cgroup_dir: Default::default(),
            writable: None,
            privileged: false,
            init_pid: 0,
            start_ts: None,
        }
    }

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn unapproved_images_are_reported_and_approved_ones_are_not() {
        let b = ImageBaseline::load(&ImagesConfig {
            allowed: vec![A.into()],
            lock_file: None,
        })
        .unwrap();
        assert!(b.check("node", &info(A)).is_none());
        let c = info(B);
        let ev = b.check("node", &c).unwrap();
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "image_unapproved");
        assert_eq!(v["container"]["image_id"], B);
    }

    #[test]
    fn no_baseline_means_no_check() {
        let b = ImageBaseline::load(&ImagesConfig::default()).unwrap();
        assert!(b.check("node", &info(B)).is_none());
    }

    #[test]
    fn lock_file_ids_are_approved_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("images.lock");
        std::fs::write(
            &p,
            format!(
                r#"{{"images":[{{"name":"sidecar","reference":"x:1","id":"{B}","size_bytes":1}}]}}"#
            ),
        )
        .unwrap();
        let b = ImageBaseline::load(&ImagesConfig {
            allowed: vec![],
            lock_file: Some(p.clone()),
        })
        .unwrap();
        assert!(b.check("node", &info(B)).is_none());
        assert!(b.check("node", &info(A)).is_some());
        std::fs::write(&p, "not json").unwrap();
        assert!(ImageBaseline::load(&ImagesConfig {
            allowed: vec![],
            lock_file: Some(p)
        })
        .is_err());
        assert!(ImageBaseline::load(&ImagesConfig {
            allowed: vec!["latest".into()],
            lock_file: None
        })
        .is_err());
    }
}

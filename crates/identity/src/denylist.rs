//! The revocation deny-list: SPIFFE IDs and certificate serial numbers that must no longer be
//! issued or accepted. Loaded from a YAML/JSON file (watched for changes) and updated by
//! messages (one entry each) from NATS. Shared as a cheap snapshot behind a watch channel so a
//! change reaches issuers and validators at once.

use serde::Deserialize;
use std::{collections::HashSet, path::Path, sync::Arc};
use tokio::sync::watch;

/// Errors loading a deny-list.
#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The content does not match the schema.
    #[error("{0}")]
    Parse(String),
}

/// The file format (YAML or JSON):
/// `{ spiffe_ids: ["spiffe://td/x"], serials: ["0a1b…"] }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DenyListFile {
    /// Revoked SPIFFE IDs.
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// Revoked serial numbers, hex (case, colons and leading zeros do not matter).
    #[serde(default)]
    pub serials: Vec<String>,
}

/// One revocation message (NATS subject `brainbox.revocations`), JSON.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// A SPIFFE ID to revoke.
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// A serial number to revoke.
    #[serde(default)]
    pub serial: Option<String>,
}

/// A snapshot of the deny-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    ids: HashSet<String>,
    serials: HashSet<String>,
}

/// Normalises a serial to lowercase hex without separators or leading zeros.
pub fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let t = hex.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

impl DenyList {
    /// Builds a snapshot from the file form.
    pub fn from_file_form(f: &DenyListFile) -> Self {
        Self {
            ids: f.spiffe_ids.iter().cloned().collect(),
            serials: f.serials.iter().map(|s| normalize_serial(s)).collect(),
        }
    }

    /// Parses YAML (JSON is YAML too). An empty text is an error, not an empty list: a file
    /// caught half-written (truncated) by a non-atomic writer must not un-revoke everything.
    /// Write `spiffe_ids: []` to clear the list.
    pub fn parse(text: &str) -> Result<Self, DenyListError> {
        if text.trim().is_empty() {
            return Err(DenyListError::Parse(
                "empty deny-list (write `spiffe_ids: []` to clear it)".into(),
            ));
        }
        let f: DenyListFile =
            serde_yaml::from_str(text).map_err(|e| DenyListError::Parse(e.to_string()))?;
        Ok(Self::from_file_form(&f))
    }

    /// Loads a file.
    pub fn load(path: &Path) -> Result<Self, DenyListError> {
        let text = std::fs::read_to_string(path).map_err(|source| DenyListError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// True if this SPIFFE ID is revoked.
    pub fn denies_id(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// True if this serial is revoked.
    pub fn denies_serial(&self, serial: &str) -> bool {
        !self.serials.is_empty() && self.serials.contains(&normalize_serial(serial))
    }

    /// Adds one revocation.
    pub fn add(&mut self, r: &Revocation) {
        if let Some(id) = &r.spiffe_id {
            self.ids.insert(id.clone());
        }
        if let Some(s) = &r.serial {
            self.serials.insert(normalize_serial(s));
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ids.len() + self.serials.len()
    }

    /// True when nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live deny-list: the file's content plus revocations pushed at run time.
#[derive(Debug, Clone)]
pub struct SharedDenyList {
    tx: Arc<watch::Sender<Arc<DenyList>>>,
    pushed: Arc<std::sync::Mutex<DenyList>>,
    file: Arc<std::sync::Mutex<DenyList>>,
}

impl Default for SharedDenyList {
    fn default() -> Self {
        let (tx, _) = watch::channel(Arc::new(DenyList::default()));
        Self {
            tx: Arc::new(tx),
            pushed: Arc::default(),
            file: Arc::default(),
        }
    }
}

impl SharedDenyList {
    /// The current snapshot.
    pub fn current(&self) -> Arc<DenyList> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<DenyList>> {
        self.tx.subscribe()
    }

    fn publish(&self) {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let pushed = self.pushed.lock().unwrap_or_else(|p| p.into_inner());
        let mut merged = file;
        merged.ids.extend(pushed.ids.iter().cloned());
        merged.serials.extend(pushed.serials.iter().cloned());
        self.tx.send_replace(Arc::new(merged));
    }

    /// Replaces the file part (after the file changed).
    pub fn set_file(&self, list: DenyList) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = list;
        self.publish();
    }

    /// Adds a pushed revocation (NATS). Pushed entries stay until the process restarts; the
    /// operator makes them permanent by adding them to the file.
    pub fn push(&self, r: &Revocation) {
        self.pushed.lock().unwrap_or_else(|p| p.into_inner()).add(r);
        self.publish();
    }

    /// Loads `path` now and reloads it whenever it changes. The returned watcher must be kept
    /// alive. A file that fails to parse keeps the previous list (and is logged): a typo must
    /// not un-revoke everything.
    pub fn watch_file(&self, path: &Path) -> Result<notify::RecommendedWatcher, DenyListError> {
        use notify::Watcher;
        self.set_file(DenyList::load(path)?);
        let me = self.clone();
        let file = path.to_owned();
        let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_err() {
                return;
            }
            match DenyList::load(&file) {
                Ok(l) => {
                    if *me.file.lock().unwrap_or_else(|p| p.into_inner()) != l {
                        tracing::info!(path = %file.display(), entries = l.len(), "deny-list reloaded");
                        me.set_file(l);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "deny-list not reloaded; keeping the previous one"),
            }
        })
        .map_err(|e| DenyListError::Parse(e.to_string()))?;
        // Watch the directory: editors and `mv` replace the file, which drops a file watch.
        let dir = path.parent().unwrap_or(Path::new("."));
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| DenyListError::Parse(e.to_string()))?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let l =
            DenyList::parse("spiffe_ids: [\"spiffe://t/a\"]\nserials: [\"00:0A:bc\"]\n").unwrap();
        assert!(l.denies_id("spiffe://t/a"));
        assert!(!l.denies_id("spiffe://t/b"));
        assert!(l.denies_serial("abc"));
        assert!(l.denies_serial("0ABC"));
        assert!(!l.denies_serial("abd"));
        assert!(DenyList::parse("spiffe_id: []").is_err());
        assert!(DenyList::parse("").is_err());
        assert!(DenyList::parse("spiffe_ids: []").unwrap().is_empty());
    }

    #[tokio::test]
    async fn file_changes_and_pushes_reach_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny.yaml");
        std::fs::write(&path, "spiffe_ids: []\n").unwrap();
        let shared = SharedDenyList::default();
        let _w = shared.watch_file(&path).unwrap();
        let mut rx = shared.subscribe();
        let start = std::time::Instant::now();
        std::fs::write(&path, "spiffe_ids: [\"spiffe://t/x\"]\n").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                rx.changed().await.unwrap();
                if rx.borrow().denies_id("spiffe://t/x") {
                    break;
                }
            }
        })
        .await
        .unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // A broken file keeps the previous list.
        std::fs::write(&path, "spiffe_ids: {{{").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(shared.current().denies_id("spiffe://t/x"));
        shared.push(&Revocation {
            spiffe_id: None,
            serial: Some("FF".into()),
        });
        assert!(shared.current().denies_serial("ff"));
        assert!(shared.current().denies_id("spiffe://t/x"));
    }
}

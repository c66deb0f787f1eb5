//! Content-addressed, sealed evidence bundles.
//!
//! A bundle is a directory `<store>/<id>/` holding the captured files and `manifest.json`, which
//! lists every file with its size and BLAKE3 hash, the capture bounds, and whether the files
//! could be made immutable. The bundle id is the BLAKE3 hash of the manifest's bytes, so the id
//! (which goes into the audit chain and the alert) pins every byte of the bundle.
//!
//! Files are written into `<store>/.staging/<random>/`, made read-only (0444) and immutable
//! (`chattr +i`) before the manifest is written, and the directory is renamed into place only
//! after everything is on disk, so a bundle under its id is always complete.

use crate::{
    chain::{AuditLog, ChainError, NewRecord},
    immutable,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{Read, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this crate writes.
pub const FORMAT: &str = "brainbox-evidence/1";

/// Size limits of one capture; what did not fit is cut and flagged, never silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Largest single file kept.
    pub max_file_bytes: u64,
    /// Largest bundle kept (all files).
    pub max_total_bytes: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_file_bytes: 256 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle, `/`-separated.
    pub path: String,
    /// Size in bytes as stored.
    pub size: u64,
    /// BLAKE3 of the stored bytes.
    pub blake3: String,
    /// True when the source was larger than the bounds allowed and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// How the files were protected when sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    /// File mode of every evidence file.
    pub mode: String,
    /// Whether `FS_IMMUTABLE_FL` was set on every file.
    pub immutable: bool,
    /// Why it could not be set (filesystem or capability), if not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_error: Option<String>,
}

/// The bundle manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// When the bundle was sealed (RFC 3339).
    pub created: String,
    /// What the bundle is about (node, container, rule, alert id...), from the caller.
    pub subject: serde_json::Value,
    /// The bounds the capture ran under.
    pub bounds: Bounds,
    /// Every file, sorted by path.
    pub files: Vec<FileEntry>,
    /// How the files were protected.
    pub protection: Protection,
}

/// Result of sealing a bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SealReport {
    /// The bundle id (BLAKE3 of the manifest).
    pub id: String,
    /// Where the bundle now lives.
    pub path: PathBuf,
    /// Number of files (without the manifest).
    pub files: usize,
    /// Total bytes of the files.
    pub bytes: u64,
    /// Sequence number of the `evidence.sealed` audit record.
    pub audit_seq: u64,
    /// Whether the files and directories are immutable.
    pub immutable: bool,
}

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum BundleProblem {
    /// The manifest is missing or unreadable.
    #[error("manifest.json is missing or unreadable: {reason}")]
    ManifestUnreadable { reason: String },
    /// The manifest's hash is not the bundle id.
    #[error("manifest.json was changed: its hash {actual} is not the bundle id")]
    ManifestChanged { actual: String },
    /// A listed file is gone.
    #[error("{path}: missing")]
    Missing { path: String },
    /// A file not in the manifest is present.
    #[error("{path}: extra file not in the manifest")]
    Extra { path: String },
    /// A file is shorter than listed.
    #[error("{path}: truncated ({actual} of {expected} bytes)")]
    Truncated {
        path: String,
        expected: u64,
        actual: u64,
    },
    /// A file's content differs from its listed hash.
    #[error("{path}: content changed (hash mismatch)")]
    Changed { path: String },
    /// A file is longer than listed.
    #[error("{path}: grew ({actual} bytes, {expected} listed)")]
    Grew {
        path: String,
        expected: u64,
        actual: u64,
    },
    /// Something that is not a regular file or directory (symlink, fifo, ...).
    #[error("{path}: not a regular file")]
    NotRegular { path: String },
}

/// Errors of the evidence store.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file path given to the writer is not a plain relative path.
    #[error("evidence path `{0}` is not a plain relative path")]
    BadPath(String),
    /// The same path was added twice.
    #[error("evidence path `{0}` was added twice")]
    Duplicate(String),
    /// A bundle id is not 64 hex characters.
    #[error("`{0}` is not a bundle id (64 hex characters)")]
    BadId(String),
    /// No bundle with that id.
    #[error("no bundle {0}")]
    NotFound(String),
    /// The bundle does not match its manifest; the first problem is named.
    #[error("bundle {id} failed verification: {}", problems.first().map(ToString::to_string).unwrap_or_default())]
    Tampered {
        id: String,
        problems: Vec<BundleProblem>,
    },
    /// Appending the seal to the audit chain failed.
    #[error("cannot record the seal in the audit log: {0}")]
    Audit(#[from] ChainError),
    /// Serialising JSON evidence failed.
    #[error("cannot serialise {path}: {reason}")]
    Json { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks that `id` looks like a bundle id.
pub fn check_id(id: &str) -> Result<(), BundleError> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(BundleError::BadId(id.to_owned()))
    }
}

/// Validates a relative evidence path: `/`-separated normal components, no `.`/`..`, no NUL,
/// not the manifest.
fn check_rel(rel: &str) -> Result<(), BundleError> {
    let bad = || BundleError::BadPath(rel.to_owned());
    if rel.is_empty() || rel.len() > 1024 || rel == MANIFEST || rel.contains('\0') {
        return Err(bad());
    }
    for c in rel.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(bad());
        }
    }
    Ok(())
}

/// The evidence store: a directory of bundles.
#[derive(Debug, Clone)]
pub struct EvidenceStore {
    root: PathBuf,
}

/// A bundle as listed.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    /// The bundle id.
    pub id: String,
    /// When it was sealed, from the manifest (empty if unreadable).
    pub created: String,
    /// Number of files.
    pub files: usize,
    /// Total bytes.
    pub bytes: u64,
    /// The manifest's subject.
    pub subject: serde_json::Value,
}

impl EvidenceStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, BundleError> {
        fs::create_dir_all(root.join(".staging")).map_err(io(root))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a new bundle about `subject` under `bounds`.
    pub fn writer(
        &self,
        subject: serde_json::Value,
        bounds: Bounds,
    ) -> Result<EvidenceWriter, BundleError> {
        let nonce = blake3::hash(
            format!(
                "{}:{:?}:{}",
                std::process::id(),
                std::time::SystemTime::now(),
                crate::now_rfc3339()
            )
            .as_bytes(),
        )
        .to_hex();
        let staging = self.root.join(".staging").join(&nonce[..32]);
        fs::create_dir(&staging).map_err(io(&staging))?;
        Ok(EvidenceWriter {
            root: self.root.clone(),
            staging,
            subject,
            bounds,
            files: BTreeMap::new(),
            total: 0,
            sealed: false,
        })
    }

    /// Path of bundle `id` (checks the id's form, not existence).
    pub fn bundle_path(&self, id: &str) -> Result<PathBuf, BundleError> {
        check_id(id)?;
        Ok(self.root.join(id))
    }

    /// Lists the bundles in the store, oldest first.
    pub fn list(&self) -> Result<Vec<BundleSummary>, BundleError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let e = e.map_err(io(&self.root))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if check_id(&name).is_err() {
                continue;
            }
            let (created, files, bytes, subject) = match self.manifest(&name) {
                Ok(m) => (
                    m.created,
                    m.files.len(),
                    m.files.iter().map(|f| f.size).sum(),
                    m.subject,
                ),
                Err(_) => (String::new(), 0, 0, serde_json::Value::Null),
            };
            out.push(BundleSummary {
                id: name,
                created,
                files,
                bytes,
                subject,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Reads a bundle's manifest without verifying the files.
    pub fn manifest(&self, id: &str) -> Result<Manifest, BundleError> {
        let dir = self.bundle_path(id)?;
        if !dir.is_dir() {
            return Err(BundleError::NotFound(id.to_owned()));
        }
        let p = dir.join(MANIFEST);
        let bytes = fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&bytes).map_err(|e| BundleError::Json {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Verifies bundle `id`: see [`verify_bundle`].
    pub fn verify(&self, id: &str) -> Result<Manifest, BundleError> {
        let dir = self.bundle_path(id)?;
        if !dir.is_dir() {
            return Err(BundleError::NotFound(id.to_owned()));
        }
        verify_bundle(&dir)
    }

    /// Copies bundle `id` to `<dest>/<id>/` (read-only but not immutable) after verifying it,
    /// and verifies the copy.
    pub fn export(&self, id: &str, dest: &Path) -> Result<PathBuf, BundleError> {
        self.verify(id)?;
        let src = self.bundle_path(id)?;
        let out = dest.join(id);
        copy_tree(&src, &out)?;
        verify_bundle(&out)?;
        Ok(out)
    }

    /// Deletes bundle `id` (retention, tests): clears the immutable flags first.
    pub fn remove(&self, id: &str) -> Result<(), BundleError> {
        let dir = self.bundle_path(id)?;
        remove_tree(&dir)
    }
}

/// Removes a directory tree that may hold immutable, read-only evidence.
pub fn remove_tree(dir: &Path) -> Result<(), BundleError> {
    if !dir.exists() {
        return Ok(());
    }
    // Best effort: on a filesystem without the flag chattr fails and nothing is immutable anyway.
    let _ = immutable::clear_tree(dir);
    make_writable(dir).map_err(io(dir))?;
    fs::remove_dir_all(dir).map_err(io(dir))
}

fn make_writable(dir: &Path) -> std::io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            make_writable(&e.path())?;
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), BundleError> {
    fs::create_dir_all(dst).map_err(io(dst))?;
    for e in fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        let ft = e.file_type().map_err(io(&e.path()))?;
        let to = dst.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else if ft.is_file() {
            fs::copy(e.path(), &to).map_err(io(&to))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o444)).map_err(io(&to))?;
        }
    }
    Ok(())
}

/// Writes one bundle. Dropping it unsealed removes the staging directory.
#[derive(Debug)]
pub struct EvidenceWriter {
    root: PathBuf,
    staging: PathBuf,
    subject: serde_json::Value,
    bounds: Bounds,
    files: BTreeMap<String, FileEntry>,
    total: u64,
    sealed: bool,
}

impl EvidenceWriter {
    /// Adds a file with `bytes` (cut to the bounds if needed).
    pub fn add_file(&mut self, rel: &str, bytes: &[u8]) -> Result<&FileEntry, BundleError> {
        self.add_reader(rel, bytes)
    }

    /// Adds `value` as pretty JSON.
    pub fn add_json<T: Serialize>(
        &mut self,
        rel: &str,
        value: &T,
    ) -> Result<&FileEntry, BundleError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| BundleError::Json {
            path: rel.to_owned(),
            reason: e.to_string(),
        })?;
        self.add_reader(rel, bytes.as_slice())
    }

    /// Streams a file from `src`, hashing as it goes; stops at the bounds and flags the cut.
    pub fn add_reader(&mut self, rel: &str, src: impl Read) -> Result<&FileEntry, BundleError> {
        check_rel(rel)?;
        if self.files.contains_key(rel) {
            return Err(BundleError::Duplicate(rel.to_owned()));
        }
        let path = self.staging.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let limit = self
            .bounds
            .max_file_bytes
            .min(self.bounds.max_total_bytes.saturating_sub(self.total));
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut hasher = blake3::Hasher::new();
        // Read one byte past the limit to learn whether the source was cut.
        let mut src = src.take(limit.saturating_add(1));
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        let mut truncated = false;
        loop {
            let n = src.read(&mut buf).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            let keep = (n as u64).min(limit - size) as usize;
            if keep < n {
                truncated = true;
            }
            f.write_all(&buf[..keep]).map_err(io(&path))?;
            hasher.update(&buf[..keep]);
            size += keep as u64;
            if truncated {
                break;
            }
        }
        f.sync_all().map_err(io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).map_err(io(&path))?;
        self.total += size;
        let entry = FileEntry {
            path: rel.to_owned(),
            size,
            blake3: hasher.finalize().to_hex().to_string(),
            truncated,
        };
        if truncated {
            tracing::warn!(
                path = rel,
                kept_bytes = size,
                "evidence file cut at the capture bound"
            );
        }
        Ok(self.files.entry(rel.to_owned()).or_insert(entry))
    }

    /// Total bytes added so far.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Seals the bundle: protects the files, writes the manifest, moves the bundle under its id
    /// and appends an `evidence.sealed` record (the manifest's hash) to `audit`.
    pub fn seal(mut self, audit: &mut AuditLog, actor: &str) -> Result<SealReport, BundleError> {
        let paths: Vec<PathBuf> = self.files.keys().map(|k| self.staging.join(k)).collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let imm = immutable::set(&refs);
        if let Err(e) = &imm {
            tracing::warn!(error = %e, "evidence files could not be made immutable; recording it in the manifest");
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            created: crate::now_rfc3339(),
            subject: self.subject.clone(),
            bounds: self.bounds,
            files: self.files.values().cloned().collect(),
            protection: Protection {
                mode: "0444".to_owned(),
                immutable: imm.is_ok(),
                immutable_error: imm.err(),
            },
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Json {
            path: MANIFEST.to_owned(),
            reason: e.to_string(),
        })?;
        let id = blake3::hash(&bytes).to_hex().to_string();
        let mpath = self.staging.join(MANIFEST);
        let mut f = File::create(&mpath).map_err(io(&mpath))?;
        f.write_all(&bytes).map_err(io(&mpath))?;
        f.sync_all().map_err(io(&mpath))?;
        drop(f);
        fs::set_permissions(&mpath, fs::Permissions::from_mode(0o444)).map_err(io(&mpath))?;
        sync_dirs(&self.staging).map_err(io(&self.staging))?;
        let dest = self.root.join(&id);
        let already = dest.exists();
        if already {
            // Same manifest bytes means the same content: an identical bundle is already sealed.
            remove_tree(&self.staging)?;
        } else {
            fs::rename(&self.staging, &dest).map_err(io(&dest))?;
            File::open(&self.root)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.root))?;
        }
        self.sealed = true;
        let mut immutable_ok = manifest.protection.immutable;
        if immutable_ok && !already {
            // Directories last: read-only so nothing can be added, immutable so not even root
            // can add, remove or rename entries without first clearing the flag.
            let dirs = dirs_under(&dest).map_err(io(&dest))?;
            for d in &dirs {
                fs::set_permissions(d, fs::Permissions::from_mode(0o555)).map_err(io(d))?;
            }
            let m = dest.join(MANIFEST);
            let mut all: Vec<&Path> = vec![m.as_path()];
            all.extend(dirs.iter().map(PathBuf::as_path));
            if let Err(e) = immutable::set(&all) {
                tracing::warn!(error = %e, "bundle directory could not be made immutable");
                immutable_ok = false;
            }
        }
        let rec = audit.append(NewRecord::new(
            "evidence.sealed",
            actor,
            id.clone(),
            serde_json::json!({
                "manifest_blake3": id,
                "files": manifest.files.len(),
                "bytes": self.total,
                "immutable": immutable_ok,
                "immutable_error": manifest.protection.immutable_error,
                "subject": manifest.subject,
            }),
        ))?;
        Ok(SealReport {
            id,
            path: dest,
            files: manifest.files.len(),
            bytes: self.total,
            audit_seq: rec.seq,
            immutable: immutable_ok,
        })
    }
}

impl Drop for EvidenceWriter {
    fn drop(&mut self) {
        if !self.sealed {
            let _ = remove_tree(&self.staging);
        }
    }
}

/// Every directory under `dir`, deepest first, ending with `dir` itself.
fn dirs_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.extend(dirs_under(&e.path())?);
        }
    }
    out.push(dir.to_owned());
    Ok(out)
}

fn sync_dirs(dir: &Path) -> std::io::Result<()> {
    for d in dirs_under(dir)? {
        File::open(&d)?.sync_all()?;
    }
    Ok(())
}

/// Walks `dir` and returns every entry's relative path: `Ok(path)` for regular files,
/// `Err(path)` for anything that is neither a file nor a directory.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Result<String, String>>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = fs::symlink_metadata(e.path())?.file_type();
        if ft.is_dir() {
            walk(&e.path(), &rel, out)?;
        } else if ft.is_file() {
            out.push(Ok(rel));
        } else {
            out.push(Err(rel));
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, h.finalize().to_hex().to_string()))
}

/// Verifies the bundle in `dir` (named by its id): the manifest hashes to the id, every listed
/// file is present with its size and hash, and nothing else is there. All problems are
/// collected; the error names the first.
pub fn verify_bundle(dir: &Path) -> Result<Manifest, BundleError> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_id(&id)?;
    let tampered = |problems| BundleError::Tampered {
        id: id.clone(),
        problems,
    };
    let mpath = dir.join(MANIFEST);
    let bytes = match fs::read(&mpath) {
        Ok(b) => b,
        Err(e) => {
            return Err(tampered(vec![BundleProblem::ManifestUnreadable {
                reason: e.to_string(),
            }]))
        }
    };
    let actual = blake3::hash(&bytes).to_hex().to_string();
    if actual != id {
        return Err(tampered(vec![BundleProblem::ManifestChanged { actual }]));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        tampered(vec![BundleProblem::ManifestUnreadable {
            reason: e.to_string(),
        }])
    })?;
    let mut found = Vec::new();
    walk(dir, "", &mut found).map_err(io(dir))?;
    let mut present: BTreeMap<String, ()> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in found {
        match f {
            Ok(p) if p == MANIFEST => {}
            Ok(p) => {
                present.insert(p, ());
            }
            Err(p) => problems.push(BundleProblem::NotRegular { path: p }),
        }
    }
    for entry in &manifest.files {
        if present.remove(&entry.path).is_none() {
            problems.push(BundleProblem::Missing {
                path: entry.path.clone(),
            });
            continue;
        }
        let p = dir.join(&entry.path);
        let (size, hash) = hash_file(&p).map_err(io(&p))?;
        if size < entry.size {
            problems.push(BundleProblem::Truncated {
                path: entry.path.clone(),
                expected: entry.size,
                actual: size,
            });
        } else if size > entry.size {
            problems.push(BundleProblem::Grew {
                path: entry.path.clone(),
                expected: entry.size,
                actual: size,
            });
        } else if hash != entry.blake3 {
            problems.push(BundleProblem::Changed {
                path: entry.path.clone(),
            });
        }
    }
    for (p, ()) in present {
        problems.push(BundleProblem::Extra { path: p });
    }
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(tampered(problems))
    }
}

#[cfg(test)]
mod tests;

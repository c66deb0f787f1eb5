//! Where the pod's SPIFFE ID comes from, and the revocation deny-list.
//!
//! The identity issue will plug its rotating SVID in behind [`IdentitySource`]; today the ID is
//! read from the configuration or from the URI SAN of an SVID certificate file.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// Errors reading the identity or the deny-list.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The SVID is not a PEM certificate with exactly one `spiffe://` URI SAN.
    #[error("{path}: {reason}")]
    BadSvid { path: PathBuf, reason: String },
}

/// The source of the pod's current SPIFFE ID. Called about once a second; implementations keep
/// the last good ID themselves if they want to ride out a failing backend.
pub trait IdentitySource: Send + Sync + 'static {
    /// The current SPIFFE ID, or `None` when the pod has none (everything is then refused).
    fn spiffe_id(&self) -> Result<Option<String>, IdentityError>;
}

/// A fixed SPIFFE ID from the configuration (`egress.spiffe_id`).
#[derive(Debug, Clone)]
pub struct StaticIdentity(pub String);

impl IdentitySource for StaticIdentity {
    fn spiffe_id(&self) -> Result<Option<String>, IdentityError> {
        Ok((!self.0.is_empty()).then(|| self.0.clone()))
    }
}

/// The URI SAN of the X.509 SVID at a path (re-read when the file changes).
#[derive(Debug)]
pub struct SvidFileIdentity {
    path: PathBuf,
    cache: std::sync::Mutex<Option<(SystemTime, u64, String)>>,
}

impl SvidFileIdentity {
    /// Reads the SVID at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache: std::sync::Mutex::new(None),
        }
    }
}

impl IdentitySource for SvidFileIdentity {
    fn spiffe_id(&self) -> Result<Option<String>, IdentityError> {
        let read = |source| IdentityError::Read {
            path: self.path.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(read)?;
        let stamp = (meta.modified().map_err(read)?, meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((m, l, id)) = cache.as_ref() {
            if (*m, *l) == stamp {
                return Ok(Some(id.clone()));
            }
        }
        let pem = std::fs::read(&self.path).map_err(read)?;
        let id = spiffe_id_from_pem(&pem).map_err(|reason| IdentityError::BadSvid {
            path: self.path.clone(),
            reason,
        })?;
        *cache = Some((stamp.0, stamp.1, id.clone()));
        Ok(Some(id))
    }
}

/// The single `spiffe://` URI SAN of the first certificate in a PEM file.
pub fn spiffe_id_from_pem(pem: &[u8]) -> Result<String, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .ok_or("no subjectAltName")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err("no spiffe:// URI SAN".into()),
        _ => Err("more than one spiffe:// URI SAN (an SVID has exactly one)".into()),
    }
}

/// The deny-list of revoked SPIFFE IDs: one per line, `#` comments. Re-read when it changes.
#[derive(Debug)]
pub struct RevocationList {
    path: Option<PathBuf>,
    stamp: Option<(SystemTime, u64)>,
    ids: HashSet<String>,
}

impl RevocationList {
    /// A list read from `path` (`None`: nothing is revoked).
    pub fn new(path: Option<&Path>) -> Self {
        Self {
            path: path.map(Path::to_owned),
            stamp: None,
            ids: HashSet::new(),
        }
    }

    /// Re-reads the file if it changed. A missing file means nothing is revoked; an unreadable
    /// one keeps the last list (failing open on a read error would un-revoke everyone).
    pub fn refresh(&mut self) -> Result<bool, IdentityError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let changed = !self.ids.is_empty();
                self.ids.clear();
                self.stamp = None;
                return Ok(changed);
            }
            Err(source) => {
                return Err(IdentityError::Read {
                    path: path.clone(),
                    source,
                })
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.stamp == Some(stamp) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.clone(),
            source,
        })?;
        self.ids = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        self.stamp = Some(stamp);
        Ok(true)
    }

    /// Whether `id` is revoked.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svid_uri_san_is_the_id() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::Ia5String::try_from("spiffe://brainbox.local/ns/a/sa/b").unwrap(),
        )];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("svid.pem");
        std::fs::write(&f, cert.pem()).unwrap();
        let src = SvidFileIdentity::new(&f);
        assert_eq!(
            src.spiffe_id().unwrap().as_deref(),
            Some("spiffe://brainbox.local/ns/a/sa/b")
        );
        std::fs::write(&f, "garbage").unwrap();
        assert!(src.spiffe_id().is_err());
    }

    #[test]
    fn revocation_list_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("revoked");
        let mut l = RevocationList::new(Some(&f));
        assert!(!l.refresh().unwrap());
        std::fs::write(&f, "# revoked\nspiffe://td/a\n").unwrap();
        assert!(l.refresh().unwrap());
        assert!(l.is_revoked("spiffe://td/a"));
        assert!(!l.is_revoked("spiffe://td/b"));
        std::fs::remove_file(&f).unwrap();
        assert!(l.refresh().unwrap());
        assert!(!l.is_revoked("spiffe://td/a"));
    }
}

//! The hash-chained, append-only audit log.
//!
//! One JSON object per line. Each record holds its sequence number (the first is 1, so in an
//! untouched log `seq` equals the line number), the hash of the record before it (`prev`; the
//! first record's `prev` is [`GENESIS`]) and its own BLAKE3 hash over everything but `hash`.
//! Lines must be byte-for-byte the canonical serialisation, so even a whitespace edit is caught.
//!
//! A chain alone cannot see records cut off its end, so every append also rewrites a small head
//! file (`<log>.head`, atomically by rename) naming the last sequence number and hash; a log
//! shorter than its head is reported as truncated. Someone able to rewrite both files and
//! recompute every hash defeats any local chain; that is what exporting the head (for example in
//! alerts) is for.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

/// `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Domain separation for record hashes, so an audit hash can never be confused with another
/// BLAKE3 hash we compute (evidence files, manifests).
const DOMAIN: &[u8] = b"brainbox-audit/1\n";

/// One record of the audit log, exactly as stored on its line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, starting at 1.
    pub seq: u64,
    /// When it was appended (RFC 3339, UTC).
    pub time: String,
    /// What happened, dotted: `response.freeze`, `evidence.sealed`, `safe_mode.entered`, ...
    pub kind: String,
    /// Who did it: `node-agent`, `operator:<name>`, ...
    pub actor: String,
    /// What it was done to: a container id, a bundle id, a node name.
    pub subject: String,
    /// Free-form structured details (already redacted by the caller).
    pub details: serde_json::Value,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev: String,
    /// BLAKE3 of this record without `hash`.
    pub hash: String,
}

/// The fields a caller supplies; the log adds seq, time and hashes.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// See [`AuditRecord::kind`].
    pub kind: String,
    /// See [`AuditRecord::actor`].
    pub actor: String,
    /// See [`AuditRecord::subject`].
    pub subject: String,
    /// See [`AuditRecord::details`].
    pub details: serde_json::Value,
}

impl NewRecord {
    /// A record with the given kind, actor, subject and details.
    pub fn new(
        kind: impl Into<String>,
        actor: impl Into<String>,
        subject: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            kind: kind.into(),
            actor: actor.into(),
            subject: subject.into(),
            details,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    kind: &'a str,
    actor: &'a str,
    subject: &'a str,
    details: &'a serde_json::Value,
    prev: &'a str,
}

impl AuditRecord {
    /// Recomputes this record's hash from its other fields.
    pub fn compute_hash(&self) -> String {
        let body = Body {
            seq: self.seq,
            time: &self.time,
            kind: &self.kind,
            actor: &self.actor,
            subject: &self.subject,
            details: &self.details,
            prev: &self.prev,
        };
        // Serialising a struct of strings, integers and a `Value` cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&json);
        h.finalize().to_hex().to_string()
    }

    fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The head file's content: the last record the writer committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Sequence number of the last record.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// Why a chain is not intact. Every variant names the first bad record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Break {
    /// The line is not a JSON audit record.
    #[error("line {line}: not an audit record: {reason}")]
    NotARecord { line: usize, reason: String },
    /// The line parses but is not byte-for-byte what the writer wrote.
    #[error("line {line} (record {seq}): not in canonical form (the line was edited)")]
    NotCanonical { line: usize, seq: u64 },
    /// The record's content does not match its own hash.
    #[error(
        "line {line} (record {seq}): content does not match its hash (the record was changed)"
    )]
    HashMismatch { line: usize, seq: u64 },
    /// The sequence number is not the next one.
    #[error("line {line}: expected record {expected}, found record {found} (a record was deleted, inserted or reordered)")]
    SeqGap {
        line: usize,
        expected: u64,
        found: u64,
    },
    /// `prev` does not match the hash of the record before.
    #[error("line {line} (record {seq}): prev hash does not match record {}'s hash (a record before it was changed or replaced)", seq.saturating_sub(1))]
    PrevMismatch { line: usize, seq: u64 },
    /// The last line has no newline: a write was cut short (crash or truncation).
    #[error("line {line}: torn final line of {bytes} bytes (the log was truncated inside record {expected})")]
    TornTail {
        line: usize,
        expected: u64,
        bytes: usize,
    },
    /// Records named by the head file are missing from the end of the log.
    #[error("log ends at record {last} but its head file names record {head_seq}: records {} to {head_seq} were cut off", last + 1)]
    Truncated { last: u64, head_seq: u64 },
    /// The head file names a record whose hash differs from the log's.
    #[error(
        "record {seq}: hash differs from the head file's (the record or the head was replaced)"
    )]
    HeadMismatch { seq: u64 },
    /// There is no head file, so truncation at the end cannot be ruled out.
    #[error("head file {path} is missing (cannot rule out records cut off the end)")]
    HeadMissing { path: PathBuf },
    /// The head file itself is unreadable.
    #[error("head file {path} is damaged: {reason}")]
    HeadDamaged { path: PathBuf, reason: String },
}

impl Break {
    /// The sequence number of the first bad record, where one can be named.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Break::NotARecord { .. } | Break::HeadMissing { .. } | Break::HeadDamaged { .. } => {
                None
            }
            Break::NotCanonical { seq, .. }
            | Break::HashMismatch { seq, .. }
            | Break::PrevMismatch { seq, .. }
            | Break::HeadMismatch { seq } => Some(*seq),
            Break::SeqGap { expected, .. } => Some(*expected),
            Break::TornTail { expected, .. } => Some(*expected),
            Break::Truncated { last, .. } => Some(last + 1),
        }
    }
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Reading or writing the log failed.
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the log open for writing.
    #[error("audit log {path} is locked by another writer")]
    Locked { path: PathBuf },
    /// The chain is broken.
    #[error("audit log {path}: {brk}")]
    Broken { path: PathBuf, brk: Break },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ChainError + '_ {
    move |source| ChainError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainReport {
    /// Number of records.
    pub records: u64,
    /// Hash of the last record ([`GENESIS`] when empty).
    pub last_hash: String,
    /// Records after the head file's (a crash between appending and updating the head; the
    /// writer repairs this on open).
    pub head_lag: u64,
    /// Whether the head file was checked.
    pub head_checked: bool,
}

/// The result of scanning a log's bytes.
struct Scan {
    records: Vec<AuditRecord>,
    /// Byte length of the intact prefix.
    good_len: usize,
    /// The first break, if any.
    brk: Option<Break>,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    let mut prev_hash = GENESIS.to_owned();
    while pos < bytes.len() {
        line_no += 1;
        let expected = records.len() as u64 + 1;
        let rest = &bytes[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            let brk = Break::TornTail {
                line: line_no,
                expected,
                bytes: rest.len(),
            };
            return Scan {
                records,
                good_len: pos,
                brk: Some(brk),
            };
        };
        let line = &rest[..=nl];
        let fail = |brk| Scan {
            records: Vec::new(),
            good_len: pos,
            brk: Some(brk),
        };
        let rec: AuditRecord = match serde_json::from_slice(&line[..nl]) {
            Ok(r) => r,
            Err(e) => {
                let mut s = fail(Break::NotARecord {
                    line: line_no,
                    reason: e.to_string(),
                });
                s.records = records;
                return s;
            }
        };
        let brk = if rec.to_line().as_bytes() != line {
            Some(Break::NotCanonical {
                line: line_no,
                seq: rec.seq,
            })
        } else if rec.compute_hash() != rec.hash {
            Some(Break::HashMismatch {
                line: line_no,
                seq: rec.seq,
            })
        } else if rec.seq != expected {
            Some(Break::SeqGap {
                line: line_no,
                expected,
                found: rec.seq,
            })
        } else if rec.prev != prev_hash {
            Some(Break::PrevMismatch {
                line: line_no,
                seq: rec.seq,
            })
        } else {
            None
        };
        if let Some(brk) = brk {
            let mut s = fail(brk);
            s.records = records;
            return s;
        }
        prev_hash = rec.hash.clone();
        records.push(rec);
        pos += nl + 1;
    }
    Scan {
        records,
        good_len: pos,
        brk: None,
    }
}

/// Path of the head file that belongs to `log`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".head");
    log.with_file_name(name)
}

fn read_head(path: &Path) -> Result<Option<Head>, Break> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Break::HeadDamaged {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Break::HeadDamaged {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Compares the scanned records with the head; returns how many records follow the head.
fn check_head(records: &[AuditRecord], head: &Head) -> Result<u64, Break> {
    let last = records.len() as u64;
    if head.seq > last {
        return Err(Break::Truncated {
            last,
            head_seq: head.seq,
        });
    }
    if head.seq > 0 {
        let rec = &records[(head.seq - 1) as usize];
        if rec.hash != head.hash {
            return Err(Break::HeadMismatch { seq: head.seq });
        }
    } else if head.hash != GENESIS {
        return Err(Break::HeadMismatch { seq: 0 });
    }
    Ok(last - head.seq)
}

/// How [`verify`] treats the head file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadPolicy {
    /// The head file must exist and agree (the default: catches records cut off the end).
    Require,
    /// Check it if it exists.
    IfPresent,
    /// Ignore it (for a log copied without its head).
    Ignore,
}

/// Walks the whole chain of the log at `path` and reports the first bad record.
pub fn verify(path: &Path, head: HeadPolicy) -> Result<ChainReport, ChainError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let broken = |brk| ChainError::Broken {
        path: path.to_owned(),
        brk,
    };
    let s = scan(&bytes);
    if let Some(brk) = s.brk {
        return Err(broken(brk));
    }
    let hp = head_path(path);
    let (head_lag, head_checked) = match head {
        HeadPolicy::Ignore => (0, false),
        policy => match read_head(&hp).map_err(broken)? {
            Some(h) => (check_head(&s.records, &h).map_err(broken)?, true),
            None if policy == HeadPolicy::Require => {
                return Err(broken(Break::HeadMissing { path: hp }))
            }
            None => (0, false),
        },
    };
    Ok(ChainReport {
        records: s.records.len() as u64,
        last_hash: s
            .records
            .last()
            .map_or_else(|| GENESIS.to_owned(), |r| r.hash.clone()),
        head_lag,
        head_checked,
    })
}

/// Checks a whole log held in memory (no head file): the number of records, or the first break.
/// Never panics on hostile input (fuzzed).
pub fn verify_bytes(bytes: &[u8]) -> Result<u64, Break> {
    let s = scan(bytes);
    match s.brk {
        Some(b) => Err(b),
        None => Ok(s.records.len() as u64),
    }
}

/// Reads every record of an intact log (for `brainboxctl` and the evidence cross-check).
pub fn read_records(path: &Path) -> Result<Vec<AuditRecord>, ChainError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let s = scan(&bytes);
    match s.brk {
        Some(brk) => Err(ChainError::Broken {
            path: path.to_owned(),
            brk,
        }),
        None => Ok(s.records),
    }
}

/// The writer: one per log file, enforced with an exclusive `flock`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    file: Flock<File>,
    next_seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending.
    ///
    /// The existing chain is verified first. A torn final line (a crash inside a write) is cut
    /// off and an `audit.recovered` record naming the discarded bytes' hash is appended, so the
    /// repair itself is on the record. Any other break refuses to open: appending to a tampered
    /// chain would bury the evidence of tampering; the caller should start a new log and alert.
    pub fn open(path: &Path) -> Result<Self, ChainError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path))?;
        let mut file =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| ChainError::Locked {
                path: path.to_owned(),
            })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(path))?;
        let broken = |brk| ChainError::Broken {
            path: path.to_owned(),
            brk,
        };
        let s = scan(&bytes);
        let mut torn: Option<(usize, String)> = None;
        match s.brk {
            None => {}
            Some(Break::TornTail { bytes: n, .. }) => {
                let discarded = &bytes[s.good_len..];
                torn = Some((n, blake3::hash(discarded).to_hex().to_string()));
                file.set_len(s.good_len as u64).map_err(io_err(path))?;
                file.sync_all().map_err(io_err(path))?;
            }
            Some(brk) => return Err(broken(brk)),
        }
        let hp = head_path(path);
        match read_head(&hp).map_err(broken)? {
            Some(h) => {
                check_head(&s.records, &h).map_err(broken)?;
            }
            None if !s.records.is_empty() => {
                return Err(broken(Break::HeadMissing { path: hp }));
            }
            None => {}
        }
        let mut log = AuditLog {
            path: path.to_owned(),
            head_path: hp,
            file,
            next_seq: s.records.len() as u64 + 1,
            last_hash: s
                .records
                .last()
                .map_or_else(|| GENESIS.to_owned(), |r| r.hash.clone()),
        };
        // Bring the head up to date (it may lag after a crash, or not exist for a new log).
        log.write_head()?;
        if let Some((n, hash)) = torn {
            tracing::warn!(path = %path.display(), discarded_bytes = n, "audit log had a torn final line; cut it off");
            log.append(NewRecord::new(
                "audit.recovered",
                "audit",
                path.display().to_string(),
                serde_json::json!({ "discarded_bytes": n, "discarded_blake3": hash }),
            ))?;
        }
        Ok(log)
    }

    /// Appends a record, fsyncs it and moves the head. Returns the stored record.
    pub fn append(&mut self, rec: NewRecord) -> Result<AuditRecord, ChainError> {
        let mut r = AuditRecord {
            seq: self.next_seq,
            time: crate::now_rfc3339(),
            kind: rec.kind,
            actor: rec.actor,
            subject: rec.subject,
            details: rec.details,
            prev: self.last_hash.clone(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        let path = self.path.clone();
        // One write call per line: O_APPEND keeps it contiguous; sync_data makes it durable
        // before anyone is told the step was audited.
        self.file
            .write_all(r.to_line().as_bytes())
            .map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        self.next_seq += 1;
        self.last_hash = r.hash.clone();
        self.write_head()?;
        Ok(r)
    }

    fn write_head(&self) -> Result<(), ChainError> {
        let head = Head {
            seq: self.next_seq - 1,
            hash: self.last_hash.clone(),
        };
        let tmp = self.head_path.with_extension("head.tmp");
        let json = serde_json::to_vec(&head).unwrap_or_default();
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.head_path)?;
            if let Some(dir) = self
                .head_path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        res.map_err(io_err(&self.head_path))
    }

    /// Hash of the last record ([`GENESIS`] if none): what to export to anchor the chain.
    pub fn head_hash(&self) -> &str {
        &self.last_hash
    }

    /// Sequence number of the last record (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;

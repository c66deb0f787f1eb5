//! The brainbox-guard audit trail.
//!
//! Two pieces that incident response writes and the operator checks:
//!
//! - [`chain`]: an append-only JSON-lines log where every record carries the BLAKE3 hash of the
//!   record before it, so a changed, deleted, reordered or truncated record breaks the chain at a
//!   point [`chain::verify`] names by sequence number and line.
//! - [`evidence`]: content-addressed evidence bundles. Every file is listed with its BLAKE3 hash and
//!   size in `manifest.json`; the bundle id is the BLAKE3 hash of the manifest; the files are made
//!   read-only and immutable where the filesystem allows; sealing appends the id to the chain.

pub mod chain;
pub mod evidence;
mod immutable;

pub use chain::{AuditLog, AuditRecord, ChainError, ChainReport, NewRecord};
pub use evidence::{
    BundleError, BundleProblem, EvidenceStore, EvidenceWriter, Manifest, SealReport,
};

/// Hex form of a BLAKE3 hash (64 lowercase characters).
pub type HashHex = String;

/// The current time as RFC 3339 UTC with nanoseconds, the format of every timestamp we write.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

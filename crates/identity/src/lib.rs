//! SPIFFE identity for brainbox-guard: the Workload API protocol, the CA that issues X.509 and
//! JWT SVIDs, SVID parsing and validation, the revocation deny-list and the JWT replay cache.
//!
//! The node agent serves the Workload API with these pieces; the sidecar and the egress proxy
//! use the parsing, deny-list and replay parts to refuse revoked or replayed credentials.

pub mod ca;
pub mod denylist;
pub mod jwt;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod replay;
pub mod spiffe_id;
pub mod x509;

pub mod proto {
    //! The SPIFFE Workload API (generated from `proto/workload.proto`).
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("_");
}

/// The gRPC metadata key every Workload API request must carry (with value `true`), so that a
/// browser or SSRF-style request cannot reach the API by accident.
pub const WORKLOAD_API_HEADER: &str = "workload.spiffe.io";

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

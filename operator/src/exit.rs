//! Exit codes (sysexits.h where one fits), so scripts can tell "tampered" from "unreachable".

/// Success.
pub const OK: i32 = 0;
/// Verification failed: something was changed, deleted, reordered or truncated.
pub const VERIFY_FAILED: i32 = 1;
/// Bad command line or a request that conflicts with existing state (`EX_USAGE`).
pub const USAGE: i32 = 64;
/// Input data unreadable (`EX_DATAERR`).
pub const DATA: i32 = 65;
/// NATS or JetStream unavailable (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: i32 = 69;

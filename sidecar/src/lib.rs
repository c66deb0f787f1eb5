//! brainbox-sidecar: the per-pod half of brainbox-guard. Identity (`svid`), the egress proxy
//! (`egress`) and log redaction (`redact`) land here as modules.

pub mod config;
pub mod egress;
pub mod logwrap;
pub mod redact;
pub mod sandbox;
pub mod svid;

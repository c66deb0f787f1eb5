//! brainbox-node-agent: the privileged per-node half of brainbox-guard.
//!
//! Data flow: `sensor` (eBPF ring buffer) → decoded events → enriched with `runtime` (which
//! container a cgroup is) → written by `events` as JSON lines. Rules, zones and responses plug in
//! between enrichment and output.
#![doc(html_no_source)]

pub mod alerting;
pub mod app;
pub mod config;
pub mod detect;
pub mod dns;
pub mod enrich;
pub mod events;
pub mod identity;
pub mod metrics;
pub mod process;
pub mod replay;
pub mod response;
pub mod runtime;
pub mod safety;
pub mod sensor;
pub mod zones;

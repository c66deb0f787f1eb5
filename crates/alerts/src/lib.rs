//! brainbox-guard alerts: the alert schema, the JetStream publisher with its crash-safe on-disk
//! spool and circuit breaker, and the operator control plane (check-ins, safe-mode commands,
//! incident acknowledgements) kept in JetStream key-value buckets.

pub mod breaker;
pub mod coalesce;
pub mod control;
pub mod metrics;
pub mod monitor;
pub mod publisher;
pub mod safety;
pub mod schema;
pub mod spool;

pub use breaker::{BreakerConfig, BreakerState};
pub use coalesce::{CoalesceConfig, Coalescer};
pub use metrics::AlertMetrics;
pub use publisher::{Delivery, PublishError, Publisher, PublisherConfig, PublisherState, Receipt};
pub use schema::{alert_id, Alert, ContainerRef, Priority};
pub use spool::{Spool, SpoolConfig, SpoolError};

#[cfg(feature = "testkit")]
pub mod testkit;

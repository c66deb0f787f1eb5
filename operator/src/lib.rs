//! brainboxctl as a library: sidecar injection (offline and as an admission webhook) and the
//! PodSecurity `restricted` check it is held to.

pub mod inject;
pub mod podsecurity;
pub mod webhook;

//! brainbox-guard's process hardening, shared by the sidecar, the node agent and the tests:
//!
//! - [`seccomp`]: the OCI (Docker/runc) seccomp profile format of `seccomp/*.json`, checked by name
//!   against the x86_64 system call table, and compiled to a BPF program a process installs on
//!   itself (pure Rust via `seccompiler`, so the static musl binaries need no libseccomp);
//! - [`privileges`]: capability drops (`caps`) and `no_new_privs`;
//! - [`procstatus`]: what `/proc/<pid>/status` says about a process's confinement.

pub mod privileges;
pub mod procstatus;
pub mod seccomp;
pub mod selftest;
mod syscalls_x86_64;

pub use syscalls_x86_64::SYSCALLS;

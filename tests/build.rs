//! Builds `tests/probe` (a static test client run inside lab containers) for musl, so it runs in
//! images without a libc, and tells the lab where it is (`ZONES_PROBE`).

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let probe = manifest_dir.join("probe");
    println!("cargo:rerun-if-changed={}", probe.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        probe.join("Cargo.toml").display()
    );
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.parent().unwrap().join("target"))
        .join("probe");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--quiet",
        "--offline",
        "--target",
        "x86_64-unknown-linux-musl",
    ])
    .arg("--manifest-path")
    .arg(probe.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // The outer build's flags (sanitizers, coverage, a wrapper) must not leak into the probe.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build tests/probe: {e}"));
    if !status.success() {
        panic!(
            "building tests/probe for x86_64-unknown-linux-musl failed ({status}); \
             `rustup target add x86_64-unknown-linux-musl` (scripts/setup.sh does)"
        );
    }
    let bin = target_dir.join("x86_64-unknown-linux-musl/release/zones-probe");
    println!("cargo:rustc-env=ZONES_PROBE={}", bin.display());
}

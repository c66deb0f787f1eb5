//! Builds the eBPF programs in `ebpf/programs` for the BPF target with the nightly toolchain and
//! `bpf-linker`, and hands the object to the agent through `OUT_DIR`.
//!
//! `BRAINBOX_EBPF_OBJECT=/path/to/object` skips the build and embeds a prebuilt object instead.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("brainbox.bpf.o");
    println!("cargo:rerun-if-env-changed=BRAINBOX_EBPF_OBJECT");
    if let Ok(prebuilt) = env::var("BRAINBOX_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("BRAINBOX_EBPF_OBJECT={prebuilt}: {e}"));
        return;
    }
    for p in [
        "ebpf/programs/src",
        "ebpf/programs/Cargo.toml",
        "ebpf/programs/Cargo.lock",
        "ebpf/common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    // One target dir for every host profile (debug, release, clippy) so the BPF build runs once.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ebpf");
    let llvm_bin = Path::new("/usr/lib/llvm-22/bin");
    let path = format!(
        "{}:{}",
        llvm_bin.display(),
        env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ])
    .arg("--manifest-path")
    .arg(root.join("ebpf/programs/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    .env("PATH", path);
    // The outer build's settings (stable rustc, sanitizer or coverage flags) must not leak in.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run `rustup` to build the eBPF programs ({e}); run scripts/setup.sh first")
    });
    if !status.success() {
        panic!(
            "building ebpf/programs failed ({status}). It needs the nightly toolchain with rust-src \
             and bpf-linker built against LLVM 22: run scripts/setup.sh"
        );
    }
    let obj = target_dir.join("bpfel-unknown-none/release/brainbox-ebpf");
    std::fs::copy(&obj, &out).unwrap_or_else(|e| panic!("copying {}: {e}", obj.display()));
}

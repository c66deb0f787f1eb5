//! Builds the eBPF programs in `ebpf/programs` for the BPF target with the nightly toolchain and
//! `bpf-linker`, and hands the object to the agent through `OUT_DIR`.
//!
//! Each `[[bin]]` of `ebpf/programs` listed in [`EBPF_OBJECTS`] becomes `$OUT_DIR/<name>.bpf.o`.
//! `BRAINBOX_EBPF_DIR=/path` skips the build and embeds prebuilt `<name>.bpf.o` files from there.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF objects (bins of `ebpf/programs`) the agent embeds.
const EBPF_OBJECTS: &[&str] = &["sensor", "zones"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=BRAINBOX_EBPF_DIR");
    if let Ok(prebuilt) = env::var("BRAINBOX_EBPF_DIR") {
        for name in EBPF_OBJECTS {
            let from = Path::new(&prebuilt).join(format!("{name}.bpf.o"));
            std::fs::copy(&from, out_dir.join(format!("{name}.bpf.o")))
                .unwrap_or_else(|e| panic!("BRAINBOX_EBPF_DIR: {}: {e}", from.display()));
        }
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
    for name in EBPF_OBJECTS {
        let obj = target_dir.join("bpfel-unknown-none/release").join(name);
        std::fs::copy(&obj, out_dir.join(format!("{name}.bpf.o")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", obj.display()));
    }
}

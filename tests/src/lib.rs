//! The local Docker lab: brainbox "pods" (a sidecar container and an agent container sharing one
//! network namespace, as in Kubernetes) built from local images only, plus helpers to run the
//! node agent and read what it reports. Used by the end-to-end tests and by `brainbox-lab` (demo).
//!
//! Everything this creates carries the label `brainbox.io/lab` and is removed on drop, so a failed
//! test leaves nothing behind; `brainbox-lab down` removes leftovers from a killed run.

pub mod agent;
pub mod docker;
pub mod hardening;
pub mod images;
pub mod pod;
pub mod require;
pub mod zones;

use std::path::PathBuf;

/// Label on everything the lab creates.
pub const LAB_LABEL: &str = "brainbox.io/lab";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of a workspace binary built for the host in the same profile as the caller
/// (`target/debug/<name>` for tests). Panics with a clear message if it was not built.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs the workspace's `brainboxctl` against the NATS server at `url` as `operator`; returns
/// whether it exited 0 and its stdout followed by its stderr.
pub fn ctl(url: &str, operator: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bin_path("brainboxctl"))
        .args(args)
        .env("BRAINBOX_NATS_URL", url)
        .env("BRAINBOX_OPERATOR", operator)
        .output()
        .expect("running brainboxctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A short random suffix for names, so parallel tests and reruns never collide.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    format!(
        "{prefix}-{:08x}",
        u32::from_ne_bytes(b) ^ std::process::id()
    )
}

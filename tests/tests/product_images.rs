//! The product images build `FROM scratch` from the static musl binaries, hold nothing but the
//! binary (no shell), run (`--version`), and stay small: under the 15 MiB goal in release (what
//! ships), under a sanity bound in debug. Sizes are printed.

use brainbox_lab::{
    docker::docker_output,
    hardening::run_once,
    images::{product_images, PRODUCTS},
    require,
};

const GOAL_BYTES: u64 = 15 * 1024 * 1024;
/// Debug builds are larger; this catches a binary that bloats, not the goal.
const DEBUG_BOUND_BYTES: u64 = 40 * 1024 * 1024;

#[test]
fn product_images_build_run_and_stay_small() {
    require::docker();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let built = product_images(profile).unwrap();
    assert_eq!(built.len(), PRODUCTS.len());
    for img in &built {
        eprintln!(
            "{:<12} {:>6.2} MiB  {}  {}",
            img.name,
            img.size_bytes as f64 / 1048576.0,
            img.reference,
            img.id
        );
        assert!(img.id.starts_with("sha256:"), "{img:?}");
        let bin = PRODUCTS.iter().find(|(n, _)| *n == img.name).unwrap().1;
        let (code, out, err) = run_once(
            &["--cap-drop", "ALL", "--read-only"],
            &img.reference,
            &["--version"],
        )
        .unwrap();
        assert_eq!(code, 0, "{}: {err}", img.name);
        assert!(out.starts_with(&format!("{bin} ")), "{}: {out}", img.name);
        // No shell, nothing else to run.
        let sh = docker_output(&[
            "run",
            "--rm",
            "--label",
            brainbox_lab::LAB_LABEL,
            "--entrypoint",
            "/bin/sh",
            &img.reference,
        ])
        .unwrap();
        assert!(!sh.status.success(), "{} has a /bin/sh", img.name);
        // One layer per COPY: the binary (and the agent's profiles), nothing from a base image.
        let layers = brainbox_lab::docker::docker(&[
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            &img.reference,
        ])
        .unwrap();
        let want = if img.name == "node-agent" { "2" } else { "1" };
        assert_eq!(layers, want, "{}", img.name);
        // The 15 MiB goal is for the release images that ship (`scripts/images.sh`, sizes in
        // deploy/images.lock); a debug build carries unoptimised code and gets a sanity bound.
        let bound = if profile == "release" {
            GOAL_BYTES
        } else {
            DEBUG_BOUND_BYTES
        };
        assert!(
            img.size_bytes < bound,
            "{} ({profile}) is {} bytes, over {} bytes",
            img.name,
            img.size_bytes,
            bound
        );
    }
}

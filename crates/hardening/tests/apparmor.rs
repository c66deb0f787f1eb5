//! The AppArmor profiles in `apparmor/` compile with `apparmor_parser` (Debian's `apparmor`
//! package). This kernel has no AppArmor, so they are parsed and compiled (`-Q`: skip the
//! kernel load, `-K`: no cache), not enforced; a deliberately broken copy must fail the same way,
//! so the check can fail.

use std::{path::PathBuf, process::Command};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../apparmor")
}

fn parse(path: &std::path::Path) -> (bool, String) {
    let out = Command::new("apparmor_parser")
        .args(["-Q", "-K"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("apparmor_parser is missing ({e}): install Debian's apparmor (scripts/setup.sh)")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_profile_compiles_and_is_named_for_its_file() {
    let names = [
        "brainbox-workload",
        "brainbox-sidecar",
        "brainbox-node-agent",
    ];
    for name in names {
        let path = dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("profile {name} ")),
            "{name}: profile name differs from the file name the manifests reference"
        );
        for rule in ["deny mount,", "deny pivot_root,"] {
            assert!(text.contains(rule), "{name} lacks `{rule}`");
        }
        let (ok, err) = parse(&path);
        assert!(ok, "{name} does not compile: {err}");
    }
    let count = std::fs::read_dir(dir()).unwrap().count();
    assert_eq!(
        count,
        names.len(),
        "a profile in apparmor/ is not checked here"
    );
}

#[test]
fn a_broken_profile_is_refused() {
    let good = std::fs::read_to_string(dir().join("brainbox-sidecar")).unwrap();
    let broken = good.replace("/run/svid/** rwk,", "/run/svid/** rwkq,");
    assert_ne!(good, broken);
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), broken).unwrap();
    let (ok, err) = parse(tmp.path());
    assert!(!ok, "apparmor_parser accepted an invalid permission");
    assert!(err.contains("error"), "{err}");
}

#[test]
fn workloads_may_not_ptrace_mount_or_use_capabilities() {
    let text = std::fs::read_to_string(dir().join("brainbox-workload")).unwrap();
    for rule in [
        "deny capability,",
        "deny ptrace,",
        "deny mount,",
        "deny network raw,",
        "deny @{PROC}/*/mem rwklx,",
    ] {
        assert!(text.contains(rule), "brainbox-workload lacks `{rule}`");
    }
    let sidecar = std::fs::read_to_string(dir().join("brainbox-sidecar")).unwrap();
    assert!(
        sidecar.contains("deny /** x,"),
        "the sidecar may execute programs"
    );
}

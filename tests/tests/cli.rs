//! The binaries' command-line contract: --help, --version, and exit code 64 naming the key for a
//! bad configuration.

use brainbox_lab::bin_path;
use std::process::Command;

#[test]
fn every_binary_has_help_and_version() {
    for bin in ["brainbox-node-agent", "brainbox-sidecar", "brainboxctl"] {
        for flag in ["--help", "--version"] {
            let out = Command::new(bin_path(bin)).arg(flag).output().unwrap();
            assert!(out.status.success(), "{bin} {flag}: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.trim().is_empty(), "{bin} {flag} printed nothing");
            if flag == "--version" {
                assert!(text.contains(env!("CARGO_PKG_VERSION")), "{bin}: {text}");
            }
        }
    }
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "brainbox-node-agent",
            "BRAINBOX_SENSOR__RING_BUFFER_BYTES",
            "5000",
            "sensor.ring_buffer_bytes",
        ),
        (
            "brainbox-node-agent",
            "BRAINBOX_METRICS__LISTEN",
            "not-an-address",
            "metrics.listen",
        ),
        (
            "brainbox-node-agent",
            "BRAINBOX_SENSOR__NO_SUCH_KEY",
            "1",
            "no_such_key",
        ),
        (
            "brainbox-sidecar",
            "BRAINBOX_LOG__FORMAT",
            "xml",
            "log.format",
        ),
    ];
    for (bin, key, value, named) in cases {
        let out = Command::new(bin_path(bin))
            .arg("run")
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bin} with {key}={value}: {out:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(named),
            "{bin} with {key}={value} did not name `{named}`: {err}"
        );
    }
}

#[test]
fn bad_configuration_file_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("agent.toml");
    std::fs::write(&f, "[sensor]\nring_buffer_bytes = \"big\"\n").unwrap();
    let out = Command::new(bin_path("brainbox-node-agent"))
        .args(["--config", f.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sensor.ring_buffer_bytes") && err.contains("agent.toml"),
        "{err}"
    );
}

#[test]
fn brainboxctl_lists_the_repository_profiles() {
    let root = brainbox_lab::workspace_root();
    let out = Command::new(bin_path("brainboxctl"))
        .args(["--json", "profiles"])
        .arg(root.join("profiles"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "default"),
        "{v}"
    );
}

//! Preconditions of privileged tests. Each one fails the test with a message saying exactly what
//! is missing and how to get it; none skips silently.

use std::path::Path;

const HOW: &str = "run scripts/setup.sh (as root) to install and start everything the tests need";

/// The test runs as root.
pub fn root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test needs root (eBPF, cgroups, Docker); it runs as uid {uid}"
    );
}

/// dockerd answers.
pub fn docker() {
    let out = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test needs a running Docker daemon; `docker info` failed: {}; {HOW}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("this test needs the docker CLI ({e}); {HOW}"),
    }
}

/// The kernel features the sensor needs: BTF, tracefs, bpffs, cgroup v2.
pub fn ebpf() {
    root();
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "this test needs a kernel with BTF (/sys/kernel/btf/vmlinux)"
    );
    assert!(
        Path::new("/sys/kernel/tracing/events/syscalls").exists(),
        "this test needs tracefs with syscall tracepoints at /sys/kernel/tracing; {HOW}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /sys/fs/bpf ") && l.contains(" - bpf ")),
        "this test needs bpffs mounted at /sys/fs/bpf; {HOW}"
    );
    assert!(
        mounts.contains(" - cgroup2 "),
        "this test needs a cgroup v2 hierarchy mounted"
    );
}

/// Everything an end-to-end lab test needs.
pub fn lab() {
    ebpf();
    docker();
}

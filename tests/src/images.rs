//! Lab images, built locally with no registry: a BusyBox rootfs brought in with `docker import`
//! (the agent container) and the static sidecar binary `FROM scratch` (the sidecar container).
//! Each image is tagged with a hash of what it is built from, so rebuilding is skipped when
//! nothing changed.

use crate::docker::{docker, image_exists};
use anyhow::{bail, Context, Result};
use std::{os::unix::fs::symlink, path::Path, process::Command};

/// Repository of the agent (workload) image.
pub const AGENT_REPO: &str = "brainbox-lab/busybox";
/// Repository of the sidecar image.
pub const SIDECAR_REPO: &str = "brainbox-lab/sidecar";
/// Unprivileged uid/gid the agent container runs as.
pub const AGENT_UID: u32 = 1000;

fn short_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..12].to_string()
}

/// Builds (if needed) the BusyBox image and returns its reference.
pub fn agent_image() -> Result<String> {
    let busybox = Path::new("/bin/busybox");
    let bin = std::fs::read(busybox)
        .context("/bin/busybox is missing: install Debian's busybox-static (scripts/setup.sh)")?;
    // Bump ROOTFS_RECIPE when the rootfs below changes, so the image is rebuilt.
    const ROOTFS_RECIPE: &[u8] = b"rootfs-v2";
    let reference = format!(
        "{AGENT_REPO}:{}",
        short_hash(&[&bin[..], ROOTFS_RECIPE].concat())
    );
    if image_exists(&reference) {
        return Ok(reference);
    }
    let applets = Command::new(busybox).arg("--list").output()?;
    if !applets.status.success() {
        bail!("busybox --list failed");
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for d in [
        "bin",
        "etc",
        "tmp",
        "home/agent",
        "proc",
        "sys",
        "dev",
        "run",
        "var/log",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\nagent:x:{AGENT_UID}:{AGENT_UID}:brainbox agent:/home/agent:/bin/sh\n"),
    )?;
    std::fs::write(
        root.join("etc/group"),
        format!("root:x:0:\nagent:x:{AGENT_UID}:\n"),
    )?;
    std::fs::write(
        root.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\nagent:*:19000:0:99999:7:::\n",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        // As on a real system: only root reads password hashes.
        std::fs::set_permissions(
            root.join("etc/shadow"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }
    let tar = Command::new("tar")
        .args(["-C"])
        .arg(root)
        .args(["--owner=0", "--group=0", "-cf", "-", "."])
        .output()?;
    if !tar.status.success() {
        bail!("tar of the lab rootfs failed");
    }
    let mut import = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/bin",
            "--change",
            "WORKDIR /home/agent",
            "-",
            &reference,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = import.stdin.take().expect("piped stdin");
        stdin.write_all(&tar.stdout)?;
    }
    if !import.wait()?.success() {
        bail!("docker import of the lab rootfs failed");
    }
    Ok(reference)
}

/// Path of the static sidecar binary built for musl.
pub fn sidecar_binary() -> std::path::PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    crate::target_dir()
        .join("x86_64-unknown-linux-musl")
        .join(profile)
        .join("brainbox-sidecar")
}

/// Builds (if needed) the `FROM scratch` sidecar image and returns its reference.
pub fn sidecar_image() -> Result<String> {
    let bin_path = sidecar_binary();
    let bin = std::fs::read(&bin_path).with_context(|| {
        format!(
            "{} is missing: build it with `cargo build -p brainbox-sidecar --target x86_64-unknown-linux-musl` \
             (scripts/test.sh and scripts/demo.sh do)",
            bin_path.display()
        )
    })?;
    let reference = format!("{SIDECAR_REPO}:{}", short_hash(&bin));
    if image_exists(&reference) {
        return Ok(reference);
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("brainbox-sidecar"), &bin)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("brainbox-sidecar"),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    let dockerfile = crate::workspace_root().join("deploy/lab/sidecar.Dockerfile");
    docker(&[
        "build",
        "-q",
        "-t",
        &reference,
        "-f",
        dockerfile.to_str().expect("utf-8 path"),
        dir.path().to_str().expect("utf-8 path"),
    ])?;
    Ok(reference)
}

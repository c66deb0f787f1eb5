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

/// One of brainbox-guard's own images, built `FROM scratch` from a static musl binary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProductImage {
    /// `sidecar`, `node-agent`, `brainboxctl`.
    pub name: String,
    /// The tag it was built as.
    pub reference: String,
    /// Image id (what the runtime reports for a container started from it).
    pub id: String,
    /// Size in bytes as Docker reports it.
    pub size_bytes: u64,
}

/// The product images: (name, binary).
pub const PRODUCTS: &[(&str, &str)] = &[
    ("sidecar", "brainbox-sidecar"),
    ("node-agent", "brainbox-node-agent"),
    ("brainboxctl", "brainboxctl"),
];

/// Path of a workspace binary built for `x86_64-unknown-linux-musl` in `profile`.
pub fn musl_binary(bin: &str, profile: &str) -> std::path::PathBuf {
    crate::target_dir()
        .join("x86_64-unknown-linux-musl")
        .join(profile)
        .join(bin)
}

/// Builds (if needed) the three product images from the musl binaries of `profile`: each
/// binary is stripped of symbols and debug info and copied alone (the agent also gets
/// `profiles/`) into a `FROM scratch` image (`deploy/images/<name>.Dockerfile`), tagged
/// `brainbox-guard/<name>:<hash of what went in>`.
pub fn product_images(profile: &str) -> Result<Vec<ProductImage>> {
    let root = crate::workspace_root();
    let mut out = Vec::new();
    for (name, bin) in PRODUCTS {
        let path = musl_binary(bin, profile);
        if !path.exists() {
            bail!(
                "{} is missing: build it with `cargo build --target x86_64-unknown-linux-musl -p {} {}` \
                 (scripts/images.sh builds all three)",
                path.display(),
                if *bin == "brainboxctl" { "brainboxctl" } else { bin },
                if profile == "release" { "--release" } else { "" }
            );
        }
        let dir = tempfile::tempdir()?;
        let stripped = dir.path().join(bin);
        let st = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&path)
            .status()
            .context("strip is missing: install Debian's binutils (scripts/setup.sh)")?;
        if !st.success() {
            bail!("strip {} failed", path.display());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&std::fs::read(&stripped)?);
        let dockerfile = root.join(format!("deploy/images/{name}.Dockerfile"));
        hasher.update(&std::fs::read(&dockerfile)?);
        if *name == "node-agent" {
            let cp = Command::new("cp")
                .arg("-r")
                .arg(root.join("profiles"))
                .arg(dir.path().join("profiles"))
                .status()?;
            if !cp.success() {
                bail!("copying profiles/ failed");
            }
            let mut files: Vec<_> = walk(&dir.path().join("profiles"))?;
            files.sort();
            for f in files {
                let rel = f.strip_prefix(dir.path()).unwrap_or(&f);
                hasher.update(rel.to_string_lossy().as_bytes());
                hasher.update(&std::fs::read(&f)?);
            }
        }
        let reference = format!(
            "brainbox-guard/{name}:{}",
            &hasher.finalize().to_hex()[..12]
        );
        if !image_exists(&reference) {
            docker(&[
                "build",
                "-q",
                "-t",
                &reference,
                "-f",
                dockerfile.to_str().expect("utf-8 path"),
                dir.path().to_str().expect("utf-8 path"),
            ])?;
        }
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &reference])?;
        let size_bytes = docker(&["image", "inspect", "--format", "{{.Size}}", &reference])?
            .parse()
            .context("image size")?;
        out.push(ProductImage {
            name: name.to_string(),
            reference,
            id,
            size_bytes,
        });
    }
    Ok(out)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

//! Lab support for the hardening tests: the static syscall probe, a Python image built offline
//! from the host's Debian python3, and one-shot container runs under a seccomp profile.

use crate::docker::docker_output;
use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A seccomp profile shipped in `seccomp/`, by file name.
pub fn seccomp_profile(file: &str) -> PathBuf {
    crate::workspace_root().join("seccomp").join(file)
}

/// Builds (if needed) `tests/probe/syscall-probe.c` as a static musl binary and returns its path.
pub fn syscall_probe() -> Result<PathBuf> {
    let src = crate::workspace_root().join("tests/probe/syscall-probe.c");
    let text = std::fs::read(&src)?;
    let out_dir = crate::target_dir().join("lab");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!(
        "syscall-probe-{}",
        &blake3::hash(&text).to_hex()[..12]
    ));
    if out.exists() {
        return Ok(out);
    }
    let tmp = out.with_extension("tmp");
    let status = Command::new("musl-gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context("musl-gcc is missing: install Debian's musl-tools (scripts/setup.sh)")?;
    if !status.success() {
        bail!("musl-gcc failed to build {}", src.display());
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// One probe result: the call, and the errno name it failed with (`OK` on success).
pub type ProbeResults = std::collections::BTreeMap<String, String>;

/// Parses the probe's `name ERRNO n` lines.
pub fn parse_probe(stdout: &str) -> ProbeResults {
    stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// `docker run --rm` of `image` with `args` (flags before the image) and `cmd`; returns
/// (exit code, stdout, stderr). `--rm` removes the container even if the caller panics later.
pub fn run_once(args: &[&str], image: &str, cmd: &[&str]) -> Result<(i32, String, String)> {
    let mut full = vec!["run", "--rm", "--label", crate::LAB_LABEL];
    full.extend_from_slice(args);
    full.push(image);
    full.extend_from_slice(cmd);
    let out = docker_output(&full)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Repository of the Python workload image.
pub const PYTHON_REPO: &str = "brainbox-lab/python";

/// Builds (if needed) an image holding the host's Debian python3 (interpreter, the shared
/// libraries `ldd` names for it and its extension modules, and the standard library), made
/// offline with `docker import`, and returns its reference.
pub fn python_image() -> Result<String> {
    let exe = Path::new("/usr/bin/python3");
    let real = std::fs::canonicalize(exe)
        .context("/usr/bin/python3 is missing: install Debian's python3 (scripts/setup.sh)")?;
    let version = real
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("python3")
        .to_owned();
    let stdlib = Path::new("/usr/lib").join(&version);
    const RECIPE: &[u8] = b"python-rootfs-v1";
    let bin = std::fs::read(&real)?;
    let reference = format!(
        "{PYTHON_REPO}:{}",
        &blake3::hash(&[&bin[..], RECIPE].concat()).to_hex()[..12]
    );
    if crate::docker::image_exists(&reference) {
        return Ok(reference);
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for d in [
        "usr/bin",
        "usr/lib",
        "tmp",
        "etc",
        "proc",
        "sys",
        "dev",
        "home/agent",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(&real, root.join("usr/bin/python3"))?;
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&stdlib)
        .arg(root.join("usr/lib"))
        .status()?;
    if !cp.success() {
        bail!("copying {} failed", stdlib.display());
    }
    let copied = root.join("usr/lib").join(&version);
    for skip in [
        "test",
        "idlelib",
        "tkinter",
        "ensurepip",
        "lib2to3",
        "turtledemo",
    ] {
        let _ = std::fs::remove_dir_all(copied.join(skip));
    }
    // The interpreter and every extension module: copy the libraries they load.
    let mut objects = vec![real.clone()];
    if let Ok(rd) = std::fs::read_dir(stdlib.join("lib-dynload")) {
        objects.extend(rd.flatten().map(|e| e.path()));
    }
    let mut libs = std::collections::BTreeSet::new();
    for o in &objects {
        let out = Command::new("ldd").arg(o).output()?;
        for tok in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if tok.starts_with('/') {
                libs.insert(PathBuf::from(tok));
            }
        }
    }
    for lib in libs {
        let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        std::fs::create_dir_all(dest.parent().expect("lib has a parent"))?;
        std::fs::copy(&lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/false\nagent:x:1000:1000:agent:/home/agent:/bin/false\n",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--owner=0", "--group=0", "-cf", "-", "."])
        .output()?;
    if !tar.status.success() {
        bail!("tar of the python rootfs failed");
    }
    let mut import = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/usr/bin",
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
        bail!("docker import of the python rootfs failed");
    }
    Ok(reference)
}

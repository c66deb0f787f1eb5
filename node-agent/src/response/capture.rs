//! Forensic capture from the host side of a (frozen) container: everything is read through
//! `/proc/<pid>` and the container's cgroup and writable layer, never by running anything inside
//! the container. Every read is best effort: what fails is recorded in `capture-errors.json`,
//! and the capture goes on.

use crate::runtime::ContainerInfo;
use brainbox_audit::evidence::EvidenceWriter;
use serde::Serialize;
use std::{
    io::Read,
    path::{Path, PathBuf},
};

/// Environment variables whose values are kept (after redaction); every other value is replaced
/// by a fingerprint, because environments are where secrets live.
const ENV_KEEP: &[&str] = &[
    "PATH", "HOME", "HOSTNAME", "TERM", "LANG", "LC_ALL", "PWD", "USER", "SHELL", "TZ",
];

/// What to capture and within which bounds.
pub struct CaptureInput<'a> {
    /// The container.
    pub container: &'a ContainerInfo,
    /// The alert that triggered the response.
    pub alert: serde_json::Value,
    /// The container's most recent events, oldest first.
    pub recent_events: Vec<serde_json::Value>,
    /// The container's recent log output (already fetched from the runtime).
    pub logs: Vec<u8>,
    /// Most bytes of writable-layer file content kept (every file is still listed and hashed).
    pub max_layer_bytes: u64,
    /// Redacts text (alert outputs, environment values).
    pub redact: &'a (dyn Fn(&str) -> String + Sync),
}

/// What a capture did.
#[derive(Debug, Default, Serialize)]
pub struct CaptureSummary {
    /// Processes captured.
    pub processes: usize,
    /// Writable-layer files listed.
    pub layer_files: usize,
    /// Writable-layer bytes whose content was kept.
    pub layer_bytes_kept: u64,
    /// Writable-layer files whose content was left out because of the bound.
    pub layer_files_omitted: usize,
    /// Things that could not be read.
    pub errors: Vec<String>,
}

#[derive(Serialize)]
struct ProcessRecord {
    pid: u32,
    ppid: Option<u32>,
    name: Option<String>,
    cmdline: Option<Vec<String>>,
    exe: Option<String>,
    exe_blake3: Option<String>,
    cwd: Option<String>,
    root: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    cap_eff: Option<String>,
    cap_prm: Option<String>,
    cap_bnd: Option<String>,
    no_new_privs: Option<String>,
    seccomp: Option<String>,
    namespaces: Vec<(String, String)>,
    fds: Vec<(String, String)>,
    environ: Vec<String>,
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .map(|v| v.trim_start_matches(':').trim().to_owned())
    })
}

/// Pids in `dir` and every cgroup below it.
pub fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Redacts an environment block: names stay, values of unknown variables become fingerprints.
pub fn redact_environ(raw: &[u8], redact: &dyn Fn(&str) -> String) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            match v.split_once('=') {
                Some((k, val)) if ENV_KEEP.contains(&k) => format!("{k}={}", redact(val)),
                Some((k, val)) => {
                    let fp = blake3::derive_key("brainbox-guard environment value", val.as_bytes());
                    format!("{k}=[REDACTED:env:{}]", &hex(&fp)[..12])
                }
                None => redact(&v),
            }
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

fn process(pid: u32, redact: &dyn Fn(&str) -> String, errors: &mut Vec<String>) -> ProcessRecord {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(base.join("status")).unwrap_or_default();
    let link = |n: &str| {
        std::fs::read_link(base.join(n))
            .ok()
            .map(|p| p.display().to_string())
    };
    let exe_blake3 = match hash_file(&base.join("exe")) {
        Ok(h) => Some(h),
        Err(e) => {
            errors.push(format!("pid {pid}: hashing exe: {e}"));
            None
        }
    };
    let list_links = |dir: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(base.join(dir))
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let target = std::fs::read_link(e.path())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        (e.file_name().to_string_lossy().into_owned(), target)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    ProcessRecord {
        pid,
        ppid: status_field(&status, "PPid").and_then(|v| v.parse().ok()),
        name: status_field(&status, "Name"),
        cmdline: std::fs::read(base.join("cmdline")).ok().map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| redact(&String::from_utf8_lossy(a)))
                .collect()
        }),
        exe: link("exe"),
        exe_blake3,
        cwd: link("cwd"),
        root: link("root"),
        uid: status_field(&status, "Uid"),
        gid: status_field(&status, "Gid"),
        cap_eff: status_field(&status, "CapEff"),
        cap_prm: status_field(&status, "CapPrm"),
        cap_bnd: status_field(&status, "CapBnd"),
        no_new_privs: status_field(&status, "NoNewPrivs"),
        seccomp: status_field(&status, "Seccomp"),
        namespaces: list_links("ns"),
        fds: list_links("fd"),
        environ: std::fs::read(base.join("environ"))
            .map(|raw| redact_environ(&raw, redact))
            .unwrap_or_default(),
    }
}

#[derive(Serialize)]
struct LayerEntry {
    path: String,
    kind: &'static str,
    size: u64,
    blake3: Option<String>,
    content_kept: bool,
}

/// Adds the writable layer: an index of every changed path (files hashed, whiteouts marked as
/// deletions) and the content of files up to `max_bytes` in total.
fn layer(w: &mut EvidenceWriter, upper: &Path, max_bytes: u64, sum: &mut CaptureSummary) {
    let mut index = vec![];
    let mut stack = vec![upper.to_path_buf()];
    let mut budget = max_bytes;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            sum.errors.push(format!("reading {}", d.display()));
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(upper)
                .unwrap_or(&path)
                .display()
                .to_string();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let ft = meta.file_type();
            if ft.is_dir() {
                index.push(LayerEntry {
                    path: rel,
                    kind: "dir",
                    size: 0,
                    blake3: None,
                    content_kept: false,
                });
                stack.push(path);
            } else if ft.is_char_device() && meta.rdev() == 0 {
                // overlayfs whiteout: the file was deleted in the container.
                index.push(LayerEntry {
                    path: rel,
                    kind: "deleted",
                    size: 0,
                    blake3: None,
                    content_kept: false,
                });
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                index.push(LayerEntry {
                    path: format!("{rel} -> {target}"),
                    kind: "symlink",
                    size: 0,
                    blake3: None,
                    content_kept: false,
                });
            } else if ft.is_file() {
                sum.layer_files += 1;
                let size = meta.len();
                let keep = size <= budget;
                let hash = if keep {
                    match std::fs::File::open(&path) {
                        Ok(f) => match w.add_reader(&format!("layer/files/{rel}"), f) {
                            Ok(entry) => {
                                budget -= size.min(budget);
                                sum.layer_bytes_kept += entry.size;
                                Some(entry.blake3.clone())
                            }
                            Err(e) => {
                                sum.errors.push(format!("layer {rel}: {e}"));
                                None
                            }
                        },
                        Err(e) => {
                            sum.errors.push(format!("layer {rel}: {e}"));
                            None
                        }
                    }
                } else {
                    sum.layer_files_omitted += 1;
                    hash_file(&path).ok()
                };
                index.push(LayerEntry {
                    path: rel,
                    kind: "file",
                    size,
                    blake3: hash,
                    content_kept: keep,
                });
            } else {
                index.push(LayerEntry {
                    path: rel,
                    kind: "other",
                    size: meta.len(),
                    blake3: None,
                    content_kept: false,
                });
            }
        }
    }
    let doc = serde_json::json!({
        "upper_dir": upper.display().to_string(),
        "max_content_bytes": max_bytes,
        "entries": index,
    });
    if let Err(e) = w.add_json("layer/index.json", &doc) {
        sum.errors.push(format!("layer index: {e}"));
    }
}

/// Captures everything into `w`. Never fails: problems are listed in the summary (and in the
/// bundle as `capture-errors.json`).
pub fn capture(w: &mut EvidenceWriter, input: &CaptureInput<'_>) -> CaptureSummary {
    let mut sum = CaptureSummary::default();
    let c = input.container;
    let add = |w: &mut EvidenceWriter, name: &str, bytes: &[u8], sum: &mut CaptureSummary| {
        if let Err(e) = w.add_file(name, bytes) {
            sum.errors.push(format!("{name}: {e}"));
        }
    };
    if let Err(e) = w.add_json("alert.json", &input.alert) {
        sum.errors.push(format!("alert.json: {e}"));
    }
    let container_doc = serde_json::json!({
        "container": c,
        "cgroup_id": c.cgroup_id,
        "cgroup_dir": c.cgroup_dir.display().to_string(),
        "init_pid": c.init_pid,
        "privileged": c.privileged,
    });
    if let Err(e) = w.add_json("container.json", &container_doc) {
        sum.errors.push(format!("container.json: {e}"));
    }
    for f in [
        "cgroup.events",
        "cgroup.freeze",
        "cgroup.procs",
        "cgroup.stat",
    ] {
        match std::fs::read(c.cgroup_dir.join(f)) {
            Ok(b) => add(w, &format!("cgroup/{f}"), &b, &mut sum),
            Err(e) => sum.errors.push(format!("cgroup/{f}: {e}")),
        }
    }
    let pids = cgroup_pids(&c.cgroup_dir);
    let mut procs = vec![];
    for pid in &pids {
        procs.push(process(*pid, input.redact, &mut sum.errors));
        for f in ["mountinfo", "status"] {
            if let Ok(b) = std::fs::read(format!("/proc/{pid}/{f}")) {
                add(w, &format!("proc/{pid}/{f}"), &b, &mut sum);
            }
        }
    }
    sum.processes = procs.len();
    if let Err(e) = w.add_json("processes.json", &procs) {
        sum.errors.push(format!("processes.json: {e}"));
    }
    // Sockets: the tables of the container's network namespace, read through its init process.
    let netpid = pids.first().copied().unwrap_or(c.init_pid);
    for t in ["tcp", "tcp6", "udp", "udp6", "unix", "raw", "packet"] {
        if let Ok(b) = std::fs::read(format!("/proc/{netpid}/net/{t}")) {
            add(w, &format!("net/{t}"), &b, &mut sum);
        }
    }
    match &c.writable {
        Some(l) => layer(w, &l.upper_dir, input.max_layer_bytes, &mut sum),
        None => sum
            .errors
            .push("no writable layer known for this container".into()),
    }
    add(w, "logs/container.log", &input.logs, &mut sum);
    let mut events = Vec::new();
    for e in &input.recent_events {
        events.extend_from_slice(e.to_string().as_bytes());
        events.push(b'\n');
    }
    add(w, "events.jsonl", &events, &mut sum);
    if let Err(e) = w.add_json("capture-errors.json", &sum.errors) {
        tracing::warn!(error = %e, "could not record capture errors");
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_fingerprinted_unless_harmless() {
        let raw = b"PATH=/bin\0AWS_SECRET_ACCESS_KEY=abc123\0HOME=/home/agent\0junk\0";
        let out = redact_environ(raw, &|s: &str| s.to_owned());
        assert_eq!(out[0], "PATH=/bin");
        assert!(
            out[1].starts_with("AWS_SECRET_ACCESS_KEY=[REDACTED:env:"),
            "{}",
            out[1]
        );
        assert!(!out[1].contains("abc123"));
        assert_eq!(out[2], "HOME=/home/agent");
        // Same value, same fingerprint (correlatable); different value, different one.
        let again = redact_environ(b"OTHER=abc123\0X=zzz\0", &|s: &str| s.to_owned());
        assert_eq!(out[1].split('=').nth(1), again[0].split('=').nth(1));
        assert_ne!(again[0].split('=').nth(1), again[1].split('=').nth(1));
    }

    #[test]
    fn status_fields() {
        let st = "Name:\tcat\nPPid:\t7\nCapEff:\t0000000000000000\n";
        assert_eq!(status_field(st, "PPid").as_deref(), Some("7"));
        assert_eq!(
            status_field(st, "CapEff").as_deref(),
            Some("0000000000000000")
        );
        assert_eq!(status_field(st, "Nope"), None);
    }

    #[test]
    fn own_process_is_captured() {
        let mut errors = vec![];
        let p = process(std::process::id(), &|s: &str| s.to_owned(), &mut errors);
        assert!(p.exe_blake3.is_some(), "{errors:?}");
        assert!(!p.fds.is_empty());
        assert!(!p.namespaces.is_empty());
    }
}

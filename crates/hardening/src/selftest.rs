//! Proof, from inside a sandboxed process, that its filter refuses what it should: try calls the
//! filter does not allow, with arguments that would fail differently (or harmlessly succeed)
//! without a filter, and report the errno each one got.

use nix::errno::Errno;

/// One attempted call and what the kernel answered (`None` when it succeeded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The system call tried.
    pub syscall: &'static str,
    /// The errno it failed with, if it failed.
    pub errno: Option<Errno>,
}

/// Tries `unshare(CLONE_NEWUSER)`, `mount` on a path that does not exist, and an `execve` of
/// `/proc/self/exe --version` (through `std::process::Command`). Without a filter, the first
/// may succeed (a new, empty user namespace for this process only), the second fails with
/// ENOENT, the third succeeds; under brainbox-guard's self-filter all three fail with EPERM.
pub fn refused_calls() -> Vec<Attempt> {
    let mut out = Vec::new();
    out.push(Attempt {
        syscall: "unshare",
        errno: nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).err(),
    });
    out.push(Attempt {
        syscall: "mount",
        errno: nix::mount::mount(
            Some("none"),
            "/nonexistent-brainbox-selftest",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .err(),
    });
    let exec = std::process::Command::new("/proc/self/exe")
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    out.push(Attempt {
        syscall: "execve",
        errno: match exec {
            Ok(_) => None,
            Err(e) => Some(
                e.raw_os_error()
                    .map(Errno::from_raw)
                    .unwrap_or(Errno::UnknownErrno),
            ),
        },
    });
    out
}

//! The process table: what the agent knows about each watched process (exec lineage, cmdline,
//! exe path, tty, session, whether the exe lives in the container's writable layer or a memfd),
//! fed by exec/fork/exit events and, for processes older than the agent, by `/proc`. Bounded in
//! memory: exited entries expire after a grace period, and past the capacity the least recently
//! seen entries go first.

pub mod procfs;

use crate::sensor::decode::{Exec, Header};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Most processes kept.
pub const DEFAULT_CAPACITY: usize = 32_768;
/// How long an exited process stays (so late events and children can still see it).
pub const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Most memfd and socket fds remembered per process.
const MAX_FDS: usize = 64;

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// pid in the host namespace.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Executable name as the kernel's `comm` has it (basename, at most 15 bytes).
    pub name: String,
    /// argv[0] (Falco's `proc.exe`).
    pub exe: String,
    /// Full path of the executable (Falco's `proc.exepath`).
    pub exepath: String,
    /// argv[1..].
    pub args: Vec<String>,
    /// Controlling terminal (`tty_nr`), 0 for none.
    pub tty: u32,
    /// Session id.
    pub sid: u32,
    /// Process group id.
    pub pgid: u32,
    /// Real uid at the last event.
    pub uid: u32,
    /// Real gid at the last event.
    pub gid: u32,
    /// Working directory at exec, if known.
    pub cwd: Option<String>,
    /// The executable was written in the container's writable layer.
    pub exe_upper_layer: bool,
    /// The executable is a memfd (fileless execution).
    pub exe_from_memfd: bool,
    /// Effective capabilities at exec, if known.
    pub cap_effective: Option<u64>,
    /// fds returned by memfd_create.
    pub memfds: Vec<i64>,
    /// Socket fds created by socket(): fd → address family.
    pub sockets: Vec<(i64, u16)>,
    /// True when learned from /proc instead of an observed exec.
    pub from_proc: bool,
    last_seen: Instant,
    exited: Option<Instant>,
}

impl ProcInfo {
    /// A process known only by its pid.
    pub fn unknown(pid: u32) -> Self {
        Self::empty(pid)
    }

    fn empty(pid: u32) -> Self {
        ProcInfo {
            pid,
            ppid: 0,
            name: String::new(),
            exe: String::new(),
            exepath: String::new(),
            args: vec![],
            tty: 0,
            sid: 0,
            pgid: 0,
            uid: 0,
            gid: 0,
            cwd: None,
            exe_upper_layer: false,
            exe_from_memfd: false,
            cap_effective: None,
            memfds: vec![],
            sockets: vec![],
            from_proc: false,
            last_seen: Instant::now(),
            exited: None,
        }
    }

    /// Reads a live process from /proc.
    pub fn from_proc(pid: u32) -> Option<Self> {
        let stat = procfs::stat(pid)?;
        let argv = procfs::cmdline(pid).unwrap_or_default();
        let mut p = ProcInfo::empty(pid);
        p.ppid = stat.ppid;
        p.tty = stat.tty;
        p.sid = stat.sid;
        p.pgid = stat.pgid;
        p.name = procfs::comm(pid).unwrap_or_default();
        p.exe = argv.first().cloned().unwrap_or_default();
        p.args = argv.iter().skip(1).cloned().collect();
        p.exepath = procfs::link(pid, "exe").unwrap_or_default();
        p.cwd = procfs::link(pid, "cwd");
        p.cap_effective = procfs::cap_effective(pid);
        p.exe_from_memfd = p.exepath.starts_with("/memfd:");
        p.from_proc = true;
        Some(p)
    }

    /// The command line as Falco's `proc.cmdline` renders it: name and arguments.
    pub fn cmdline(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The remembered address family of socket fd `fd`.
    pub fn socket_family(&self, fd: i64) -> Option<u16> {
        self.sockets
            .iter()
            .find(|(f, _)| *f == fd)
            .map(|(_, fam)| *fam)
    }

    fn remember<T: PartialEq>(list: &mut Vec<T>, item: T) {
        if list.len() >= MAX_FDS {
            list.remove(0);
        }
        list.push(item);
    }

    /// Records a memfd fd.
    pub fn add_memfd(&mut self, fd: i64) {
        Self::remember(&mut self.memfds, fd);
    }

    /// Records a socket fd and its family (a reused fd number replaces the old entry).
    pub fn add_socket(&mut self, fd: i64, family: u16) {
        self.sockets.retain(|(f, _)| *f != fd);
        Self::remember(&mut self.sockets, (fd, family));
    }
}

/// `comm` as the kernel sets it at exec: the file name's basename, at most 15 bytes.
pub fn comm_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_owned()
}

/// The fd number a path like `/dev/fd/3` or `/proc/self/fd/3` names.
pub fn fd_path_number(path: &str) -> Option<i64> {
    path.strip_prefix("/dev/fd/")
        .or_else(|| path.strip_prefix("/proc/self/fd/"))
        .and_then(|n| n.parse().ok())
}

/// A container's writable layer: the overlayfs upper dir, and the mount points inside the
/// container (bind mounts, tmpfs) whose paths are *not* in that layer even if a stub for the
/// mount point was created there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritableLayer {
    /// The upper dir on the host.
    pub upper_dir: std::path::PathBuf,
    /// Mount points inside the container.
    pub mounts: Vec<String>,
}

impl WritableLayer {
    /// True when `path` (absolute, inside the container) is a regular file written into the
    /// writable layer.
    pub fn contains(&self, path: &str) -> bool {
        let under_mount = self.mounts.iter().any(|m| {
            let m = m.trim_end_matches('/');
            path == m || path.starts_with(&format!("{m}/"))
        });
        !under_mount
            && self
                .upper_dir
                .join(path.trim_start_matches('/'))
                .symlink_metadata()
                .is_ok_and(|m| m.is_file())
    }
}

/// The process table.
pub struct ProcessTable {
    map: HashMap<u32, ProcInfo>,
    capacity: usize,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl ProcessTable {
    /// A table holding at most `capacity` processes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(16),
        }
    }

    /// Number of processes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The process, loading it from /proc if the table has not seen it.
    pub fn get_or_load(&mut self, pid: u32) -> Option<&mut ProcInfo> {
        if !self.map.contains_key(&pid) {
            let p = ProcInfo::from_proc(pid)?;
            self.insert(p);
        }
        let p = self.map.get_mut(&pid)?;
        p.last_seen = Instant::now();
        Some(p)
    }

    /// The process if known (no /proc read).
    pub fn get(&self, pid: u32) -> Option<&ProcInfo> {
        self.map.get(&pid)
    }

    /// Inserts (or replaces) a process, evicting as needed.
    pub fn insert(&mut self, p: ProcInfo) {
        if self.map.len() >= self.capacity && !self.map.contains_key(&p.pid) {
            self.expire(Instant::now());
            if self.map.len() >= self.capacity {
                // Still full: drop the least recently seen eighth in one pass.
                let mut ages: Vec<(Instant, u32)> =
                    self.map.values().map(|p| (p.last_seen, p.pid)).collect();
                ages.sort_unstable();
                for (_, pid) in ages.iter().take(self.capacity / 8 + 1) {
                    self.map.remove(pid);
                }
            }
        }
        self.map.insert(p.pid, p);
    }

    /// A fork: the child starts as a copy of its parent.
    pub fn on_fork(&mut self, parent: &Header, child_pid: u32) {
        let mut child = match self.get_or_load(parent.pid) {
            Some(p) => p.clone(),
            None => ProcInfo::empty(child_pid),
        };
        child.pid = child_pid;
        child.ppid = parent.pid;
        child.from_proc = false;
        child.exited = None;
        child.last_seen = Instant::now();
        self.insert(child);
    }

    /// An exec: the process takes a new image. `upper_dir` is the container's writable layer.
    pub fn on_exec(&mut self, ev: &Exec, upper: Option<&WritableLayer>) -> &ProcInfo {
        let pid = ev.hdr.pid;
        let before = self.get_or_load(pid).cloned();
        let mut p = before.clone().unwrap_or_else(|| ProcInfo::empty(pid));
        let live = procfs::stat(pid);
        if let Some(st) = live {
            p.ppid = st.ppid;
            p.tty = st.tty;
            p.sid = st.sid;
            p.pgid = st.pgid;
        } else if ev.hdr.ppid != 0 {
            p.ppid = ev.hdr.ppid;
        }
        p.uid = ev.hdr.uid;
        p.gid = ev.hdr.gid;
        p.exe = ev
            .argv
            .first()
            .cloned()
            .unwrap_or_else(|| ev.filename.clone());
        p.args = ev.argv.iter().skip(1).cloned().collect();
        let link = procfs::link(pid, "exe");
        // fd-based exec (fexecve): execveat(fd, "", AT_EMPTY_PATH) or a /dev/fd/N path.
        let exec_fd = match ev.dirfd {
            Some(fd) if ev.filename.is_empty() => Some(fd as i64),
            _ => fd_path_number(&ev.filename),
        };
        let via_memfd_fd =
            exec_fd.is_some_and(|fd| before.as_ref().is_some_and(|b| b.memfds.contains(&fd)));
        p.exe_from_memfd =
            via_memfd_fd || link.as_deref().is_some_and(|l| l.starts_with("/memfd:"));
        // /proc/<pid>/exe is the truth while the process still runs this image; a process that
        // exec'd again (or exited) before we looked would show another file, so an absolute
        // filename from the event wins over the link.
        let direct = ev.filename.starts_with('/')
            && exec_fd.is_none()
            && !ev.filename.starts_with("/proc/")
            && !ev.filename.starts_with("/dev/fd/");
        p.exepath = match (&link, direct) {
            (Some(l), false) => l.clone(),
            (Some(l), true) if comm_of(l) == comm_of(&ev.filename) => l.clone(),
            _ => ev.filename.clone(),
        };
        // The kernel names the process after the basename of the path it executed (for an fd
        // exec, `/dev/fd/N`), not after what /proc says later.
        p.name = match exec_fd {
            Some(fd) if ev.filename.is_empty() => fd.to_string(),
            _ => comm_of(&ev.filename),
        };
        p.cwd = procfs::link(pid, "cwd").or(p.cwd);
        p.cap_effective = procfs::cap_effective(pid).or(p.cap_effective);
        let checked_path = if direct {
            ev.filename.as_str()
        } else {
            p.exepath.as_str()
        };
        p.exe_upper_layer = !p.exe_from_memfd
            && checked_path.starts_with('/')
            && upper.is_some_and(|u| u.contains(checked_path));
        p.from_proc = false;
        p.exited = None;
        p.last_seen = Instant::now();
        // fds survive exec unless close-on-exec: keep what we knew.
        self.insert(p);
        self.map.get(&pid).expect("just inserted")
    }

    /// An exit: the entry stays for [`EXIT_GRACE`].
    pub fn on_exit(&mut self, pid: u32) {
        if let Some(p) = self.map.get_mut(&pid) {
            p.exited = Some(Instant::now());
        }
    }

    /// Removes exited processes older than the grace period.
    pub fn expire(&mut self, now: Instant) {
        self.map
            .retain(|_, p| p.exited.is_none_or(|t| now.duration_since(t) < EXIT_GRACE));
    }

    /// Up to `n` ancestors of `pid`, nearest first (parent = index 0). Stops at pid 1, at a loop,
    /// or at a process neither the table nor /proc knows.
    pub fn ancestors(&mut self, pid: u32, n: usize) -> Vec<ProcInfo> {
        let mut out = Vec::new();
        let mut cur = self.get(pid).map(|p| p.ppid).unwrap_or(0);
        while out.len() < n && cur > 0 {
            if out.iter().any(|p: &ProcInfo| p.pid == cur) || cur == pid {
                break;
            }
            let Some(p) = self.get_or_load(cur).cloned() else {
                break;
            };
            cur = if p.pid == 1 { 0 } else { p.ppid };
            out.push(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(pid: u32, filename: &str, argv: &[&str]) -> Exec {
        Exec {
            hdr: Header {
                pid,
                tid: pid,
                uid: 1000,
                gid: 1000,
                ..Default::default()
            },
            filename: filename.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
            cut: false,
            dirfd: None,
        }
    }

    // pids far above pid_max so /proc never knows them.
    const P: u32 = 4_000_000_001;

    #[test]
    fn comm_is_basename_cut_to_15() {
        assert_eq!(comm_of("/usr/bin/python3"), "python3");
        assert_eq!(comm_of("a-very-long-program-name"), "a-very-long-pro");
        assert_eq!(comm_of("sh"), "sh");
    }

    #[test]
    fn fd_paths() {
        assert_eq!(fd_path_number("/dev/fd/3"), Some(3));
        assert_eq!(fd_path_number("/proc/self/fd/12"), Some(12));
        assert_eq!(fd_path_number("/bin/sh"), None);
    }

    #[test]
    fn exec_fork_lineage_and_exit() {
        let mut t = ProcessTable::default();
        let mut shell = ProcInfo::empty(P);
        shell.name = "sh".into();
        shell.ppid = 1;
        t.insert(shell);
        let parent = Header {
            pid: P,
            ..Default::default()
        };
        t.on_fork(&parent, P + 1);
        let p = t.on_exec(&exec(P + 1, "/bin/cat", &["cat", "/etc/shadow"]), None);
        assert_eq!(p.name, "cat");
        assert_eq!(p.exe, "cat");
        assert_eq!(p.exepath, "/bin/cat");
        assert_eq!(p.args, vec!["/etc/shadow"]);
        assert_eq!(p.cmdline(), "cat /etc/shadow");
        assert_eq!(p.ppid, P);
        let anc = t.ancestors(P + 1, 4);
        assert_eq!(anc[0].name, "sh");
        // comm comes from the executed path, as the kernel sets it.
        let again = t.on_exec(&exec(P + 1, "/proc/self/exe", &["nc"]), None);
        assert_eq!(again.name, "exe");
        t.on_exit(P + 1);
        t.expire(Instant::now() + EXIT_GRACE + Duration::from_secs(1));
        assert!(t.get(P + 1).is_none());
        assert!(t.get(P).is_some());
    }

    #[test]
    fn memfd_exec_is_recognised_from_the_fd() {
        let mut t = ProcessTable::default();
        let mut p = ProcInfo::empty(P);
        p.add_memfd(3);
        t.insert(p);
        let mut e = exec(P, "", &["payload"]);
        e.dirfd = Some(3);
        assert!(t.on_exec(&e, None).exe_from_memfd);
        let mut t = ProcessTable::default();
        let mut p = ProcInfo::empty(P);
        p.add_memfd(4);
        t.insert(p);
        assert!(
            t.on_exec(&exec(P, "/proc/self/fd/4", &["x"]), None)
                .exe_from_memfd
        );
        assert!(
            !t.on_exec(&exec(P, "/bin/true", &["true"]), None)
                .exe_from_memfd
        );
    }

    #[test]
    fn upper_layer_is_checked_against_the_writable_layer() {
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(upper.path().join("tmp")).unwrap();
        std::fs::write(upper.path().join("tmp/dropped"), b"\x7fELF").unwrap();
        std::fs::create_dir_all(upper.path().join("opt")).unwrap();
        std::fs::write(upper.path().join("opt/tool"), b"").unwrap();
        let layer = WritableLayer {
            upper_dir: upper.path().to_path_buf(),
            mounts: vec!["/opt/tool".into(), "/run/secrets".into()],
        };
        let mut t = ProcessTable::default();
        let dropped = exec(P, "/tmp/dropped", &["dropped"]);
        assert!(t.on_exec(&dropped, Some(&layer)).exe_upper_layer);
        assert!(
            !t.on_exec(&exec(P, "/bin/sh", &["sh"]), Some(&layer))
                .exe_upper_layer
        );
        assert!(!t.on_exec(&dropped, None).exe_upper_layer);
        // A bind-mount stub in the upper dir is not a dropped binary.
        assert!(
            !t.on_exec(&exec(P, "/opt/tool", &["tool"]), Some(&layer))
                .exe_upper_layer
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let mut t = ProcessTable::with_capacity(64);
        for i in 0..1000 {
            t.insert(ProcInfo::empty(P + i));
        }
        assert!(t.len() <= 64, "{}", t.len());
    }

    #[test]
    fn ancestor_loops_terminate() {
        let mut t = ProcessTable::default();
        let mut a = ProcInfo::empty(P);
        a.ppid = P + 1;
        let mut b = ProcInfo::empty(P + 1);
        b.ppid = P;
        t.insert(a);
        t.insert(b);
        assert_eq!(t.ancestors(P, 10).len(), 1);
    }

    #[test]
    fn socket_fds_are_remembered_and_bounded() {
        let mut p = ProcInfo::empty(P);
        for fd in 0..200 {
            p.add_socket(fd, 2);
        }
        assert!(p.sockets.len() <= MAX_FDS);
        p.add_socket(199, 10);
        assert_eq!(p.socket_family(199), Some(10));
    }
}

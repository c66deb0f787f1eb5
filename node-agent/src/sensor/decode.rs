//! Decoding ring buffer records into owned events. Pure logic: the kernel's bytes are outside
//! input as far as this code is concerned, so every length is checked.

use brainbox_ebpf_common::{
    c_str, EventHeader, EventKind, ExecEvent, ExecFlags, ExitEvent, ForkEvent, Sc, SyscallEvent,
    SyscallFlags, ADDR_LEN, ARG_LEN, MAX_ARGS, PATH_LEN,
};
use std::mem::size_of;

/// A decoded sensor event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorEvent {
    /// A successful exec.
    Exec(Exec),
    /// A watched syscall.
    Syscall(Syscall),
    /// A new process.
    Fork {
        /// Parent's header.
        hdr: Header,
        /// The child's pid.
        child_pid: u32,
    },
    /// A process exited.
    Exit {
        /// Header of the exiting process.
        hdr: Header,
    },
}

impl SensorEvent {
    /// The common header.
    pub fn header(&self) -> &Header {
        match self {
            SensorEvent::Exec(e) => &e.hdr,
            SensorEvent::Syscall(s) => &s.hdr,
            SensorEvent::Fork { hdr, .. } | SensorEvent::Exit { hdr } => hdr,
        }
    }

    /// The kind's short name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SensorEvent::Exec(_) => EventKind::Exec.name(),
            SensorEvent::Syscall(_) => EventKind::Syscall.name(),
            SensorEvent::Fork { .. } => EventKind::Fork.name(),
            SensorEvent::Exit { .. } => EventKind::Exit.name(),
        }
    }
}

/// The common header, owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Boot-time nanoseconds.
    pub ts_ns: u64,
    /// CPU.
    pub cpu: u32,
    /// Process id (host pid namespace).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent pid, 0 if the kernel side did not know it.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

/// A successful exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Header.
    pub hdr: Header,
    /// The path the caller passed to execve.
    pub filename: String,
    /// argv (lossily decoded as UTF-8).
    pub argv: Vec<String>,
    /// argv had more entries than the kernel side keeps.
    pub args_truncated: bool,
    /// Some entry (or the filename) was cut at its slot size.
    pub cut: bool,
    /// For execveat, the directory fd (`AT_FDCWD` = -100); `None` for execve.
    pub dirfd: Option<i32>,
}

/// A watched syscall with its entry arguments and result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syscall {
    /// Header.
    pub hdr: Header,
    /// Which syscall.
    pub sc: Sc,
    /// Return value.
    pub ret: i64,
    /// Raw arguments.
    pub args: [u64; 6],
    /// First path argument, if any.
    pub path1: Option<String>,
    /// Second path argument, if any.
    pub path2: Option<String>,
    /// A path was cut at the kernel's bound.
    pub cut: bool,
    /// Raw socket address bytes (connect's argument or accept's result).
    pub addr: Option<Vec<u8>>,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("record of {0} bytes is shorter than the event header")]
    Short(usize),
    /// Unknown kind value.
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    /// Unknown syscall value.
    #[error("unknown syscall id {0}")]
    UnknownSyscall(u32),
    /// The body is shorter than the kind requires.
    #[error("{kind} record of {got} bytes, expected {want}")]
    BodySize {
        kind: &'static str,
        got: usize,
        want: usize,
    },
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

const HDR: usize = size_of::<EventHeader>();

fn header(b: &[u8]) -> Header {
    Header {
        cpu: u32_at(b, 4),
        ts_ns: u64_at(b, 8),
        pid: u32_at(b, 16),
        tid: u32_at(b, 20),
        ppid: u32_at(b, 24),
        uid: u32_at(b, 28),
        gid: u32_at(b, 32),
        cgroup_id: u64_at(b, 40),
    }
}

fn string(slot: &[u8]) -> String {
    String::from_utf8_lossy(c_str(slot)).into_owned()
}

fn need(b: &[u8], kind: &'static str, want: usize) -> Result<(), DecodeError> {
    if b.len() < want {
        return Err(DecodeError::BodySize {
            kind,
            got: b.len(),
            want,
        });
    }
    Ok(())
}

/// Decodes one ring buffer record.
pub fn decode(b: &[u8]) -> Result<SensorEvent, DecodeError> {
    if b.len() < HDR {
        return Err(DecodeError::Short(b.len()));
    }
    let kind = u32_at(b, 0);
    match EventKind::from_u32(kind) {
        Some(EventKind::Exec) => decode_exec(b),
        Some(EventKind::Syscall) => decode_syscall(b),
        Some(EventKind::Fork) => {
            need(b, "fork", size_of::<ForkEvent>())?;
            Ok(SensorEvent::Fork {
                hdr: header(b),
                child_pid: u32_at(b, HDR),
            })
        }
        Some(EventKind::Exit) => {
            need(b, "exit", size_of::<ExitEvent>())?;
            Ok(SensorEvent::Exit { hdr: header(b) })
        }
        None => Err(DecodeError::UnknownKind(kind)),
    }
}

fn decode_exec(b: &[u8]) -> Result<SensorEvent, DecodeError> {
    need(b, "exec", size_of::<ExecEvent>())?;
    let argc = (u32_at(b, HDR + 4) as usize).min(MAX_ARGS);
    let flags = u32_at(b, HDR + 8);
    let dirfd = u32_at(b, HDR + 12) as i32;
    let fname_off = HDR + 16;
    let args_off = fname_off + PATH_LEN;
    let argv = (0..argc)
        .map(|i| string(&b[args_off + i * ARG_LEN..args_off + (i + 1) * ARG_LEN]))
        .collect();
    Ok(SensorEvent::Exec(Exec {
        hdr: header(b),
        filename: string(&b[fname_off..fname_off + PATH_LEN]),
        argv,
        args_truncated: flags & ExecFlags::ARGS_TRUNCATED != 0,
        cut: flags & (ExecFlags::ARG_CUT | ExecFlags::PATH_CUT) != 0,
        dirfd: (flags & ExecFlags::EXECVEAT != 0).then_some(dirfd),
    }))
}

// Offsets inside SyscallEvent after the header.
const SC_ID: usize = HDR;
const SC_FLAGS: usize = HDR + 4;
const SC_RET: usize = HDR + 8;
const SC_ARGS: usize = HDR + 16;
const SC_PATH1: usize = SC_ARGS + 48;
const SC_PATH2: usize = SC_PATH1 + PATH_LEN;
const SC_ADDR: usize = SC_PATH2 + PATH_LEN;
const SC_ADDR_LEN: usize = SC_ADDR + ADDR_LEN;

fn decode_syscall(b: &[u8]) -> Result<SensorEvent, DecodeError> {
    need(b, "syscall", size_of::<SyscallEvent>())?;
    let id = u32_at(b, SC_ID);
    let sc = Sc::from_u32(id).ok_or(DecodeError::UnknownSyscall(id))?;
    let flags = u32_at(b, SC_FLAGS);
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = u64_at(b, SC_ARGS + 8 * i);
    }
    let path = |off: usize| {
        let s = string(&b[off..off + PATH_LEN]);
        (!s.is_empty()).then_some(s)
    };
    let addr = (flags & SyscallFlags::HAS_ADDR != 0).then(|| {
        let len = (u32_at(b, SC_ADDR_LEN) as usize).min(ADDR_LEN);
        b[SC_ADDR..SC_ADDR + len].to_vec()
    });
    Ok(SensorEvent::Syscall(Syscall {
        hdr: header(b),
        sc,
        ret: u64_at(b, SC_RET) as i64,
        args,
        path1: path(SC_PATH1),
        path2: path(SC_PATH2),
        cut: flags & (SyscallFlags::PATH1_CUT | SyscallFlags::PATH2_CUT) != 0,
        addr,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exec_record(args: &[&str], filename: &str, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; size_of::<ExecEvent>()];
        b[0..4].copy_from_slice(&1u32.to_ne_bytes());
        b[16..20].copy_from_slice(&4242u32.to_ne_bytes());
        b[28..32].copy_from_slice(&1000u32.to_ne_bytes());
        b[40..48].copy_from_slice(&77u64.to_ne_bytes());
        b[HDR + 4..HDR + 8].copy_from_slice(&(args.len() as u32).to_ne_bytes());
        b[HDR + 8..HDR + 12].copy_from_slice(&flags.to_ne_bytes());
        let f = HDR + 16;
        b[f..f + filename.len()].copy_from_slice(filename.as_bytes());
        for (i, a) in args.iter().enumerate() {
            let o = f + PATH_LEN + i * ARG_LEN;
            b[o..o + a.len()].copy_from_slice(a.as_bytes());
        }
        b
    }

    fn syscall_record(sc: Sc, ret: i64, p1: &str, p2: &str, addr: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; size_of::<SyscallEvent>()];
        b[0..4].copy_from_slice(&2u32.to_ne_bytes());
        b[16..20].copy_from_slice(&9u32.to_ne_bytes());
        b[SC_ID..SC_ID + 4].copy_from_slice(&(sc as u32).to_ne_bytes());
        let flags = if addr.is_empty() {
            0
        } else {
            SyscallFlags::HAS_ADDR
        };
        b[SC_FLAGS..SC_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
        b[SC_RET..SC_RET + 8].copy_from_slice(&ret.to_ne_bytes());
        b[SC_ARGS..SC_ARGS + 8].copy_from_slice(&5u64.to_ne_bytes());
        b[SC_PATH1..SC_PATH1 + p1.len()].copy_from_slice(p1.as_bytes());
        b[SC_PATH2..SC_PATH2 + p2.len()].copy_from_slice(p2.as_bytes());
        b[SC_ADDR..SC_ADDR + addr.len()].copy_from_slice(addr);
        b[SC_ADDR_LEN..SC_ADDR_LEN + 4].copy_from_slice(&(addr.len() as u32).to_ne_bytes());
        b
    }

    #[test]
    fn layout_matches_the_kernel_struct() {
        assert_eq!(SC_ADDR_LEN + 8, size_of::<SyscallEvent>());
    }

    #[test]
    fn decodes_exec() {
        let b = exec_record(&["cat", "/etc/hostname"], "/bin/cat", 0);
        let SensorEvent::Exec(e) = decode(&b).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.argv, vec!["cat", "/etc/hostname"]);
        assert_eq!(e.filename, "/bin/cat");
        assert_eq!(e.hdr.pid, 4242);
        assert_eq!(e.hdr.uid, 1000);
        assert_eq!(e.hdr.cgroup_id, 77);
        assert!(!e.args_truncated);
        assert_eq!(e.dirfd, None);
    }

    #[test]
    fn flags_are_reported() {
        let b = exec_record(&["x"], "/x", ExecFlags::ARGS_TRUNCATED | ExecFlags::ARG_CUT);
        let SensorEvent::Exec(e) = decode(&b).unwrap() else {
            panic!("not exec")
        };
        assert!(e.args_truncated && e.cut);
    }

    #[test]
    fn decodes_syscall_with_paths_and_address() {
        let b = syscall_record(
            Sc::Symlinkat,
            0,
            "/etc/shadow",
            "/tmp/x",
            &[2, 0, 0, 80, 127, 0, 0, 1],
        );
        let SensorEvent::Syscall(s) = decode(&b).unwrap() else {
            panic!("not syscall")
        };
        assert_eq!(s.sc, Sc::Symlinkat);
        assert_eq!(s.path1.as_deref(), Some("/etc/shadow"));
        assert_eq!(s.path2.as_deref(), Some("/tmp/x"));
        assert_eq!(s.addr.as_deref(), Some(&[2, 0, 0, 80, 127, 0, 0, 1][..]));
        assert_eq!(s.args[0], 5);
        let b = syscall_record(Sc::Openat, -13, "/etc/shadow", "", &[]);
        let SensorEvent::Syscall(s) = decode(&b).unwrap() else {
            panic!("not syscall")
        };
        assert_eq!(s.ret, -13);
        assert_eq!(s.path2, None);
        assert_eq!(s.addr, None);
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(DecodeError::Short(10)));
        let mut b = vec![0u8; 64];
        b[0] = 99;
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));
        b[0] = 1;
        assert!(matches!(decode(&b), Err(DecodeError::BodySize { .. })));
        let mut b = syscall_record(Sc::Open, 0, "", "", &[]);
        b[SC_ID..SC_ID + 4].copy_from_slice(&999u32.to_ne_bytes());
        assert_eq!(decode(&b), Err(DecodeError::UnknownSyscall(999)));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_with_a_valid_kind(kind in 1u32..5, mut bytes in proptest::collection::vec(any::<u8>(), 48..3000)) {
            bytes[0..4].copy_from_slice(&kind.to_ne_bytes());
            let _ = decode(&bytes);
        }

        #[test]
        fn argc_is_clamped(argc in any::<u32>()) {
            let mut b = exec_record(&[], "/x", 0);
            b[HDR + 4..HDR + 8].copy_from_slice(&argc.to_ne_bytes());
            let SensorEvent::Exec(e) = decode(&b).unwrap() else { panic!("not exec") };
            prop_assert!(e.argv.len() <= MAX_ARGS);
        }

        #[test]
        fn addr_len_is_clamped(len in any::<u32>()) {
            let mut b = syscall_record(Sc::Connect, 0, "", "", &[2, 0]);
            b[SC_ADDR_LEN..SC_ADDR_LEN + 4].copy_from_slice(&len.to_ne_bytes());
            let SensorEvent::Syscall(s) = decode(&b).unwrap() else { panic!("not syscall") };
            prop_assert!(s.addr.unwrap().len() <= ADDR_LEN);
        }
    }
}

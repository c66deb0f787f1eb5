//! Decoding ring buffer records into owned events. Pure logic: the kernel's bytes are outside
//! input as far as this code is concerned, so every length is checked.

use brainbox_ebpf_common::{c_str, EventHeader, EventKind, ExecEvent, ExecFlags, MAX_ARGS};

/// A decoded sensor event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorEvent {
    /// A successful exec.
    Exec(Exec),
}

impl SensorEvent {
    /// The common header.
    pub fn header(&self) -> &Header {
        match self {
            SensorEvent::Exec(e) => &e.hdr,
        }
    }

    /// The kind's short name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SensorEvent::Exec(_) => EventKind::Exec.name(),
        }
    }
}

/// The common header, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
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

const HDR: usize = std::mem::size_of::<EventHeader>();

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

/// Decodes one ring buffer record.
pub fn decode(b: &[u8]) -> Result<SensorEvent, DecodeError> {
    if b.len() < HDR {
        return Err(DecodeError::Short(b.len()));
    }
    let kind = u32_at(b, 0);
    match EventKind::from_u32(kind) {
        Some(EventKind::Exec) => {
            let want = std::mem::size_of::<ExecEvent>();
            if b.len() < want {
                return Err(DecodeError::BodySize {
                    kind: "exec",
                    got: b.len(),
                    want,
                });
            }
            let argc = (u32_at(b, HDR + 4) as usize).min(MAX_ARGS);
            let flags = u32_at(b, HDR + 8);
            let fname_off = HDR + 16;
            let path_len = brainbox_ebpf_common::PATH_LEN;
            let arg_len = brainbox_ebpf_common::ARG_LEN;
            let args_off = fname_off + path_len;
            let argv = (0..argc)
                .map(|i| string(&b[args_off + i * arg_len..args_off + (i + 1) * arg_len]))
                .collect();
            Ok(SensorEvent::Exec(Exec {
                hdr: header(b),
                filename: string(&b[fname_off..fname_off + path_len]),
                argv,
                args_truncated: flags & ExecFlags::ARGS_TRUNCATED != 0,
                cut: flags & (ExecFlags::ARG_CUT | ExecFlags::PATH_CUT) != 0,
            }))
        }
        None => Err(DecodeError::UnknownKind(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainbox_ebpf_common::{ARG_LEN, PATH_LEN};
    use proptest::prelude::*;

    fn exec_record(args: &[&str], filename: &str, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; std::mem::size_of::<ExecEvent>()];
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

    #[test]
    fn decodes_exec() {
        let b = exec_record(&["cat", "/etc/hostname"], "/bin/cat", 0);
        let SensorEvent::Exec(e) = decode(&b).unwrap();
        assert_eq!(e.argv, vec!["cat", "/etc/hostname"]);
        assert_eq!(e.filename, "/bin/cat");
        assert_eq!(e.hdr.pid, 4242);
        assert_eq!(e.hdr.uid, 1000);
        assert_eq!(e.hdr.cgroup_id, 77);
        assert!(!e.args_truncated);
    }

    #[test]
    fn flags_are_reported() {
        let b = exec_record(&["x"], "/x", ExecFlags::ARGS_TRUNCATED | ExecFlags::ARG_CUT);
        let SensorEvent::Exec(e) = decode(&b).unwrap();
        assert!(e.args_truncated && e.cut);
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(DecodeError::Short(10)));
        let mut b = vec![0u8; 64];
        b[0] = 99;
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));
        b[0] = 1;
        assert!(matches!(decode(&b), Err(DecodeError::BodySize { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn argc_is_clamped(argc in any::<u32>()) {
            let mut b = exec_record(&[], "/x", 0);
            b[HDR + 4..HDR + 8].copy_from_slice(&argc.to_ne_bytes());
            let SensorEvent::Exec(e) = decode(&b).unwrap();
            prop_assert!(e.argv.len() <= MAX_ARGS);
        }
    }
}

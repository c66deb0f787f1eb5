//! The fsynced, bounded, crash-safe on-disk spool that holds alerts while NATS is away.
//!
//! Layout of the spool directory:
//!
//! - `seg-<first seq, 20 digits>.spool`: append-only segments of frames
//!   `magic(2) | len(4, LE) | seq(8, LE) | crc32(4, LE, over seq and payload) | payload`.
//! - `committed`: the sequence number of the first record not yet delivered (written to a temp
//!   file, fsynced and renamed, so it is either the old or the new value after a crash).
//! - `LOCK`: held with `flock` so two publishers never share a spool.
//!
//! A crash can leave a torn frame at the end of the last segment; opening the spool detects it
//! (short frame, bad magic or checksum), cuts it off and counts it. Damage anywhere else is an
//! error, never skipped: an alert is not dropped silently.
//!
//! Every record stays in memory too (the spool is bounded), so replay never re-reads the disk.

use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};
use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

const MAGIC: [u8; 2] = [0xB5, 0x0A];
const HEADER: usize = 2 + 4 + 8 + 4;
/// Largest payload we accept in one frame; a larger `len` read back means damage.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool directory (created if missing).
    pub dir: PathBuf,
    /// Upper bound on undelivered bytes (frames); past it, appends are refused with `Full`.
    pub max_bytes: u64,
    /// Size at which a new segment is started.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    /// A config for `dir` with the default bounds (64 MiB, 4 MiB segments).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 64 << 20,
            segment_bytes: 4 << 20,
        }
    }
}

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Filesystem error.
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process uses this spool.
    #[error("spool {0} is locked by another publisher")]
    Locked(PathBuf),
    /// Damage that is not a torn tail: refusing to guess.
    #[error("spool {path} is damaged at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A payload larger than [`MAX_PAYLOAD`].
    #[error("alert of {0} bytes is larger than the spool's frame limit")]
    TooLarge(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One undelivered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number in the spool (strictly increasing, no gaps).
    pub seq: u64,
    /// The payload.
    pub payload: Bytes,
}

impl Record {
    fn frame_len(&self) -> u64 {
        (HEADER + self.payload.len()) as u64
    }
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    last_seq: Option<u64>,
    path: PathBuf,
    len: u64,
}

/// What opening a spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Undelivered records found.
    pub records: usize,
    /// Bytes of a torn final frame that were cut off.
    pub torn_bytes: u64,
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    _lock: Flock<File>,
    segments: VecDeque<Segment>,
    active: Option<File>,
    pending: VecDeque<Record>,
    pending_bytes: u64,
    next_seq: u64,
    committed: u64,
    delivered: u64,
}

fn seg_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.spool")
}

fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the frame at the start of `b`: `Ok(Some((record, len)))`, `Ok(None)` when `b` is
/// empty, `Err(reason)` when the bytes are not a whole valid frame.
fn decode(b: &[u8]) -> Result<Option<(Record, usize)>, String> {
    if b.is_empty() {
        return Ok(None);
    }
    if b.len() < HEADER {
        return Err(format!("short frame header ({} bytes)", b.len()));
    }
    if b[..2] != MAGIC {
        return Err("bad frame magic".into());
    }
    let len = u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(format!("frame length {len} over the limit"));
    }
    let seq = u64::from_le_bytes(b[6..14].try_into().map_err(|_| "header")?);
    let crc = u32::from_le_bytes(b[14..18].try_into().map_err(|_| "header")?);
    if b.len() < HEADER + len {
        return Err(format!(
            "short frame ({} of {} bytes)",
            b.len(),
            HEADER + len
        ));
    }
    let payload = &b[HEADER..HEADER + len];
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    if h.finalize() != crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some((
        Record {
            seq,
            payload: Bytes::copy_from_slice(payload),
        },
        HEADER + len,
    )))
}

/// Decodes the frames of one segment's bytes: the valid prefix, and why decoding stopped
/// early if it did. Never panics on hostile input (fuzzed).
pub fn decode_segment(mut b: &[u8]) -> (Vec<Record>, Option<String>) {
    let mut out = Vec::new();
    loop {
        match decode(b) {
            Ok(None) => return (out, None),
            Ok(Some((r, n))) => {
                out.push(r);
                b = &b[n..];
            }
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Encodes one frame (for tests and fuzzing round trips).
pub fn encode_frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    encode(seq, payload, &mut v);
    v
}

impl Spool {
    /// Opens the spool, recovering from a crash: a torn final frame is cut off (reported in
    /// [`Recovery`]); delivered segments are deleted.
    pub fn open(cfg: SpoolConfig) -> Result<(Self, Recovery), SpoolError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join("LOCK");
        let lf = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let lock = Flock::lock(lf, FlockArg::LockExclusiveNonblock)
            .map_err(|_| SpoolError::Locked(dir.clone()))?;
        let committed = read_committed(&dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".spool"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                names.push((n, e.path()));
            }
        }
        names.sort();
        let mut spool = Spool {
            cfg,
            _lock: lock,
            segments: VecDeque::new(),
            active: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            next_seq: committed.max(1),
            committed: committed.max(1),
            delivered: committed.max(1),
        };
        let mut rec = Recovery::default();
        let mut expect: Option<u64> = None;
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let bytes = fs::read(&path).map_err(io(&path))?;
            let mut off = 0usize;
            let mut last = None;
            loop {
                match decode(&bytes[off..]) {
                    Ok(None) => break,
                    Ok(Some((r, n))) => {
                        let want = expect.unwrap_or(first);
                        if r.seq != want || (last.is_none() && r.seq != first) {
                            return Err(SpoolError::Corrupt {
                                path,
                                offset: off as u64,
                                reason: format!("expected record {want}, found {}", r.seq),
                            });
                        }
                        expect = Some(r.seq + 1);
                        last = Some(r.seq);
                        if r.seq >= spool.committed {
                            spool.pending_bytes += r.frame_len();
                            spool.pending.push_back(r);
                        }
                        off += n;
                    }
                    Err(reason) if i + 1 == count => {
                        // A crash inside the last write: cut the partial frame off.
                        let torn = (bytes.len() - off) as u64;
                        tracing::warn!(path = %path.display(), offset = off, torn_bytes = torn, %reason, "spool: cutting off a torn final frame");
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io(&path))?;
                        f.set_len(off as u64).map_err(io(&path))?;
                        f.sync_all().map_err(io(&path))?;
                        rec.torn_bytes += torn;
                        break;
                    }
                    Err(reason) => {
                        return Err(SpoolError::Corrupt {
                            path,
                            offset: off as u64,
                            reason,
                        })
                    }
                }
            }
            spool.segments.push_back(Segment {
                first_seq: first,
                last_seq: last,
                path,
                len: off as u64,
            });
        }
        if let Some(e) = expect {
            spool.next_seq = spool.next_seq.max(e);
        }
        if spool.committed > spool.next_seq {
            // `committed` past the end can only mean segments were removed under us.
            return Err(SpoolError::Corrupt {
                path: spool.cfg.dir.join("committed"),
                offset: 0,
                reason: format!(
                    "committed record {} is past the last spooled record {}",
                    spool.committed,
                    spool.next_seq - 1
                ),
            });
        }
        if let Some(first) = spool.pending.front() {
            if first.seq != spool.committed {
                return Err(SpoolError::Corrupt {
                    path: spool.cfg.dir.clone(),
                    offset: 0,
                    reason: format!(
                        "first undelivered record is {}, expected {}",
                        first.seq, spool.committed
                    ),
                });
            }
        }
        spool.gc()?;
        if let Some(last) = spool.segments.back() {
            if last.len < spool.cfg.segment_bytes {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(io(&last.path))?;
                spool.active = Some(f);
            }
        }
        rec.records = spool.pending.len();
        Ok((spool, rec))
    }

    /// Number of undelivered records.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing waits for delivery.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Undelivered bytes (frames), the quantity the bound applies to.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// The configured bound.
    pub fn max_bytes(&self) -> u64 {
        self.cfg.max_bytes
    }

    /// The oldest undelivered records, in order.
    pub fn peek(&self, n: usize) -> impl Iterator<Item = &Record> {
        self.pending.iter().take(n)
    }

    /// Appends as many of `payloads` as fit under the bound, in order, with one fsync for all.
    /// Returns their sequence numbers; fewer than given means the spool is full.
    pub fn append_batch(&mut self, payloads: &[Bytes]) -> Result<Vec<u64>, SpoolError> {
        let mut seqs = Vec::with_capacity(payloads.len());
        let mut buf = Vec::new();
        for p in payloads {
            if p.len() > MAX_PAYLOAD {
                return Err(SpoolError::TooLarge(p.len()));
            }
            let frame = (HEADER + p.len()) as u64;
            if self.pending_bytes + frame > self.cfg.max_bytes {
                break;
            }
            if self.active.is_none()
                || self
                    .segments
                    .back()
                    .is_none_or(|s| s.len >= self.cfg.segment_bytes)
            {
                self.write_out(&mut buf)?;
                self.roll()?;
            }
            let seq = self.next_seq;
            let start = buf.len();
            encode(seq, p, &mut buf);
            let seg = self
                .segments
                .back_mut()
                .ok_or_else(|| SpoolError::Corrupt {
                    path: self.cfg.dir.clone(),
                    offset: 0,
                    reason: "no active segment".into(),
                })?;
            seg.len += (buf.len() - start) as u64;
            seg.last_seq = Some(seq);
            self.next_seq += 1;
            self.pending_bytes += frame;
            self.pending.push_back(Record {
                seq,
                payload: p.clone(),
            });
            seqs.push(seq);
        }
        self.write_out(&mut buf)?;
        if let (Some(f), Some(seg)) = (&self.active, self.segments.back()) {
            f.sync_data().map_err(io(&seg.path))?;
        }
        Ok(seqs)
    }

    fn write_out(&mut self, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let (Some(f), Some(seg)) = (&mut self.active, self.segments.back()) {
            f.write_all(buf).map_err(io(&seg.path))?;
        }
        buf.clear();
        Ok(())
    }

    /// Starts a new segment (syncing the one it replaces).
    fn roll(&mut self) -> Result<(), SpoolError> {
        if let (Some(f), Some(seg)) = (self.active.take(), self.segments.back()) {
            f.sync_data().map_err(io(&seg.path))?;
        }
        let path = self.cfg.dir.join(seg_name(self.next_seq));
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(&self.cfg.dir)?;
        self.segments.push_back(Segment {
            first_seq: self.next_seq,
            last_seq: None,
            path,
            len: 0,
        });
        self.active = Some(f);
        Ok(())
    }

    /// Marks every record up to and including `seq` delivered, in memory only: they leave the
    /// queue, but a crash before [`Spool::persist`] replays them again (and JetStream drops the
    /// copies by message id). Lets replay pay for the commit's fsyncs once per many records.
    pub fn advance(&mut self, seq: u64) {
        if seq < self.delivered {
            return;
        }
        let next = (seq + 1).min(self.next_seq);
        self.delivered = next;
        while self.pending.front().is_some_and(|r| r.seq < next) {
            if let Some(r) = self.pending.pop_front() {
                self.pending_bytes -= r.frame_len();
            }
        }
    }

    /// Records on disk that delivery has reached where [`Spool::advance`] says, then deletes
    /// segments that hold nothing undelivered.
    pub fn persist(&mut self) -> Result<(), SpoolError> {
        if self.delivered <= self.committed {
            return Ok(());
        }
        write_committed(&self.cfg.dir, self.delivered)?;
        self.committed = self.delivered;
        self.gc()
    }

    /// Records delivered but not yet persisted.
    pub fn unpersisted(&self) -> u64 {
        self.delivered - self.committed
    }

    /// [`Spool::advance`] then [`Spool::persist`].
    pub fn commit_through(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.advance(seq);
        self.persist()
    }

    /// Deletes segments whose records are all delivered. The active segment goes too when it is
    /// fully delivered; the next append starts a fresh one.
    fn gc(&mut self) -> Result<(), SpoolError> {
        let mut removed = false;
        while let Some(seg) = self.segments.front() {
            let done = match seg.last_seq {
                Some(l) => l < self.committed,
                None => self.segments.len() > 1 || seg.first_seq < self.committed,
            };
            if !done {
                break;
            }
            if self.segments.len() == 1 {
                self.active = None;
            }
            if let Some(seg) = self.segments.pop_front() {
                fs::remove_file(&seg.path).map_err(io(&seg.path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.cfg.dir)?;
        }
        Ok(())
    }

    /// The next sequence number to be assigned.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn read_committed(dir: &Path) -> Result<u64, SpoolError> {
    let p = dir.join("committed");
    match fs::read_to_string(&p) {
        Ok(s) => s.trim().parse().map_err(|e| SpoolError::Corrupt {
            path: p.clone(),
            offset: 0,
            reason: format!("not a number: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(io(&p)(e)),
    }
}

fn write_committed(dir: &Path, next: u64) -> Result<(), SpoolError> {
    let p = dir.join("committed");
    let tmp = dir.join("committed.tmp");
    let res = (|| {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{next}")?;
        f.sync_all()?;
        fs::rename(&tmp, &p)
    })();
    res.map_err(io(&p))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests;

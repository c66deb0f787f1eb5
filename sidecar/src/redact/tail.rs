//! Tailing a log file that the agent writes, across rotation (rename + new file) and truncation
//! (`> file`, `copytruncate`). `notify` wakes the reader on changes; a short poll backs it up,
//! because inotify events can be coalesced or missed (e.g. on overlay filesystems).

use super::{lines::LineSplitter, Batch};
use prometheus_client::metrics::counter::Counter;
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::Duration,
};
use tokio::sync::mpsc;

/// How often the file is looked at without an event.
const POLL: Duration = Duration::from_millis(200);

/// The counters a tail thread feeds.
#[derive(Debug, Clone, Default)]
pub struct TailStats {
    /// Bytes read.
    pub bytes: Counter,
    /// Lines read.
    pub lines: Counter,
    /// Times the worker's channel was full.
    pub waits: Counter,
}

/// Tail `path` on a thread until `stop` is set; lines go to `tx` as stream `stream`.
pub fn spawn(
    path: PathBuf,
    stream: u32,
    tx: mpsc::Sender<Batch>,
    max_line: usize,
    stop: Arc<AtomicBool>,
    stats: TailStats,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("redact-tail".into())
        .spawn(move || {
            if let Err(e) = tail(&path, stream, &tx, max_line, &stop, &stats) {
                tracing::error!(path = %path.display(), error = %e, "tail stopped");
            }
        })
        .expect("spawn tail thread")
}

struct Open {
    file: File,
    ino: u64,
    dev: u64,
    offset: u64,
}

fn open(path: &Path) -> Option<Open> {
    let file = File::open(path).ok()?;
    let m = file.metadata().ok()?;
    Some(Open {
        file,
        ino: m.ino(),
        dev: m.dev(),
        offset: 0,
    })
}

fn tail(
    path: &Path,
    stream: u32,
    tx: &mpsc::Sender<Batch>,
    max_line: usize,
    stop: &AtomicBool,
    stats: &TailStats,
) -> Result<(), notify::Error> {
    use notify::Watcher;
    let (wtx, wrx) = std_mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = wtx.send(());
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;

    let mut splitter = LineSplitter::new(max_line);
    let mut cur = open(path);
    let mut buf = vec![0u8; 64 << 10];
    let send = |lines: Vec<super::lines::Line>, end: bool| -> bool {
        if lines.is_empty() && !end {
            return true;
        }
        stats.lines.inc_by(lines.len() as u64);
        match tx.try_send(Batch { stream, lines, end }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(b)) => {
                stats.waits.inc();
                tx.blocking_send(b).is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    };
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if let Some(o) = cur.as_mut() {
            // Truncated in place: start over from the top (what was before is gone).
            if let Ok(m) = o.file.metadata() {
                if m.len() < o.offset {
                    let _ = o.file.seek(SeekFrom::Start(0));
                    o.offset = 0;
                }
            }
            // Read what is there.
            loop {
                let n = match o.file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    break;
                }
                o.offset += n as u64;
                stats.bytes.inc_by(n as u64);
                let mut lines = Vec::new();
                splitter.push(&buf[..n], &mut lines);
                if !send(lines, false) {
                    return Ok(());
                }
            }
            // Rotated: the name now points at another file. The old one was read to its end;
            // its last unterminated line is a line; continue with the new file from the top.
            let rotated = match std::fs::metadata(path) {
                Ok(m) => m.ino() != o.ino || m.dev() != o.dev,
                Err(_) => false,
            };
            if rotated {
                let mut lines = Vec::new();
                splitter.finish(&mut lines);
                if !send(lines, false) {
                    return Ok(());
                }
                cur = open(path);
                continue;
            }
        } else {
            cur = open(path);
            if cur.is_some() {
                continue;
            }
        }
        if stopping {
            let mut lines = Vec::new();
            splitter.finish(&mut lines);
            send(lines, true);
            return Ok(());
        }
        // Wait for an event or the poll interval; drain coalesced events.
        let _ = wrx.recv_timeout(POLL);
        while wrx.try_recv().is_ok() {}
    }
}

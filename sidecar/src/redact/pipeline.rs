//! The redaction pipeline: inputs (Unix socket, tailed files, stdin) → one bounded channel →
//! one worker thread running the engine → outputs (stdout or a file).
//!
//! Backpressure: the channel holds at most `channel_batches` batches; when it is full, readers
//! stop reading, so socket writers block in the kernel and tailed files simply wait on disk.
//! Nothing is dropped. Each stream's lines keep their order (one reader per stream, one worker);
//! each stream has its own line state (a private key spread over lines is followed per stream).

use super::{lines::LineSplitter, Batch, Format, RedactError};
use brainbox_redact::{Engine, LineRedactor};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
};
use tokio::{
    io::AsyncReadExt,
    net::UnixListener,
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// Where redacted lines go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Listen on this Unix socket (JSON or text lines; one stream per connection).
    pub socket: Option<PathBuf>,
    /// Tail these files.
    pub tail: Vec<PathBuf>,
    /// Read standard input.
    pub stdin: bool,
    /// Where output goes.
    pub output: Output,
    /// Raw lines or JSON envelopes.
    pub format: Format,
    /// Longest line kept, bytes.
    pub max_line: usize,
    /// Channel capacity, in batches (a batch is what one read returned, ≤ 64 KiB of input).
    pub channel_batches: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            socket: None,
            tail: Vec::new(),
            stdin: false,
            output: Output::Stdout,
            format: Format::Raw,
            max_line: 1 << 20,
            channel_batches: 256,
        }
    }
}

/// Counters a user would graph.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Lines read.
    pub lines_in: Counter,
    /// Lines written.
    pub lines_out: Counter,
    /// Lines that held at least one finding.
    pub lines_redacted: Counter,
    /// Findings replaced.
    pub findings: Counter,
    /// Lines cut at the length limit.
    pub truncated: Counter,
}

impl Stats {
    /// Register under `registry` (prefix it with `brainbox_` at the caller).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("redact");
        r.register(
            "lines_in",
            "Lines read by the redaction pipeline",
            self.lines_in.clone(),
        );
        r.register(
            "lines_out",
            "Lines written by the redaction pipeline",
            self.lines_out.clone(),
        );
        r.register(
            "lines_redacted",
            "Lines that held a secret or personal data",
            self.lines_redacted.clone(),
        );
        r.register(
            "findings",
            "Secrets and personal data replaced",
            self.findings.clone(),
        );
        r.register(
            "lines_truncated",
            "Lines cut at the length limit",
            self.truncated.clone(),
        );
    }
}

/// A running pipeline.
pub struct Pipeline {
    /// Counters.
    pub stats: Stats,
    stop: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    worker: Option<std::thread::JoinHandle<Result<(), RedactError>>>,
    tx: Option<mpsc::Sender<Batch>>,
    socket: Option<PathBuf>,
}

impl Pipeline {
    /// Start the inputs and the worker. Must be called inside a Tokio runtime.
    pub async fn start(engine: Arc<Engine>, cfg: PipelineConfig) -> Result<Pipeline, RedactError> {
        let (tx, rx) = mpsc::channel::<Batch>(cfg.channel_batches.max(1));
        let stats = Stats::default();
        let out: Box<dyn Write + Send> = match &cfg.output {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| RedactError::Io(format!("open {}", p.display()), e))?,
            ),
        };
        let worker = {
            let stats = stats.clone();
            let format = cfg.format;
            std::thread::Builder::new()
                .name("redact-worker".into())
                .spawn(move || worker(&engine, rx, out, format, &stats))
                .map_err(|e| RedactError::Io("spawn worker".into(), e))?
        };
        let (shutdown, shut_rx) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU32::new(1));
        let mut tasks = Vec::new();
        let mut threads = Vec::new();
        if let Some(path) = &cfg.socket {
            // A stale socket from a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)
                .map_err(|e| RedactError::Io(format!("bind {}", path.display()), e))?;
            let tx = tx.clone();
            let ids = ids.clone();
            let max = cfg.max_line;
            let stats = stats.clone();
            let mut shut = shut_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut conns = Vec::new();
                loop {
                    tokio::select! {
                        r = listener.accept() => match r {
                            Ok((s, _)) => {
                                let id = ids.fetch_add(1, Ordering::Relaxed);
                                conns.push(tokio::spawn(read_stream(s, id, tx.clone(), max, stats.clone(), shut.clone())));
                            }
                            Err(e) => tracing::warn!(error = %e, "redact socket accept failed"),
                        },
                        _ = shut.changed() => break,
                    }
                }
                for c in conns {
                    let _ = c.await;
                }
            }));
        }
        for path in &cfg.tail {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            threads.push(super::tail::spawn(
                path.clone(),
                id,
                tx.clone(),
                cfg.max_line,
                stop.clone(),
            ));
        }
        if cfg.stdin {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            tasks.push(tokio::spawn(read_stream(
                tokio::io::stdin(),
                id,
                tx.clone(),
                cfg.max_line,
                stats.clone(),
                shut_rx.clone(),
            )));
        }
        Ok(Pipeline {
            stats,
            stop,
            shutdown,
            tasks,
            threads,
            worker: Some(worker),
            tx: Some(tx),
            socket: cfg.socket.clone(),
        })
    }

    /// Wait until every input has ended on its own (EOF on stdin; used by the CLI).
    pub async fn wait_inputs(&mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Stop reading, write out everything read so far, and wait for the worker.
    pub async fn shutdown(mut self) -> Result<(), RedactError> {
        let _ = self.shutdown.send(true);
        self.stop.store(true, Ordering::Release);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let threads = std::mem::take(&mut self.threads);
        let worker = self.worker.take();
        self.tx.take();
        let res = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            worker.map_or(Ok(()), |w| w.join().unwrap_or(Ok(())))
        })
        .await
        .unwrap_or(Ok(()));
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
        res
    }
}

async fn read_stream<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    id: u32,
    tx: mpsc::Sender<Batch>,
    max: usize,
    stats: Stats,
    mut shut: watch::Receiver<bool>,
) {
    let mut splitter = LineSplitter::new(max);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = tokio::select! {
            r = r.read(&mut buf) => r.unwrap_or(0),
            _ = shut.changed() => 0,
        };
        let mut lines = Vec::new();
        if n == 0 {
            splitter.finish(&mut lines);
            stats.lines_in.inc_by(lines.len() as u64);
            let _ = tx
                .send(Batch {
                    stream: id,
                    lines,
                    end: true,
                })
                .await;
            return;
        }
        splitter.push(&buf[..n], &mut lines);
        if lines.is_empty() {
            continue;
        }
        stats.lines_in.inc_by(lines.len() as u64);
        if tx
            .send(Batch {
                stream: id,
                lines,
                end: false,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

fn worker(
    engine: &Engine,
    mut rx: mpsc::Receiver<Batch>,
    out: Box<dyn Write + Send>,
    format: Format,
    stats: &Stats,
) -> Result<(), RedactError> {
    let mut out = std::io::BufWriter::with_capacity(256 << 10, out);
    let mut streams: HashMap<u32, LineRedactor<'_>> = HashMap::new();
    let mut line_buf = Vec::with_capacity(4096);
    let werr = |e| RedactError::Io("write output".into(), e);
    while let Some(batch) = rx.blocking_recv() {
        let lr = streams
            .entry(batch.stream)
            .or_insert_with(|| LineRedactor::new(engine));
        for line in &batch.lines {
            let r = lr.redact(&line.bytes);
            if !r.kinds.is_empty() {
                stats.lines_redacted.inc();
                stats.findings.inc_by(r.kinds.len() as u64);
            }
            line_buf.clear();
            super::format_line(&mut line_buf, format, batch.stream, &r, line.dropped);
            if line.dropped > 0 {
                stats.truncated.inc();
            }
            out.write_all(&line_buf).map_err(werr)?;
            stats.lines_out.inc();
        }
        if batch.end {
            streams.remove(&batch.stream);
        }
        // Flush when idle, so lines are not held back while the input is quiet.
        if rx.is_empty() {
            out.flush().map_err(werr)?;
        }
    }
    out.flush().map_err(werr)
}

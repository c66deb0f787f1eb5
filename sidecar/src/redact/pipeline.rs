//! The redaction pipeline: inputs (Unix socket, tailed files, stdin) → one bounded channel →
//! one worker thread running the engine → an output (stdout, a file, or NATS JetStream).
//!
//! Backpressure: the channel holds at most `channel_batches` batches; when it is full, readers
//! stop reading, so socket writers block in the kernel and tailed files simply wait on disk.
//! Nothing is dropped. Each stream's lines keep their order (one reader per stream, one worker);
//! each stream has its own line state (a private key spread over lines is followed per stream).

use super::{lines::LineSplitter, nats, Batch, Format, RedactError};
use brainbox_redact::{Engine, KindId, LineRedactor};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
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
    sync::{mpsc, watch, Semaphore},
    task::JoinHandle,
};

/// Default for [`PipelineConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// Where redacted lines go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
    /// Published to a NATS JetStream subject, in batches, each acked.
    Nats(Box<nats::NatsSinkConfig>),
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Listen on this Unix socket (JSON or text lines; one stream per connection).
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket (connecting needs write permission); `None`: as the
    /// umask leaves them.
    pub socket_mode: Option<u32>,
    /// Most socket connections read at once; more wait in the listen backlog until one
    /// closes. Each costs a 64 KiB read buffer and up to `max_line` of a partial line, so this
    /// bounds what writers can make the sidecar hold.
    pub max_connections: usize,
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
            socket_mode: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tail: Vec::new(),
            stdin: false,
            output: Output::Stdout,
            format: Format::Raw,
            max_line: 1 << 20,
            channel_batches: 256,
        }
    }
}

/// The `kind` label of the per-kind redaction counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Finding kind (`github-token`, `email`, …): a fixed set, the engine's rule kinds.
    pub kind: String,
}

/// The `stage` label of the backpressure counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `input`: a reader found the worker's channel full; `output`: the worker found the
    /// output's buffer full (NATS slow or away).
    pub stage: &'static str,
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
    /// Findings replaced, by kind.
    pub redactions: Family<KindLabel, Counter>,
    /// Lines cut at the length limit.
    pub truncated: Counter,
    /// Bytes read from the inputs.
    pub bytes_in: Counter,
    /// Bytes handed to the output.
    pub bytes_out: Counter,
    /// Times a stage had to wait for the next one (see [`StageLabel`]).
    pub backpressure_waits: Family<StageLabel, Counter>,
    /// Socket connections being read now.
    pub connections: Gauge,
    /// Times a connection waited because `max_connections` were open.
    pub connections_waited: Counter,
    /// The NATS output's counters.
    pub nats: nats::NatsMetrics,
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
            "redactions",
            "Secrets and personal data replaced, by kind",
            self.redactions.clone(),
        );
        r.register(
            "lines_truncated",
            "Lines cut at the length limit",
            self.truncated.clone(),
        );
        r.register_with_unit(
            "read",
            "Bytes read from the redaction inputs",
            Unit::Bytes,
            self.bytes_in.clone(),
        );
        r.register_with_unit(
            "written",
            "Bytes of redacted output",
            Unit::Bytes,
            self.bytes_out.clone(),
        );
        r.register(
            "backpressure_waits",
            "Times a pipeline stage waited because the next one was full",
            self.backpressure_waits.clone(),
        );
        r.register(
            "connections",
            "Log socket connections being read",
            self.connections.clone(),
        );
        r.register(
            "connections_waited",
            "Times the log socket held a connection back because max_connections were open",
            self.connections_waited.clone(),
        );
        self.nats.register(r);
    }

    fn waits(&self, stage: &'static str) -> Counter {
        self.backpressure_waits
            .get_or_create(&StageLabel { stage })
            .clone()
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
    /// Set when the worker ended with an error while running (output gone).
    failed: watch::Receiver<Option<String>>,
    tx: Option<mpsc::Sender<Batch>>,
    socket: Option<PathBuf>,
    publisher: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Start the inputs and the worker. Must be called inside a Tokio runtime.
    pub async fn start(engine: Arc<Engine>, cfg: PipelineConfig) -> Result<Pipeline, RedactError> {
        let (tx, rx) = mpsc::channel::<Batch>(cfg.channel_batches.max(1));
        let stats = Stats::default();
        let (shutdown, shut_rx) = watch::channel(false);
        let mut publisher = None;
        let sink = match &cfg.output {
            Output::Stdout => Sink::Write(Box::new(std::io::stdout())),
            Output::File(p) => Sink::Write(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| RedactError::Io(format!("open {}", p.display()), e))?,
            )),
            Output::Nats(n) => {
                let (b, task) = nats::start(
                    (**n).clone(),
                    stats.nats.clone(),
                    stats.waits("output"),
                    shut_rx.clone(),
                )
                .await?;
                publisher = Some(task);
                Sink::Nats(b)
            }
        };
        let (failed_tx, failed) = watch::channel(None);
        let worker = {
            let stats = stats.clone();
            let format = cfg.format;
            std::thread::Builder::new()
                .name("redact-worker".into())
                .spawn(move || {
                    let r = worker(&engine, rx, sink, format, &stats);
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "redaction worker stopped");
                        let _ = failed_tx.send(Some(e.to_string()));
                    }
                    r
                })
                .map_err(|e| RedactError::Io("spawn worker".into(), e))?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU32::new(1));
        let mut tasks = Vec::new();
        let mut threads = Vec::new();
        if let Some(path) = &cfg.socket {
            // A stale socket from a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)
                .map_err(|e| RedactError::Io(format!("bind {}", path.display()), e))?;
            if let Some(mode) = cfg.socket_mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| RedactError::Io(format!("chmod {:o} {}", mode, path.display()), e),
                )?;
            }
            let tx = tx.clone();
            let ids = ids.clone();
            let max = cfg.max_line;
            let stats = stats.clone();
            let mut shut = shut_rx.clone();
            let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
            tasks.push(tokio::spawn(async move {
                let mut conns = Vec::new();
                loop {
                    // A free slot first: past `max_connections`, writers wait in the backlog.
                    if slots.available_permits() == 0 {
                        stats.connections_waited.inc();
                    }
                    let permit = tokio::select! {
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        _ = shut.changed() => break,
                    };
                    tokio::select! {
                        r = listener.accept() => match r {
                            Ok((s, _)) => {
                                let id = ids.fetch_add(1, Ordering::Relaxed);
                                let (tx, stats, shut) = (tx.clone(), stats.clone(), shut.clone());
                                conns.retain(|c: &JoinHandle<()>| !c.is_finished());
                                conns.push(tokio::spawn(async move {
                                    stats.connections.inc();
                                    read_stream(s, id, tx, max, stats.clone(), shut).await;
                                    stats.connections.dec();
                                    drop(permit);
                                }));
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
                super::tail::TailStats {
                    bytes: stats.bytes_in.clone(),
                    lines: stats.lines_in.clone(),
                    waits: stats.waits("input"),
                },
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
            failed,
            tx: Some(tx),
            socket: cfg.socket.clone(),
            publisher,
        })
    }

    /// Resolves when the worker stopped with an error (its output failed): the inputs then stop
    /// being read, so the caller should exit loudly rather than run on without redaction.
    pub async fn failure(&mut self) -> String {
        loop {
            if let Some(e) = self.failed.borrow_and_update().clone() {
                return e;
            }
            if self.failed.changed().await.is_err() {
                // The worker is gone without an error: nothing to report, ever.
                std::future::pending::<()>().await;
            }
        }
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
        // The worker has handed over its last batch; wait for the publisher to deliver it
        // (bounded by the NATS drain timeout).
        if let Some(p) = self.publisher.take() {
            let _ = p.await;
        }
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
    let waits = stats.waits("input");
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
        stats.bytes_in.inc_by(n as u64);
        splitter.push(&buf[..n], &mut lines);
        if lines.is_empty() {
            continue;
        }
        stats.lines_in.inc_by(lines.len() as u64);
        let batch = Batch {
            stream: id,
            lines,
            end: false,
        };
        let batch = match tx.try_send(batch) {
            Ok(()) => continue,
            Err(mpsc::error::TrySendError::Full(b)) => b,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        // The worker is behind: stop reading until it has room (the writer blocks in the
        // kernel meanwhile).
        waits.inc();
        if tx.send(batch).await.is_err() {
            return;
        }
    }
}

/// Where the worker writes.
enum Sink {
    Write(Box<dyn Write + Send>),
    Nats(nats::BatchBuilder),
}

fn worker(
    engine: &Engine,
    mut rx: mpsc::Receiver<Batch>,
    sink: Sink,
    format: Format,
    stats: &Stats,
) -> Result<(), RedactError> {
    let (mut out, mut nats) = match sink {
        Sink::Write(w) => (Some(std::io::BufWriter::with_capacity(256 << 10, w)), None),
        Sink::Nats(b) => (None, Some(b)),
    };
    // A NATS message has a size limit: a longer formatted line is cut (after redaction, so
    // only redacted text is ever cut) and marked.
    let out_limit = nats.as_ref().map(|b| b.max_line());
    let mut streams: HashMap<u32, LineRedactor<'_>> = HashMap::new();
    let mut line_buf = Vec::with_capacity(4096);
    // Per-kind counters, looked up once per kind rather than per finding.
    let mut by_kind: Vec<Option<Counter>> = Vec::new();
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
                for &k in &r.kinds {
                    kind_counter(&mut by_kind, stats, engine, k).inc();
                }
            }
            line_buf.clear();
            let cut = super::format_line_limited(
                &mut line_buf,
                format,
                batch.stream,
                &r,
                line.dropped,
                out_limit,
            );
            if line.dropped > 0 || cut {
                stats.truncated.inc();
            }
            match (&mut out, &mut nats) {
                (Some(o), _) => o.write_all(&line_buf).map_err(werr)?,
                (None, Some(n)) => n.push(&line_buf)?,
                (None, None) => {}
            }
            stats.bytes_out.inc_by(line_buf.len() as u64);
            stats.lines_out.inc();
        }
        if batch.end {
            streams.remove(&batch.stream);
        }
        // Flush when idle, so lines are not held back while the input is quiet.
        if rx.is_empty() {
            if let Some(o) = out.as_mut() {
                o.flush().map_err(werr)?;
            }
            if let Some(n) = nats.as_mut() {
                n.flush()?;
            }
        }
    }
    if let Some(n) = nats.as_mut() {
        n.flush()?;
    }
    out.map_or(Ok(()), |mut o| o.flush().map_err(werr))
}

fn kind_counter<'c>(
    cache: &'c mut Vec<Option<Counter>>,
    stats: &Stats,
    engine: &Engine,
    k: KindId,
) -> &'c Counter {
    let i = usize::from(k);
    if cache.len() <= i {
        cache.resize(i + 1, None);
    }
    cache[i].get_or_insert_with(|| {
        stats
            .redactions
            .get_or_create(&KindLabel {
                kind: engine.kind_name(k).to_owned(),
            })
            .clone()
    })
}

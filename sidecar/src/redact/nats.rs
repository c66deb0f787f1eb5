//! The NATS JetStream output: redacted lines, in order, acked, nothing lost while NATS restarts.
//!
//! The worker packs consecutive output lines into batches (≤ `batch_lines` lines and
//! ≤ `batch_bytes` bytes; a batch is also closed whenever the input goes idle, so a quiet
//! stream is not held back). One batch is one NATS message: its payload is the lines, each
//! ending in `\n`, exactly as the file output would hold them.
//!
//! Why batches and one publish in flight: the order of lines must hold across a NATS restart.
//! With several publishes in flight, a dropped connection can lose message k in the dead socket
//! while the client re-sends k+1 from its buffer after reconnecting; re-sending k then stores it
//! after k+1. With one publish in flight, the only message that can be sent twice is the one we
//! retry ourselves, and JetStream drops that copy by its `Nats-Msg-Id` (`<producer>-<seq>`,
//! unique per process start). Batching is what makes one-in-flight fast: one ack per ~1000
//! lines instead of per line.
//!
//! Bounded buffering: at most `buffer_batches` batches wait for NATS; when they are all taken
//! the worker blocks, the input channel fills and the readers stop reading (socket writers block
//! in the kernel, tailed files wait on disk). Memory stays bounded; nothing is dropped, except
//! what is still undelivered when a shutdown's `drain_timeout` runs out (counted and logged).

use super::RedactError;
use async_nats::{
    header::HeaderMap,
    jetstream::{self, stream},
    ConnectOptions,
};
use brainbox_common::nats::JetStreamLink;
use bytes::Bytes;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use std::time::{Duration, Instant};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// The NATS output's settings (from `[redact.pipeline.nats]`).
#[derive(Debug, Clone)]
pub struct NatsSinkConfig {
    /// Server URL.
    pub url: String,
    /// Credentials and TLS trust.
    pub auth: brainbox_common::nats::NatsAuth,
    /// Subject lines are published to.
    pub subject: String,
    /// The JetStream stream holding `subject`.
    pub stream: String,
    /// Create the stream when missing.
    pub create_stream: bool,
    /// Subjects of a created stream.
    pub stream_subjects: Vec<String>,
    /// Most lines per message.
    pub batch_lines: usize,
    /// Most bytes per message.
    pub batch_bytes: usize,
    /// Batches buffered in memory.
    pub buffer_batches: usize,
    /// Wait for an ack this long before retrying.
    pub ack_timeout: Duration,
    /// Keep delivering this long after shutdown starts.
    pub drain_timeout: Duration,
    /// De-duplication window of a created stream.
    pub duplicate_window: Duration,
    /// The pod (a header on every message).
    pub pod: String,
}

impl NatsSinkConfig {
    /// Defaults for `url` and `subject` (stream `BRAINBOX_LOGS`, created when missing).
    pub fn new(url: &str, subject: &str) -> Self {
        Self {
            url: url.to_owned(),
            auth: Default::default(),
            subject: subject.to_owned(),
            stream: "BRAINBOX_LOGS".into(),
            create_stream: true,
            stream_subjects: vec![subject.to_owned()],
            batch_lines: 1024,
            batch_bytes: 256 << 10,
            buffer_batches: 64,
            ack_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
            pod: String::new(),
        }
    }
}

/// NATS output counters.
#[derive(Debug, Clone, Default)]
pub struct NatsMetrics {
    /// Messages JetStream acked.
    pub messages: Counter,
    /// Lines in acked messages.
    pub lines: Counter,
    /// Publish attempts that failed (not connected, no ack, timeout); each is retried.
    pub failures: Counter,
    /// Acks that said "duplicate": a retry of a message already stored, dropped by JetStream.
    pub duplicates: Counter,
    /// Lines given up at shutdown after `drain_timeout` (NATS still away).
    pub dropped_lines: Counter,
    /// 1 while connected to NATS.
    pub connected: Gauge,
}

impl NatsMetrics {
    /// Register under `registry` (the caller's `redact` sub-registry).
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("nats");
        r.register(
            "published_messages",
            "NATS messages (batches of redacted lines) acked by JetStream",
            self.messages.clone(),
        );
        r.register(
            "published_lines",
            "Redacted lines in messages acked by JetStream",
            self.lines.clone(),
        );
        r.register(
            "publish_failures",
            "Failed publish attempts (each is retried)",
            self.failures.clone(),
        );
        r.register(
            "duplicates",
            "Retried messages JetStream had already stored (dropped by Nats-Msg-Id)",
            self.duplicates.clone(),
        );
        r.register(
            "dropped_lines",
            "Lines not delivered when the shutdown drain timeout ran out",
            self.dropped_lines.clone(),
        );
        r.register(
            "connected",
            "1 while the redaction output is connected to NATS",
            self.connected.clone(),
        );
    }
}

/// A batch of formatted lines (each ends in `\n`).
#[derive(Debug)]
pub struct OutBatch {
    payload: Vec<u8>,
    lines: u64,
}

/// Packs lines into batches on the worker thread and hands them to the publisher task.
#[derive(Debug)]
pub struct BatchBuilder {
    cur: Vec<u8>,
    lines: usize,
    max_lines: usize,
    max_bytes: usize,
    tx: mpsc::Sender<OutBatch>,
    waits: Counter,
}

impl BatchBuilder {
    /// Largest single formatted line a batch can hold.
    pub fn max_line(&self) -> usize {
        self.max_bytes
    }

    /// Add one formatted line (ending in `\n`, at most [`max_line`](Self::max_line) bytes).
    pub fn push(&mut self, line: &[u8]) -> Result<(), RedactError> {
        if self.lines > 0 && self.cur.len() + line.len() > self.max_bytes {
            self.flush()?;
        }
        self.cur.extend_from_slice(line);
        self.lines += 1;
        if self.lines >= self.max_lines || self.cur.len() >= self.max_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Hand over what is packed (blocks while the buffer is full: that is the backpressure).
    pub fn flush(&mut self) -> Result<(), RedactError> {
        if self.lines == 0 {
            return Ok(());
        }
        let b = OutBatch {
            payload: std::mem::replace(&mut self.cur, Vec::with_capacity(self.max_bytes)),
            lines: self.lines as u64,
        };
        self.lines = 0;
        let b = match self.tx.try_send(b) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(b)) => b,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
        };
        self.waits.inc();
        self.tx.blocking_send(b).map_err(|_| closed())
    }
}

fn closed() -> RedactError {
    RedactError::Io(
        "NATS output".into(),
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the publisher stopped"),
    )
}

/// Connect (in the background: the sidecar starts with NATS down) and start the publisher.
/// Returns the worker's batch builder and the publisher task, which ends when the builder is
/// dropped and everything is delivered (or the drain timeout after `shutdown` ran out).
pub async fn start(
    cfg: NatsSinkConfig,
    metrics: NatsMetrics,
    waits: Counter,
    shutdown: watch::Receiver<bool>,
) -> Result<(BatchBuilder, JoinHandle<()>), RedactError> {
    let connected = metrics.connected.clone();
    let opts = cfg.auth.apply(ConnectOptions::new()).map_err(|e| {
        RedactError::Io(
            "redact.pipeline.nats.nats_auth".into(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        )
    })?;
    let opts = opts.event_callback(move |e| {
        let connected = connected.clone();
        async move {
            match e {
                async_nats::Event::Connected => {
                    connected.set(1);
                }
                async_nats::Event::Disconnected => {
                    connected.set(0);
                }
                _ => {}
            }
        }
    });
    let ensure = cfg.create_stream.then(|| stream::Config {
        name: cfg.stream.clone(),
        subjects: cfg.stream_subjects.clone(),
        storage: stream::StorageType::File,
        duplicate_window: cfg.duplicate_window,
        ..Default::default()
    });
    // An unreachable server delays the start by at most the initial wait.
    let link = JetStreamLink::connect(
        opts,
        "brainbox-sidecar-redact",
        &cfg.url,
        cfg.ack_timeout,
        Duration::from_secs(1),
        ensure,
    )
    .await
    .map_err(|e| {
        RedactError::Io(
            format!("NATS {}", cfg.url),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        )
    })?;
    let (tx, rx) = mpsc::channel(cfg.buffer_batches.max(1));
    let builder = BatchBuilder {
        cur: Vec::with_capacity(cfg.batch_bytes),
        lines: 0,
        max_lines: cfg.batch_lines.max(1),
        max_bytes: cfg.batch_bytes,
        tx,
        waits,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let producer = format!("{}-{}-{nanos:x}", cfg.pod, std::process::id());
    let publisher = Publisher {
        cfg,
        link,
        metrics,
        producer,
        seq: 0,
        failing_since: None,
    };
    Ok((builder, tokio::spawn(publisher.run(rx, shutdown))))
}

struct Publisher {
    cfg: NatsSinkConfig,
    link: JetStreamLink,
    metrics: NatsMetrics,
    producer: String,
    seq: u64,
    failing_since: Option<Instant>,
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<OutBatch>, shutdown: watch::Receiver<bool>) {
        let mut drain_deadline: Option<Instant> = None;
        while let Some(b) = rx.recv().await {
            self.seq += 1;
            let id = format!("{}-{}", self.producer, self.seq);
            let body = Bytes::from(b.payload);
            let mut backoff = Duration::from_millis(20);
            loop {
                match self.send(&id, b.lines, body.clone()).await {
                    Ok(ack) => {
                        if ack.duplicate {
                            self.metrics.duplicates.inc();
                        }
                        self.metrics.messages.inc();
                        self.metrics.lines.inc_by(b.lines);
                        if let Some(t) = self.failing_since.take() {
                            tracing::info!(
                                after_ms = t.elapsed().as_millis() as u64,
                                "redacted log output: NATS delivery resumed"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        self.metrics.failures.inc();
                        if self.failing_since.is_none() {
                            self.failing_since = Some(Instant::now());
                            tracing::warn!(error = %e, subject = %self.cfg.subject,
                                "redacted log output: NATS delivery failing; buffering, then \
                                 holding the inputs back");
                        }
                    }
                }
                if *shutdown.borrow() {
                    let d = *drain_deadline.get_or_insert(Instant::now() + self.cfg.drain_timeout);
                    if Instant::now() >= d {
                        let mut lost = b.lines;
                        rx.close();
                        while let Some(b) = rx.recv().await {
                            lost += b.lines;
                        }
                        self.metrics.dropped_lines.inc_by(lost);
                        tracing::error!(
                            lines = lost,
                            "redacted log output: NATS still unreachable after the drain \
                             timeout; these lines were not delivered"
                        );
                        return;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    async fn send(
        &mut self,
        id: &str,
        lines: u64,
        body: Bytes,
    ) -> Result<jetstream::publish::PublishAck, String> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        headers.insert("Nats-Expected-Stream", self.cfg.stream.as_str());
        headers.insert("Brainbox-Lines", lines.to_string().as_str());
        if !self.cfg.pod.is_empty() {
            headers.insert("Brainbox-Pod", self.cfg.pod.as_str());
        }
        self.link.publish(&self.cfg.subject, headers, body).await
    }
}

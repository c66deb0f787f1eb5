//! The alert publisher: JetStream first, the spool when NATS is away, in strict order.
//!
//! One task owns the NATS client, the spool and the breaker; callers talk to it over a channel,
//! so the order alerts are submitted in is the order they reach the stream.
//!
//! Ordering rules, and why they hold:
//! - While the spool holds anything, new alerts go behind it in the spool, never straight to
//!   JetStream, so nothing overtakes an older alert.
//! - Exactly one publish is in flight at a time and the next is sent only after its ack. With
//!   several in flight, a connection drop can lose message k in the dead socket while the
//!   client re-sends k+1 from its queue after reconnecting; replaying k then lands it after
//!   k+1. One in flight means the only message that can be re-sent later is the one we retry
//!   ourselves, and JetStream drops that copy by its `Nats-Msg-Id`.
//! - A message is not sent at all while the client reports no connection, so nothing piles up
//!   in the client's reconnect buffer.
//! - A spooled record is committed (the `committed` file moves) only after JetStream acked
//!   it, and in batches (`commit_every`, `commit_interval`, or when the spool drains) so the
//!   fsyncs do not cap the replay rate. A crash between ack and commit re-sends those records
//!   on restart: the stream's `duplicate_window` must be longer than the agent's restart time
//!   to drop the copies.

use crate::{
    breaker::{Breaker, BreakerConfig, BreakerState},
    metrics::AlertMetrics,
    schema::Alert,
    spool::{Record, Spool, SpoolConfig, SpoolError},
};
use async_nats::{
    header::HeaderMap,
    jetstream::{self, stream},
    ConnectOptions,
};
use brainbox_common::nats::JetStreamLink;
use bytes::Bytes;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Default stream name.
pub const DEFAULT_STREAM: &str = "BRAINBOX_ALERTS";
/// Default subject prefix; alerts go to `<prefix>.<node>.<priority>`.
pub const DEFAULT_PREFIX: &str = "brainbox.alerts";

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// NATS server URL.
    pub nats_url: String,
    /// Credentials and TLS trust for NATS.
    pub auth: brainbox_common::nats::NatsAuth,
    /// JetStream stream name.
    pub stream: String,
    /// Subject prefix.
    pub subject_prefix: String,
    /// The spool.
    pub spool: SpoolConfig,
    /// How long to wait for a JetStream ack before counting the publish as failed.
    pub ack_timeout: Duration,
    /// Breaker backoff.
    pub breaker: BreakerConfig,
    /// The stream's de-duplication window (only used when this publisher creates the stream).
    pub duplicate_window: Duration,
    /// The stream's byte limit (-1: none; only used when creating the stream).
    pub stream_max_bytes: i64,
    /// Most alerts taken from the queue at once (they share one spool fsync).
    pub batch_max: usize,
    /// Most spooled alerts replayed before looking at the queue again.
    pub replay_chunk: usize,
    /// Replay progress is fsynced after this many acked alerts (or `commit_interval`, or when
    /// the spool drains). A crash re-sends at most this many; JetStream drops the copies.
    pub commit_every: u64,
    /// Longest time between two fsyncs of replay progress.
    pub commit_interval: Duration,
    /// Capacity of the submission queue.
    pub queue: usize,
    /// How long [`Publisher::start`] waits for a first connection before it returns.
    pub initial_connect_wait: Duration,
}

impl PublisherConfig {
    /// Defaults for `nats_url` with the spool in `spool_dir`.
    pub fn new(nats_url: &str, spool_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            nats_url: nats_url.to_owned(),
            auth: Default::default(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_PREFIX.to_owned(),
            spool: SpoolConfig::new(spool_dir),
            ack_timeout: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
            duplicate_window: Duration::from_secs(3600),
            stream_max_bytes: -1,
            batch_max: 1024,
            replay_chunk: 512,
            commit_every: 8192,
            commit_interval: Duration::from_secs(1),
            queue: 8192,
            initial_connect_wait: Duration::from_secs(1),
        }
    }
}

/// The JetStream stream definition the publisher ensures.
pub fn stream_config(
    name: &str,
    prefix: &str,
    duplicate_window: Duration,
    max_bytes: i64,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        duplicate_window,
        max_bytes,
        // Refuse new alerts rather than silently discarding old ones when a limit is hit.
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Where an accepted alert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "delivery")]
pub enum Delivery {
    /// JetStream acked it; `duplicate` when the server already had that id.
    Published {
        /// Stream sequence number.
        stream_seq: u64,
        /// The server had seen this id within its duplicate window.
        duplicate: bool,
    },
    /// It is durably in the spool and will be replayed.
    Spooled {
        /// Spool sequence number.
        spool_seq: u64,
    },
}

/// Why an alert was not accepted. The alert is handed back: the caller must not lose it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// NATS is unavailable and the spool is full: enter safe mode.
    #[error("alert {} refused: NATS is unavailable and the spool is full", .0.id)]
    SpoolFull(Box<Alert>),
    /// NATS is unavailable and the spool cannot be written.
    #[error("alert {} refused: NATS is unavailable and the spool failed: {reason}", alert.id)]
    SpoolFailed {
        /// The alert.
        alert: Box<Alert>,
        /// What failed.
        reason: String,
    },
    /// The alert is malformed (bad id).
    #[error("invalid alert: {0}")]
    Invalid(String),
    /// The publisher has stopped.
    #[error("the alert publisher has stopped")]
    Stopped,
}

/// Errors starting the publisher.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The NATS URL is unusable.
    #[error("NATS URL `{url}`: {reason}")]
    Url { url: String, reason: String },
}

/// What the publisher is doing, for the agent's safe-mode logic and status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublisherState {
    /// The breaker.
    pub breaker: BreakerState,
    /// Whether the NATS client has a connection.
    pub nats_connected: bool,
    /// Undelivered alerts in the spool.
    pub spool_records: usize,
    /// Undelivered bytes in the spool.
    pub spool_bytes: u64,
    /// The spool's bound.
    pub spool_max_bytes: u64,
    /// True once an alert was refused for lack of spool space, until the spool drains below
    /// half its bound.
    pub spool_full: bool,
    /// True while the spool cannot be written.
    pub spool_failed: bool,
    /// The last publish or spool error.
    pub last_error: Option<String>,
}

impl PublisherState {
    /// NATS and the spool are both unusable: the node must enter safe mode.
    pub fn alert_path_lost(&self) -> bool {
        self.breaker != BreakerState::Closed && (self.spool_full || self.spool_failed)
    }
}

type Reply = oneshot::Sender<Result<Delivery, PublishError>>;

enum Cmd {
    Publish(Box<Alert>, Reply),
    Flush(oneshot::Sender<()>),
}

/// The outcome of a submitted alert, resolved once it is acked or spooled.
pub struct Receipt(oneshot::Receiver<Result<Delivery, PublishError>>);

impl Receipt {
    /// Waits for the outcome.
    pub async fn wait(self) -> Result<Delivery, PublishError> {
        self.0.await.unwrap_or(Err(PublishError::Stopped))
    }
}

/// Handle to the publisher task. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Cmd>,
    state: watch::Receiver<PublisherState>,
}

/// The publisher task's handle, to wait for it after [`Publisher`] handles are dropped.
pub struct PublisherTask(tokio::task::JoinHandle<()>);

impl PublisherTask {
    /// Waits for the task to finish (after every [`Publisher`] handle was dropped).
    pub async fn join(self) {
        let _ = self.0.await;
    }
}

impl Publisher {
    /// Opens the spool (recovering after a crash) and starts the publisher task. NATS need not
    /// be up: until it is, alerts are spooled.
    pub async fn start(
        cfg: PublisherConfig,
        metrics: AlertMetrics,
    ) -> Result<(Self, PublisherTask), StartError> {
        let (spool, recovery) = Spool::open(cfg.spool.clone())?;
        if recovery.torn_bytes > 0 {
            metrics.spool_torn.inc_by(recovery.torn_bytes);
        }
        if recovery.records > 0 {
            tracing::info!(
                records = recovery.records,
                "alert spool holds undelivered alerts; they go first"
            );
        }
        let url = cfg.nats_url.clone();
        // A (re)connection ends the breaker's wait at once: replay should not sit out a long
        // backoff when NATS is demonstrably back.
        let reconnected = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = reconnected.clone();
        let opts = cfg
            .auth
            .apply(ConnectOptions::new())
            .map_err(|e| StartError::Url {
                url: url.clone(),
                reason: e,
            })?;
        let opts = opts.event_callback(move |e| {
            let notify = notify.clone();
            async move {
                if matches!(e, async_nats::Event::Connected) {
                    notify.notify_one();
                }
            }
        });
        // Connects in the background: the agent must start (and spool) with NATS down. Waits
        // a moment for a reachable server, so a normal start publishes directly instead of
        // spooling its first alerts.
        let link = JetStreamLink::connect(
            opts,
            "brainbox-alerts",
            &url,
            cfg.ack_timeout,
            cfg.initial_connect_wait,
            Some(stream_config(
                &cfg.stream,
                &cfg.subject_prefix,
                cfg.duplicate_window,
                cfg.stream_max_bytes,
            )),
        )
        .await
        .map_err(|e| StartError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let initial = PublisherState {
            breaker: BreakerState::Closed,
            nats_connected: false,
            spool_records: spool.len(),
            spool_bytes: spool.pending_bytes(),
            spool_max_bytes: spool.max_bytes(),
            spool_full: false,
            spool_failed: false,
            last_error: None,
        };
        let (state_tx, state_rx) = watch::channel(initial);
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let actor = Actor {
            breaker: Breaker::new(cfg.breaker),
            cfg,
            link,
            spool,
            metrics,
            state_tx,
            rx,
            flush_waiters: Vec::new(),
            last_persist: Instant::now(),
            reconnected,
            spool_full: false,
            spool_failed: false,
            last_error: None,
        };
        actor.update_state();
        let task = tokio::spawn(actor.run());
        Ok((
            Publisher {
                tx,
                state: state_rx,
            },
            PublisherTask(task),
        ))
    }

    /// Queues `alert` behind every alert submitted before it and returns a receipt for its
    /// outcome. Callers that raise many alerts submit them all, then wait on the receipts.
    pub async fn submit(&self, alert: Alert) -> Result<Receipt, PublishError> {
        alert.check().map_err(PublishError::Invalid)?;
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Cmd::Publish(Box::new(alert), rtx))
            .await
            .map_err(|_| PublishError::Stopped)?;
        Ok(Receipt(rrx))
    }

    /// Publishes `alert`: returns once JetStream acked it or it is fsynced in the spool.
    pub async fn publish(&self, alert: Alert) -> Result<Delivery, PublishError> {
        self.submit(alert).await?.wait().await
    }

    /// Waits until the spool is empty (everything delivered) or `timeout` passes; true if empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Flush(tx)).await.is_err() {
            return false;
        }
        tokio::time::timeout(timeout, rx)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The publisher's state, as a watch.
    pub fn state(&self) -> watch::Receiver<PublisherState> {
        self.state.clone()
    }
}

struct Actor {
    cfg: PublisherConfig,
    link: JetStreamLink,
    spool: Spool,
    breaker: Breaker,
    metrics: AlertMetrics,
    state_tx: watch::Sender<PublisherState>,
    rx: mpsc::Receiver<Cmd>,
    flush_waiters: Vec<oneshot::Sender<()>>,
    last_persist: Instant,
    reconnected: std::sync::Arc<tokio::sync::Notify>,
    spool_full: bool,
    spool_failed: bool,
    last_error: Option<String>,
}

/// Spool record payload: the message id and subject travel with the body, so replay needs no
/// knowledge of the schema or of the configuration that built the subject.
fn envelope(id: &str, subject: &str, body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(4 + id.len() + subject.len() + body.len());
    v.extend_from_slice(&(id.len() as u16).to_le_bytes());
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    v.extend_from_slice(subject.as_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

fn open_envelope(b: &Bytes) -> Option<(String, String, Bytes)> {
    let take = |b: &Bytes, at: usize| -> Option<(String, usize)> {
        let n = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
        let s = std::str::from_utf8(b.get(at + 2..at + 2 + n)?).ok()?;
        Some((s.to_owned(), at + 2 + n))
    };
    let (id, at) = take(b, 0)?;
    let (subject, at) = take(b, at)?;
    Some((id, subject, b.slice(at..)))
}

impl Actor {
    async fn run(mut self) {
        loop {
            let now = Instant::now();
            let can_replay = !self.spool.is_empty() && self.breaker.allows(now);
            let first = if can_replay {
                match self.rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                let retry = self.breaker.retry_at().filter(|_| !self.spool.is_empty());
                let sleep = tokio::time::sleep_until(retry.map_or_else(
                    || tokio::time::Instant::now() + Duration::from_secs(3600),
                    tokio::time::Instant::from_std,
                ));
                tokio::select! {
                    c = self.rx.recv() => match c {
                        Some(c) => Some(c),
                        None => break,
                    },
                    () = sleep, if retry.is_some() => None,
                    () = self.reconnected.notified() => {
                        tracing::info!("NATS connection (re)established; probing now");
                        self.breaker.probe_now();
                        None
                    }
                }
            };
            if let Some(first) = first {
                let mut batch = Vec::new();
                self.take(first, &mut batch);
                while batch.len() < self.cfg.batch_max {
                    match self.rx.try_recv() {
                        Ok(c) => self.take(c, &mut batch),
                        Err(_) => break,
                    }
                }
                self.handle(batch).await;
            }
            if !self.spool.is_empty() && self.breaker.allows(Instant::now()) {
                self.replay().await;
            }
            if self.spool.is_empty() {
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            self.update_state();
        }
        self.persist();
        self.update_state();
        tracing::debug!(
            undelivered = self.spool.len(),
            "alert publisher stopped; the spool keeps what is undelivered"
        );
    }

    fn take(&mut self, c: Cmd, batch: &mut Vec<(Box<Alert>, Reply)>) {
        match c {
            Cmd::Publish(a, r) => batch.push((a, r)),
            Cmd::Flush(w) => self.flush_waiters.push(w),
        }
    }

    async fn handle(&mut self, batch: Vec<(Box<Alert>, Reply)>) {
        let mut rest = batch.into_iter().peekable();
        // Direct path: only while nothing older waits in the spool.
        while self.spool.is_empty() && self.breaker.allows(Instant::now()) {
            let Some((alert, reply)) = rest.next() else {
                return;
            };
            let subject = alert.subject(&self.cfg.subject_prefix);
            let body = Bytes::from(serde_json::to_vec(&alert).unwrap_or_default());
            match self.send(&alert.id, &subject, body).await {
                Ok(ack) => {
                    self.breaker.success();
                    self.metrics.published.inc();
                    let _ = reply.send(Ok(Delivery::Published {
                        stream_seq: ack.sequence,
                        duplicate: ack.duplicate,
                    }));
                }
                Err(e) => {
                    self.fail(e);
                    self.spool_batch(std::iter::once((alert, reply)).chain(rest).collect());
                    return;
                }
            }
        }
        let rest: Vec<_> = rest.collect();
        if !rest.is_empty() {
            self.spool_batch(rest);
        }
    }

    fn fail(&mut self, e: String) {
        if self.breaker.state(Instant::now()) == BreakerState::Closed {
            tracing::warn!(error = %e, "alert publish failed; spooling until NATS answers again");
        } else {
            tracing::debug!(error = %e, "alert publish probe failed");
        }
        self.breaker.failure(Instant::now());
        self.metrics.publish_failures.inc();
        self.last_error = Some(e);
    }

    fn spool_batch(&mut self, batch: Vec<(Box<Alert>, Reply)>) {
        let payloads: Vec<Bytes> = batch
            .iter()
            .map(|(a, _)| {
                let body = serde_json::to_vec(a).unwrap_or_default();
                envelope(&a.id, &a.subject(&self.cfg.subject_prefix), &body)
            })
            .collect();
        let res = self.spool.append_batch(&payloads);
        let n = res.as_ref().map_or(0, Vec::len);
        let mut it = batch.into_iter();
        if let Ok(seqs) = &res {
            self.spool_failed = false;
            // The state first: whoever a receipt wakes sees the spool that holds its alert.
            self.update_state();
            for (seq, (_, reply)) in seqs.iter().zip(it.by_ref()) {
                self.metrics.spooled.inc();
                let _ = reply.send(Ok(Delivery::Spooled { spool_seq: *seq }));
            }
        }
        let refused: Vec<_> = it.collect();
        if refused.is_empty() {
            return;
        }
        match res {
            Ok(_) => {
                if !self.spool_full {
                    tracing::error!(
                        spool_bytes = self.spool.pending_bytes(),
                        "alert spool is full and NATS is unavailable: refusing alerts; the node must enter safe mode"
                    );
                }
                self.spool_full = true;
                // Publish the state before answering, so a caller reacting to the refusal
                // already sees `spool_full`.
                self.update_state();
                for (a, reply) in refused {
                    self.metrics.spool_full_refusals.inc();
                    let _ = reply.send(Err(PublishError::SpoolFull(a)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, accepted = n, "alert spool write failed");
                self.spool_failed = true;
                self.last_error = Some(e.to_string());
                self.update_state();
                for (a, reply) in refused {
                    let _ = reply.send(Err(PublishError::SpoolFailed {
                        alert: a,
                        reason: e.to_string(),
                    }));
                }
            }
        }
    }

    async fn replay(&mut self) {
        let recs: Vec<Record> = self.spool.peek(self.cfg.replay_chunk).cloned().collect();
        let mut done: Option<u64> = None;
        for r in recs {
            let Some((id, subject, body)) = open_envelope(&r.payload) else {
                // The frame passed its checksum, so this is a writer bug, not disk damage.
                // Skipping it loudly is the only way forward; it is logged with its content hash.
                tracing::error!(
                    spool_seq = r.seq,
                    blake3 = %blake3::hash(&r.payload).to_hex(),
                    "undecodable spool record skipped"
                );
                done = Some(r.seq);
                continue;
            };
            match self.send(&id, &subject, body).await {
                Ok(_) => {
                    self.breaker.success();
                    self.metrics.replayed.inc();
                    done = Some(r.seq);
                }
                Err(e) => {
                    self.fail(e);
                    break;
                }
            }
        }
        if let Some(seq) = done {
            self.spool.advance(seq);
            let due = self.spool.is_empty()
                || self.breaker.state(Instant::now()) != BreakerState::Closed
                || self.spool.unpersisted() >= self.cfg.commit_every
                || self.last_persist.elapsed() >= self.cfg.commit_interval;
            if due {
                self.persist();
            }
            if self.spool.pending_bytes() <= self.spool.max_bytes() / 2 && self.spool_full {
                tracing::info!("alert spool has room again");
                self.spool_full = false;
            }
            if self.spool.is_empty() {
                tracing::info!("alert spool drained");
            }
        }
    }

    fn persist(&mut self) {
        self.last_persist = Instant::now();
        if let Err(e) = self.spool.persist() {
            // Not fatal: the records are acked; they would only be re-sent (and dropped as
            // duplicates) after a restart.
            tracing::error!(error = %e, "cannot record spool progress");
            self.last_error = Some(e.to_string());
        }
    }

    async fn send(
        &mut self,
        id: &str,
        subject: &str,
        body: Bytes,
    ) -> Result<jetstream::publish::PublishAck, String> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        self.link.publish(subject, headers, body).await
    }

    fn update_state(&self) {
        let now = Instant::now();
        let s = PublisherState {
            breaker: self.breaker.state(now),
            nats_connected: self.link.connected(),
            spool_records: self.spool.len(),
            spool_bytes: self.spool.pending_bytes(),
            spool_max_bytes: self.spool.max_bytes(),
            spool_full: self.spool_full,
            spool_failed: self.spool_failed,
            last_error: self.last_error.clone(),
        };
        self.metrics.spool_bytes.set(s.spool_bytes as i64);
        self.metrics.spool_records.set(s.spool_records as i64);
        self.metrics.spool_full.set(i64::from(s.spool_full));
        self.metrics.breaker_state.set(s.breaker.gauge());
        self.state_tx.send_if_modified(|old| {
            if *old == s {
                false
            } else {
                *old = s;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let e = envelope("id1", "a.b.c", b"{}");
        let (id, s, b) = open_envelope(&e).unwrap();
        assert_eq!(
            (id.as_str(), s.as_str(), &b[..]),
            ("id1", "a.b.c", &b"{}"[..])
        );
        assert!(open_envelope(&Bytes::from_static(&[9, 0, b'x'])).is_none());
        assert!(open_envelope(&Bytes::new()).is_none());
    }
}

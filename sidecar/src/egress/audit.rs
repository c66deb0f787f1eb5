//! Every egress decision as an audit record and a metric.
//!
//! Records are redacted at the source: paths lose their query string and fragment, URLs never
//! carry user-info (such requests are refused before they are recorded), and header values are
//! never recorded. The JSON-lines writer runs on its own thread and batches writes, so auditing
//! costs the proxy one bounded-channel send per decision; a full channel drops the record and
//! counts the drop in `brainbox_egress_audit_dropped_total`, never silently. Before a record is
//! written, the writer runs the sidecar's redaction engine over the host and path (a token in a
//! URL path, or smuggled into a host name, becomes `[REDACTED:<kind>:<fp>]`), off the proxy's
//! hot path, and marks the record with the classification (`"redaction":"secret"`).

use super::policy::Verdict;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Serialize;
use std::{
    io::Write,
    net::{IpAddr, SocketAddr},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The longest path recorded; longer paths are cut (with `…`).
const MAX_PATH: usize = 256;

/// One decision, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Always `egress_decision`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// `connect`, `http`, or `invalid` (the request did not parse).
    pub request: &'static str,
    /// `allow`, `report` or `deny`.
    pub verdict: &'static str,
    /// Reason token (also sent to the client on denial).
    pub reason: &'static str,
    /// Destination host as asked for.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Method (plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path without query or fragment (plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The address dialled or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    /// The pod's SPIFFE ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<Arc<str>>,
    /// The policy that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Arc<str>>,
    /// The deciding rule's host pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<str>>,
    /// The agent's address.
    pub client: SocketAddr,
    /// What the redaction engine found in the host or path (`secret`, `pii`, ...), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction: Option<&'static str>,
}

impl AuditEvent {
    /// A path as it may be recorded: without query and fragment, cut to a bounded length.
    pub fn redact_path(path: &[u8]) -> String {
        let end = path
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(path.len());
        let p = String::from_utf8_lossy(&path[..end]);
        if p.len() <= MAX_PATH {
            return p.into_owned();
        }
        let mut cut = MAX_PATH;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &p[..cut])
    }

    /// Runs `engine` over the fields that come from the agent's request (host and path).
    pub fn redact(&mut self, engine: &brainbox_redact::Engine) {
        let mut class = brainbox_redact::Class::default();
        let mut one = |s: &mut String| {
            let r = engine.redact_text(s);
            if r.changed() {
                class = class.union(r.class);
                *s = r.text.into_owned();
            }
        };
        one(&mut self.host);
        if let Some(p) = self.path.as_mut() {
            one(p);
        }
        if !class.is_clean() {
            self.redaction = Some(class.tag());
        }
    }

    /// Now in Unix milliseconds.
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Where audit records go.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one decision; must not block.
    fn record(&self, ev: AuditEvent);
}

/// Keeps records in memory (tests, and the demo's summary).
#[derive(Debug, Default)]
pub struct MemoryAudit(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for MemoryAudit {
    fn record(&self, ev: AuditEvent) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
    }
}

impl MemoryAudit {
    /// A copy of the records so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes JSON lines to stdout or a file from a background thread.
pub struct JsonLinesAudit {
    // Boxed: the bounded channel initialises every slot up front, and ~250-byte records times
    // `audit_queue` slots was a megabyte of the idle proxy's memory.
    tx: mpsc::SyncSender<Box<AuditEvent>>,
    dropped: Counter,
}

impl JsonLinesAudit {
    /// Starts the writer: `path` empty or `-` is stdout. `capacity` bounds the queue. With
    /// `engine`, every record's host and path are redacted before they are written.
    pub fn start(
        path: &str,
        capacity: usize,
        dropped: Counter,
        engine: Option<Arc<brainbox_redact::Engine>>,
    ) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if path.is_empty() || path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (tx, rx) = mpsc::sync_channel::<Box<AuditEvent>>(capacity);
        std::thread::Builder::new()
            .name("egress-audit".into())
            .spawn(move || write_loop(rx, out, engine))?;
        Ok(Self { tx, dropped })
    }
}

fn write_loop(
    rx: mpsc::Receiver<Box<AuditEvent>>,
    out: Box<dyn Write + Send>,
    engine: Option<Arc<brainbox_redact::Engine>>,
) {
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = Vec::with_capacity(512);
    // Drain in batches and sleep between them rather than blocking in `recv`: a blocked receiver
    // would make every sender pay a wake-up (a futex call) per request on the proxy's hot path.
    loop {
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(mut ev) => {
                    if let Some(e) = &engine {
                        ev.redact(e);
                    }
                    line.clear();
                    if serde_json::to_writer(&mut line, &ev).is_ok() {
                        line.push(b'\n');
                        let _ = w.write_all(&line);
                        wrote = true;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    let _ = w.flush();
                    return;
                }
            }
        }
        if wrote {
            let _ = w.flush();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl AuditSink for JsonLinesAudit {
    fn record(&self, ev: AuditEvent) {
        if self.tx.try_send(Box::new(ev)).is_err() {
            self.dropped.inc();
        }
    }
}

/// Labels of `brainbox_egress_decisions_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The deciding rule's host pattern, or `unlisted` (keeps the label set bounded by policy).
    pub destination: String,
    /// allow | report | deny.
    pub verdict: String,
    /// Reason token.
    pub reason: String,
}

/// Labels of `brainbox_egress_connections_refused_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// Reason token.
    pub reason: String,
}

/// The proxy's metrics.
#[derive(Debug, Clone, Default)]
pub struct EgressMetrics {
    /// Decisions by destination, verdict and reason.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Client connections open now.
    pub connections_active: Gauge,
    /// Client connections refused before a request (limits), by reason.
    pub refused: Family<RefusedLabels, Counter>,
    /// Audit records dropped because the writer fell behind.
    pub audit_dropped: Counter,
    /// Upstream connections open now.
    pub upstream_active: Gauge,
}

impl EgressMetrics {
    /// Registers the metrics under `brainbox_egress_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("brainbox_egress");
        r.register(
            "decisions",
            "Egress decisions by destination rule, verdict and reason",
            self.decisions.clone(),
        );
        r.register(
            "client_connections",
            "Client connections open now",
            self.connections_active.clone(),
        );
        r.register(
            "upstream_connections",
            "Upstream connections open now",
            self.upstream_active.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections refused by a limit, by reason",
            self.refused.clone(),
        );
        r.register(
            "audit_dropped",
            "Audit records dropped because the writer fell behind",
            self.audit_dropped.clone(),
        );
    }

    /// The counter for one decision.
    pub fn decision(&self, destination: Option<&str>, verdict: Verdict, reason: &str) -> Counter {
        self.decisions
            .get_or_create(&DecisionLabels {
                destination: destination.unwrap_or("unlisted").to_owned(),
                verdict: verdict.as_str().to_owned(),
                reason: reason.to_owned(),
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str, port: u16, path: &str) -> AuditEvent {
        AuditEvent {
            kind: "egress_decision",
            time_ms: 1,
            request: "http",
            verdict: "deny",
            reason: "no-rule",
            host: host.into(),
            port,
            method: Some("GET".into()),
            path: Some(AuditEvent::redact_path(path.as_bytes())),
            addr: None,
            spiffe_id: None,
            policy: None,
            rule: None,
            client: "127.0.0.1:9".parse().unwrap(),
            redaction: None,
        }
    }

    /// The file's lines once it has `n` of them (or what it has after 2 s).
    fn lines_of(f: &std::path::Path, n: usize) -> String {
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(f).unwrap_or_default();
            if text.lines().count() == n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        text
    }

    #[test]
    fn json_lines_are_written_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.jsonl");
        let sink =
            JsonLinesAudit::start(f.to_str().unwrap(), 16, Counter::default(), None).unwrap();
        for port in [1, 2, 3] {
            sink.record(event("a.b", port, "/x?secret=1"));
        }
        let text = lines_of(&f, 3);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("\"path\":\"/x\"") && !text.contains("secret"),
            "{text}"
        );
    }

    #[test]
    fn secrets_in_hosts_and_paths_are_redacted_before_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("audit.jsonl");
        let engine = brainbox_redact::Engine::builder()
            .key(brainbox_redact::FingerprintKey::from_bytes([7; 32]))
            .build()
            .unwrap();
        let sink = JsonLinesAudit::start(
            f.to_str().unwrap(),
            16,
            Counter::default(),
            Some(Arc::new(engine)),
        )
        .unwrap();
        let token = "ghp_R8x2Kq9LmN4pZ7vT1wY6bC3dF5gH0jA2sE9u";
        sink.record(event(
            "api.github.com",
            443,
            &format!("/repos/x/{token}/pulls"),
        ));
        sink.record(event(&format!("{token}.exfil.example"), 443, "/"));
        sink.record(event("api.github.com", 443, "/repos/x/y/pulls"));
        let text = lines_of(&f, 3);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(!text.contains(token), "{text}");
        for l in &lines[..2] {
            assert!(
                l.contains("[REDACTED:") && l.contains("\"redaction\":\"secret\""),
                "{l}"
            );
        }
        assert!(
            lines[2].contains("\"path\":\"/repos/x/y/pulls\"") && !lines[2].contains("redaction"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn paths_lose_queries_and_are_bounded() {
        assert_eq!(AuditEvent::redact_path(b"/v1/x?token=s3cret"), "/v1/x");
        assert_eq!(AuditEvent::redact_path(b"/a#frag"), "/a");
        let long = format!("/{}", "é".repeat(300));
        assert!(AuditEvent::redact_path(long.as_bytes()).len() <= MAX_PATH + 3);
    }
}

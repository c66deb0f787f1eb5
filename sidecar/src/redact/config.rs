//! `[redact.pipeline]`: the redaction pipeline `brainbox-sidecar run` starts next to the egress
//! proxy and the SVID rotation. Absent means disabled.
//!
//! ```toml
//! [redact.pipeline]
//! socket = "/run/brainbox/log.sock"      # agents write lines here
//! socket_mode = "0666"                   # when agents run as another user (default: umask)
//! tail = ["/var/log/agent/agent.log"]    # and/or files to follow across rotation
//! output = "nats"                        # "stdout" (default), "file" or "nats"
//! format = "json"                        # "raw" (default) or "json" envelopes
//! [redact.pipeline.nats]
//! url = "nats://nats.brainbox-system:4222"
//! subject = "brainbox.logs.{pod}"       # `{pod}`: this pod's name
//! stream = "BRAINBOX_LOGS"
//! ```

use super::{pipeline, Format};
use brainbox_common::config::ConfigError;
use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

/// Largest NATS message the sink builds. NATS servers refuse payloads above `max_payload`
/// (1 MiB by default), so a batch must stay under it with room for headers.
pub const MAX_NATS_BATCH_BYTES: usize = 1_000_000;

/// `[redact.pipeline]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Unix socket agents write lines to (one stream per connection).
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket, octal (`"0660"`, or a TOML integer such as `0o660`).
    /// Connecting needs write permission, so agents running as another user than the sidecar
    /// need group or other write; in a pod the socket's directory is the boundary (an emptyDir
    /// only the pod's containers mount). Default: what the umask leaves.
    pub socket_mode: Option<SocketMode>,
    /// Most socket connections read at once (more wait until one closes): with
    /// `max_line_bytes` it bounds the memory writers can make the sidecar hold.
    pub max_connections: usize,
    /// Files to tail (rotation and truncation are followed).
    pub tail: Vec<PathBuf>,
    /// Where redacted lines go: `stdout`, `file` or `nats`.
    pub output: OutputKind,
    /// With `output = "file"`: the file lines are appended to.
    pub output_file: Option<PathBuf>,
    /// `raw` lines or `json` envelopes (`{"stream":N,"class":"secret","line":"…"}`).
    pub format: FormatName,
    /// Longest line kept, bytes (the rest is dropped and counted in the line).
    pub max_line_bytes: usize,
    /// Capacity of the input channel, in batches (one read, ≤ 64 KiB, each).
    pub channel_batches: usize,
    /// `[redact.pipeline.nats]`, used with `output = "nats"`.
    pub nats: NatsSection,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            socket: None,
            socket_mode: None,
            max_connections: pipeline::DEFAULT_MAX_CONNECTIONS,
            tail: Vec::new(),
            output: OutputKind::Stdout,
            output_file: None,
            format: FormatName::Raw,
            max_line_bytes: 1 << 20,
            channel_batches: 256,
            nats: NatsSection::default(),
        }
    }
}

/// Permission bits, as written in the configuration: an octal string or an integer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SocketMode {
    /// `0o660` in TOML.
    Bits(u32),
    /// `"0660"` or `"660"` (octal).
    Octal(String),
}

impl SocketMode {
    /// The bits, if they are permission bits (≤ 0o777).
    fn bits(&self) -> Option<u32> {
        let m = match self {
            SocketMode::Bits(b) => *b,
            SocketMode::Octal(s) => {
                let s = s.strip_prefix("0o").unwrap_or(s);
                if s.is_empty() || s.len() > 4 {
                    return None;
                }
                u32::from_str_radix(s, 8).ok()?
            }
        };
        (m <= 0o777).then_some(m)
    }
}

/// `{pod}` in a subject: the pod's name, made one subject token (`.`, spaces and wildcards
/// become `_`).
fn subject_for(subject: &str, pod: &str) -> String {
    let token: String = pod
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let token = if token.is_empty() { "_".into() } else { token };
    subject.replace("{pod}", &token)
}

/// Output kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Standard output (the container log).
    Stdout,
    /// A file (`output_file`).
    File,
    /// A NATS JetStream subject (`[redact.pipeline.nats]`).
    Nats,
}

/// Output formats, as configuration names.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    /// The redacted line.
    Raw,
    /// A JSON envelope per line.
    Json,
}

/// `[redact.pipeline.nats]`: the JetStream output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// Server URL (`nats://host:4222`, or `tls://` with `nats_auth.ca_file`).
    pub url: String,
    /// `[redact.pipeline.nats.nats_auth]`: credentials (files) and the server's CA.
    pub nats_auth: brainbox_common::nats::NatsAuth,
    /// Subject the redacted lines are published to; `{pod}` stands for this pod's name.
    pub subject: String,
    /// JetStream stream that holds `subject`; every batch waits for its ack.
    pub stream: String,
    /// Create the stream (file storage, subjects `stream_subjects`) when it does not exist.
    pub create_stream: bool,
    /// Subjects of a stream this sidecar creates (default: `subject`).
    pub stream_subjects: Vec<String>,
    /// Most lines in one NATS message (1 = a message per line; slower, one ack each).
    pub batch_lines: usize,
    /// Most bytes in one NATS message (≤ 1 000 000; a longer single line is cut and marked).
    pub batch_bytes: usize,
    /// Batches held in memory while NATS is slow or away; then the pipeline stops reading.
    pub buffer_batches: usize,
    /// How long to wait for a JetStream ack before retrying, milliseconds.
    pub ack_timeout_ms: u64,
    /// On shutdown, how long to keep trying to deliver what is buffered, milliseconds.
    pub drain_timeout_ms: u64,
    /// The stream's de-duplication window when this sidecar creates it, milliseconds: a retry
    /// after a lost ack is dropped by its `Nats-Msg-Id` within this window.
    pub duplicate_window_ms: u64,
}

impl Default for NatsSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            nats_auth: Default::default(),
            subject: String::new(),
            stream: "BRAINBOX_LOGS".into(),
            create_stream: true,
            stream_subjects: Vec::new(),
            batch_lines: 1024,
            batch_bytes: 256 << 10,
            buffer_batches: 64,
            ack_timeout_ms: 2000,
            drain_timeout_ms: 10_000,
            duplicate_window_ms: 120_000,
        }
    }
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, reason)
}

/// A NATS subject a publisher may use: dot-separated non-empty tokens, no wildcards, no spaces.
fn valid_subject(s: &str, wildcards: bool) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes().all(|b| b > b' ' && b != 0x7f)
                && (wildcards || (t != "*" && t != ">"))
        })
}

impl PipelineSection {
    /// Check every key; `key` is this section's dotted path (`redact.pipeline`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.socket.is_none() && self.tail.is_empty() {
            return Err(bad(
                key,
                "the pipeline needs an input: set `socket` or `tail` (or remove the section)",
            ));
        }
        if self
            .socket
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(bad(&format!("{key}.socket"), "empty path"));
        }
        if let Some(m) = &self.socket_mode {
            if m.bits().is_none() {
                return Err(bad(
                    &format!("{key}.socket_mode"),
                    "permission bits, octal, at most 0777 (e.g. \"0660\")",
                ));
            }
            if self.socket.is_none() {
                return Err(bad(&format!("{key}.socket_mode"), "set without `socket`"));
            }
        }
        if self.tail.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(bad(&format!("{key}.tail"), "empty path"));
        }
        if self.max_line_bytes < 16 {
            return Err(bad(&format!("{key}.max_line_bytes"), "must be at least 16"));
        }
        if self.channel_batches == 0 {
            return Err(bad(&format!("{key}.channel_batches"), "must be at least 1"));
        }
        if !(1..=4096).contains(&self.max_connections) {
            return Err(bad(
                &format!("{key}.max_connections"),
                "must be between 1 and 4096",
            ));
        }
        match self.output {
            OutputKind::Stdout => {}
            OutputKind::File => {
                if self
                    .output_file
                    .as_ref()
                    .is_none_or(|p| p.as_os_str().is_empty())
                {
                    return Err(bad(
                        &format!("{key}.output_file"),
                        "required with output = \"file\"",
                    ));
                }
            }
            OutputKind::Nats => self.nats.validate(&format!("{key}.nats"))?,
        }
        Ok(())
    }

    /// The pipeline settings this section describes.
    pub fn to_pipeline(&self, pod: &str) -> pipeline::PipelineConfig {
        let output = match self.output {
            OutputKind::Stdout => pipeline::Output::Stdout,
            OutputKind::File => {
                pipeline::Output::File(self.output_file.clone().unwrap_or_default())
            }
            OutputKind::Nats => pipeline::Output::Nats(Box::new(self.nats.to_sink(pod))),
        };
        pipeline::PipelineConfig {
            socket: self.socket.clone(),
            socket_mode: self.socket_mode.as_ref().and_then(SocketMode::bits),
            max_connections: self.max_connections,
            tail: self.tail.clone(),
            stdin: false,
            output,
            format: match self.format {
                FormatName::Raw => Format::Raw,
                FormatName::Json => Format::Json,
            },
            max_line: self.max_line_bytes,
            channel_batches: self.channel_batches,
        }
    }
}

impl NatsSection {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.nats_auth
            .validate(&format!("{key}.nats_auth"))
            .map_err(|e| bad(&format!("{key}.nats_auth"), &e))?;
        if self.url.is_empty() {
            return Err(bad(
                &format!("{key}.url"),
                "required with output = \"nats\"",
            ));
        }
        if !self.url.contains("://") && self.url.contains(' ') {
            return Err(bad(&format!("{key}.url"), "not a NATS URL"));
        }
        if !valid_subject(&subject_for(&self.subject, "pod"), false) {
            return Err(bad(
                &format!("{key}.subject"),
                format!(
                    "`{}` is not a publishable NATS subject (dot-separated tokens, no spaces \
                     or wildcards)",
                    self.subject
                ),
            ));
        }
        if self.stream.is_empty()
            || self
                .stream
                .bytes()
                .any(|b| b <= b' ' || matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
        {
            return Err(bad(
                &format!("{key}.stream"),
                "a JetStream stream name: no spaces, dots, wildcards or slashes",
            ));
        }
        if let Some(s) = self
            .stream_subjects
            .iter()
            .find(|s| !valid_subject(s, true))
        {
            return Err(bad(
                &format!("{key}.stream_subjects"),
                format!("`{s}` is not a NATS subject"),
            ));
        }
        if self.batch_lines == 0 {
            return Err(bad(&format!("{key}.batch_lines"), "must be at least 1"));
        }
        if !(1024..=MAX_NATS_BATCH_BYTES).contains(&self.batch_bytes) {
            return Err(bad(
                &format!("{key}.batch_bytes"),
                format!("must be between 1024 and {MAX_NATS_BATCH_BYTES} (NATS max_payload)"),
            ));
        }
        if self.buffer_batches == 0 {
            return Err(bad(&format!("{key}.buffer_batches"), "must be at least 1"));
        }
        if self.ack_timeout_ms == 0 {
            return Err(bad(&format!("{key}.ack_timeout_ms"), "must be positive"));
        }
        if self.duplicate_window_ms < self.ack_timeout_ms {
            return Err(bad(
                &format!("{key}.duplicate_window_ms"),
                "must be at least ack_timeout_ms, or retries could be stored twice",
            ));
        }
        Ok(())
    }

    /// The sink settings.
    pub fn to_sink(&self, pod: &str) -> super::nats::NatsSinkConfig {
        let subject = subject_for(&self.subject, pod);
        super::nats::NatsSinkConfig {
            url: self.url.clone(),
            auth: self.nats_auth.clone(),
            subject: subject.clone(),
            stream: self.stream.clone(),
            create_stream: self.create_stream,
            stream_subjects: if self.stream_subjects.is_empty() {
                vec![subject]
            } else {
                self.stream_subjects.clone()
            },
            batch_lines: self.batch_lines,
            batch_bytes: self.batch_bytes,
            buffer_batches: self.buffer_batches,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            duplicate_window: Duration::from_millis(self.duplicate_window_ms),
            pod: pod.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats_section() -> PipelineSection {
        PipelineSection {
            socket: Some("/tmp/x.sock".into()),
            output: OutputKind::Nats,
            nats: NatsSection {
                url: "nats://127.0.0.1:4222".into(),
                subject: "brainbox.logs.pod".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_good_section_passes() {
        nats_section().validate("redact.pipeline").unwrap();
    }

    #[test]
    fn each_bad_key_is_named() {
        type Break = Box<dyn Fn(&mut PipelineSection)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "redact.pipeline:",
                Box::new(|s| {
                    s.socket = None;
                }),
            ),
            ("redact.pipeline.nats.url", Box::new(|s| s.nats.url.clear())),
            (
                "redact.pipeline.nats.subject",
                Box::new(|s| s.nats.subject = "logs.>".into()),
            ),
            (
                "redact.pipeline.nats.subject",
                Box::new(|s| s.nats.subject = "a..b".into()),
            ),
            (
                "redact.pipeline.nats.stream",
                Box::new(|s| s.nats.stream = "A.B".into()),
            ),
            (
                "redact.pipeline.nats.batch_bytes",
                Box::new(|s| s.nats.batch_bytes = 2 << 20),
            ),
            (
                "redact.pipeline.nats.batch_lines",
                Box::new(|s| s.nats.batch_lines = 0),
            ),
            (
                "redact.pipeline.output_file",
                Box::new(|s| s.output = OutputKind::File),
            ),
            (
                "redact.pipeline.max_line_bytes",
                Box::new(|s| s.max_line_bytes = 3),
            ),
            (
                "redact.pipeline.socket_mode",
                Box::new(|s| s.socket_mode = Some(SocketMode::Octal("0999".into()))),
            ),
            (
                "redact.pipeline.socket_mode",
                Box::new(|s| s.socket_mode = Some(SocketMode::Bits(0o4777))),
            ),
            (
                "redact.pipeline.socket_mode",
                Box::new(|s| {
                    s.socket = None;
                    s.tail = vec!["/var/log/a.log".into()];
                    s.socket_mode = Some(SocketMode::Octal("0660".into()));
                }),
            ),
            (
                "redact.pipeline.nats.subject",
                Box::new(|s| s.nats.subject = "logs.{pod}.>".into()),
            ),
            (
                "redact.pipeline.max_connections",
                Box::new(|s| s.max_connections = 0),
            ),
        ];
        for (key, f) in cases {
            let mut s = nats_section();
            f(&mut s);
            let e = s.validate("redact.pipeline").unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{}", key.trim_end_matches(':'))),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn socket_mode_reads_octal_strings_and_integers() {
        for (m, bits) in [
            (SocketMode::Octal("0666".into()), Some(0o666)),
            (SocketMode::Octal("660".into()), Some(0o660)),
            (SocketMode::Octal("0o600".into()), Some(0o600)),
            (SocketMode::Bits(0o640), Some(0o640)),
            (SocketMode::Octal("".into()), None),
            (SocketMode::Octal("rw-rw-rw-".into()), None),
            (SocketMode::Octal("01777".into()), None),
        ] {
            assert_eq!(m.bits(), bits, "{m:?}");
        }
        // From the environment, as the injector sets it.
        let c = brainbox_common::config::load_from::<crate::config::SidecarConfig, _>(
            None,
            [
                (
                    "BRAINBOX_REDACT__PIPELINE__SOCKET".to_string(),
                    "/run/brainbox/logs/log.sock".to_string(),
                ),
                (
                    "BRAINBOX_REDACT__PIPELINE__SOCKET_MODE".to_string(),
                    "0666".to_string(),
                ),
            ],
        )
        .unwrap();
        let p = c.redact.pipeline.unwrap().to_pipeline("pod");
        assert_eq!(p.socket_mode, Some(0o666));
    }

    #[test]
    fn pod_in_the_subject_is_one_token() {
        let mut s = nats_section();
        s.nats.subject = "brainbox.logs.{pod}".into();
        s.validate("redact.pipeline").unwrap();
        assert_eq!(s.nats.to_sink("agent-7").subject, "brainbox.logs.agent-7");
        let sink = s.nats.to_sink("web.v2 *>");
        assert_eq!(sink.subject, "brainbox.logs.web_v2___");
        assert_eq!(sink.stream_subjects, vec![sink.subject.clone()]);
        assert_eq!(s.nats.to_sink("").subject, "brainbox.logs._");
    }
}

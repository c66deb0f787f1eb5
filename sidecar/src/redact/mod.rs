//! Log redaction for the pod: `brainbox-sidecar redact`, and the pipeline the sidecar runs.
//!
//! The engine is `brainbox-redact`; this module feeds it lines (stdin, a Unix socket, tailed
//! files) and writes the redacted lines out, one output line per input line, in order.

pub mod config;
pub mod lines;
pub mod nats;
pub mod pipeline;
pub mod tail;

use brainbox_redact::{Engine, FingerprintKey, LineRedactor, Redaction};
use std::{
    io::{BufRead, Write},
    path::PathBuf,
    sync::Arc,
};

/// Errors of the redaction pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// An I/O operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The engine could not be built (bad rules file, bad key file).
    #[error(transparent)]
    Engine(#[from] brainbox_redact::RedactError),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The redacted line as it is.
    Raw,
    /// `{"stream":N,"class":"secret","line":"…"}`: the class routes it downstream.
    Json,
}

/// Lines of one read, from one stream.
#[derive(Debug)]
pub struct Batch {
    /// Stream id (a socket connection, a file, stdin).
    pub stream: u32,
    /// The lines.
    pub lines: Vec<lines::Line>,
    /// The stream ended after these lines.
    pub end: bool,
}

/// `brainbox-sidecar redact` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RedactArgs {
    /// Directory of `kind: redact-rules` YAML files (custom rules, allowlists).
    /// Default: `[redact] rules_dir` of the configuration (`BRAINBOX_REDACT__RULES_DIR`).
    #[arg(long)]
    pub rules_dir: Option<PathBuf>,
    /// File whose content keys the fingerprints (share it between pods that should correlate).
    /// Default: `[redact] key_file` (`BRAINBOX_REDACT__KEY_FILE`); without any, a random key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Listen on this Unix socket for log lines.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Tail this file (repeatable); rotation and truncation are followed.
    #[arg(long)]
    pub tail: Vec<PathBuf>,
    /// Append output to this file instead of standard output.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,
    /// Longest line kept, bytes (the rest is dropped and counted in the line).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
}

impl RedactArgs {
    /// Fill what the command line left open from the configuration file / environment.
    pub fn with_config(mut self, cfg: &crate::config::RedactConfig) -> Self {
        if self.rules_dir.is_none() {
            self.rules_dir.clone_from(&cfg.rules_dir);
        }
        if self.key_file.is_none() {
            self.key_file.clone_from(&cfg.key_file);
        }
        self
    }
}

/// Build the engine from the arguments.
pub fn build_engine(args: &RedactArgs) -> Result<Engine, RedactError> {
    engine_from(args.rules_dir.as_deref(), args.key_file.as_deref())
}

/// Start the pipeline `[redact.pipeline]` describes, with its metrics on `registry`; `None`
/// when the section is absent. Used by `brainbox-sidecar run`.
pub async fn start_from_config(
    cfg: &crate::config::RedactConfig,
    engine: Arc<Engine>,
    pod: &str,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Option<pipeline::Pipeline>, RedactError> {
    let Some(section) = &cfg.pipeline else {
        return Ok(None);
    };
    let p = pipeline::Pipeline::start(engine.clone(), section.to_pipeline(pod)).await?;
    p.stats
        .register(registry.sub_registry_with_prefix("brainbox"));
    tracing::info!(
        socket = ?section.socket,
        tail = ?section.tail,
        output = ?section.output,
        rules = engine.rule_count(),
        "redaction pipeline running"
    );
    Ok(Some(p))
}

/// The engine `[redact]` describes (rules folder, fingerprint key), shared by the log pipeline
/// and the egress proxy's audit records so that one secret has one fingerprint in both.
pub fn engine_from_config(cfg: &crate::config::RedactConfig) -> Result<Engine, RedactError> {
    engine_from(cfg.rules_dir.as_deref(), cfg.key_file.as_deref())
}

/// Fewest bytes a fingerprint key file may hold (surrounding whitespace aside).
pub const MIN_KEY_BYTES: usize = 16;

/// The key material of a key file, refused when it is too short to be secret: whoever knows the
/// key can test guesses against a fingerprint, and the secrets behind many fingerprints (phone
/// and card numbers, short passwords) are few enough to enumerate. An empty file (a Secret
/// mounted before it was filled, `/dev/null`) would otherwise give every pod the same public
/// key without a word.
fn check_key_material(k: &[u8]) -> Result<&[u8], String> {
    let t = k.trim_ascii();
    if t.len() < MIN_KEY_BYTES {
        return Err(format!(
            "holds {} bytes of key material, fewer than {MIN_KEY_BYTES}: \
             make one with `head -c 32 /dev/urandom | base64`",
            t.len()
        ));
    }
    // The whole content is the material, as it always was: fingerprints do not change.
    Ok(k)
}

fn engine_from(
    rules_dir: Option<&std::path::Path>,
    key_file: Option<&std::path::Path>,
) -> Result<Engine, RedactError> {
    let key = if let Some(p) = key_file {
        let k =
            std::fs::read(p).map_err(|e| RedactError::Io(format!("read {}", p.display()), e))?;
        FingerprintKey::derive(check_key_material(&k).map_err(|why| {
            RedactError::Io(
                format!("fingerprint key {}", p.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, why),
            )
        })?)
    } else {
        tracing::warn!("no fingerprint key given: fingerprints correlate only within this process");
        FingerprintKey::random().map_err(|e| RedactError::Io("read /dev/urandom".into(), e))?
    };
    let mut b = Engine::builder().key(key);
    if let Some(d) = rules_dir {
        b = b.rules_dir(d)?;
    }
    Ok(b.build()?)
}

/// Write one output line (with its newline) into `out`.
pub fn format_line(
    out: &mut Vec<u8>,
    format: Format,
    stream: u32,
    r: &Redaction<'_>,
    dropped: u64,
) {
    format_line_limited(out, format, stream, r, dropped, None);
}

/// Like [`format_line`], keeping the formatted line (newline included) within `limit` bytes:
/// the redacted text is cut at a character boundary and marked `[TRUNCATED:<n> bytes]`.
/// Returns whether it cut. Only redacted text is ever cut, so a cut cannot expose a secret.
pub fn format_line_limited(
    out: &mut Vec<u8>,
    format: Format,
    stream: u32,
    r: &Redaction<'_>,
    dropped: u64,
    limit: Option<usize>,
) -> bool {
    let start = out.len();
    write_line(out, format, stream, &r.text, r.class, dropped);
    let Some(limit) = limit else { return false };
    if out.len() - start <= limit {
        return false;
    }
    // Room for the envelope and the marker; JSON escaping at most doubles the text.
    let room = limit.saturating_sub(96);
    let room = if format == Format::Json {
        room / 2
    } else {
        room
    };
    let mut cut = room.min(r.text.len());
    while !r.text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(start);
    let extra = (r.text.len() - cut) as u64;
    write_line(
        out,
        format,
        stream,
        &r.text[..cut],
        r.class,
        dropped + extra,
    );
    true
}

fn write_line(
    out: &mut Vec<u8>,
    format: Format,
    stream: u32,
    text: &str,
    class: brainbox_redact::Class,
    dropped: u64,
) {
    let mut text = std::borrow::Cow::Borrowed(text);
    if dropped > 0 {
        text = std::borrow::Cow::Owned(format!("{text} [TRUNCATED:{dropped} bytes]"));
    }
    match format {
        Format::Raw => out.extend_from_slice(text.as_bytes()),
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Envelope<'a> {
                stream: u32,
                class: &'static str,
                line: &'a str,
            }
            let env = Envelope {
                stream,
                class: class.tag(),
                line: &text,
            };
            // Serialising a struct of strings cannot fail.
            if let Ok(s) = serde_json::to_string(&env) {
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out.push(b'\n');
}

/// Redact `input` to `output` synchronously: one output line per input line, same order.
/// This is `brainbox-sidecar redact` without a socket or files.
pub fn redact_stream(
    engine: &Engine,
    input: impl BufRead,
    output: impl Write,
    format: Format,
    max_line: usize,
) -> Result<u64, RedactError> {
    let mut input = input;
    let mut out = std::io::BufWriter::with_capacity(256 << 10, output);
    let mut lr = LineRedactor::new(engine);
    let mut splitter = lines::LineSplitter::new(max_line);
    let mut lines = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    let werr = |e| RedactError::Io("write output".into(), e);
    loop {
        let chunk = input
            .fill_buf()
            .map_err(|e| RedactError::Io("read input".into(), e))?;
        let eof = chunk.is_empty();
        let len = chunk.len();
        if eof {
            splitter.finish(&mut lines);
        } else {
            splitter.push(chunk, &mut lines);
        }
        input.consume(len);
        for l in lines.drain(..) {
            let r = lr.redact(&l.bytes);
            buf.clear();
            format_line(&mut buf, format, 0, &r, l.dropped);
            out.write_all(&buf).map_err(werr)?;
            n += 1;
        }
        // Flush what is done before blocking on more input (interactive use, pipes).
        if eof || input.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
            out.flush().map_err(werr)?;
        }
        if eof {
            return Ok(n);
        }
    }
}

/// Run the subcommand: stdin → stdout when no socket or file is given, else the pipeline until
/// SIGINT/SIGTERM.
pub async fn run(args: RedactArgs) -> Result<(), RedactError> {
    let engine = Arc::new(build_engine(&args)?);
    let format = args.format;
    if args.socket.is_none() && args.tail.is_empty() {
        let max = args.max_line_bytes;
        let out_file = args.output_file.clone();
        return tokio::task::spawn_blocking(move || {
            let stdin = std::io::stdin().lock();
            match out_file {
                Some(p) => {
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .map_err(|e| RedactError::Io(format!("open {}", p.display()), e))?;
                    redact_stream(&engine, stdin, f, format, max)
                }
                None => redact_stream(&engine, stdin, std::io::stdout().lock(), format, max),
            }
            .map(|_| ())
        })
        .await
        .unwrap_or(Ok(()));
    }
    let cfg = pipeline::PipelineConfig {
        socket: args.socket.clone(),
        tail: args.tail.clone(),
        stdin: false,
        output: args
            .output_file
            .clone()
            .map_or(pipeline::Output::Stdout, pipeline::Output::File),
        format,
        max_line: args.max_line_bytes,
        ..Default::default()
    };
    let p = pipeline::Pipeline::start(engine, cfg).await?;
    tracing::info!(socket = ?args.socket, tail = ?args.tail, "redaction pipeline running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RedactError::Io("install SIGTERM handler".into(), e))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    p.shutdown().await
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn short_or_empty_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (content, ok) in [
            (&b""[..], false),
            (b"\n\n  \n", false),
            (b"run-test-key\n", false),
            (b"0123456789abcdef", true),
            (b"  an operator's long passphrase\n", true),
        ] {
            let p = dir.path().join("key");
            std::fs::write(&p, content).unwrap();
            let r = engine_from(None, Some(&p));
            assert_eq!(r.is_ok(), ok, "{content:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("fewer than 16"), "{e}");
            }
        }
    }
}

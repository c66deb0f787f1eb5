//! The redaction pipeline inside `brainbox-sidecar run`, through the real binary: configured by
//! `[redact.pipeline]`, metrics on the sidecar's `/metrics`, a bad section exits 64 naming its
//! key, and the NATS JetStream output against a private `nats-server -js`: a 1 000 000-line
//! burst through the socket arrives complete and in order, and NATS killed and restarted twice
//! mid-stream loses, duplicates and reorders nothing.

use async_nats::jetstream::{self, consumer};
use brainbox_alerts::testkit::{free_port, NatsServer};
use futures_util::StreamExt;
use std::{
    io::Write,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The sidecar process, killed when the test ends (also on failure).
struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Sidecar {
    /// SIGTERM and wait for a clean exit (the pipeline writes out what it read first).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "sidecar did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    metrics: u16,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), b"run-test-key-0123456789").unwrap();
        Setup {
            dir,
            metrics: free_port(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    /// Start `brainbox-sidecar run` with `[redact.pipeline]` = `pipeline` (plus the socket).
    fn start(&self, pipeline: &str) -> Sidecar {
        let cfg = self.dir.path().join("sidecar.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"pod_name = "redact-test"
[log]
level = "warn"
[metrics]
listen = "127.0.0.1:{m}"
[egress]
enabled = false
[redact]
key_file = "{key}"
[redact.pipeline]
socket = "{sock}"
{pipeline}
"#,
                m = self.metrics,
                key = self.dir.path().join("key").display(),
                sock = self.socket().display(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
            .args(["--config", cfg.to_str().unwrap(), "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start brainbox-sidecar");
        let s = Sidecar(child);
        wait_for(20, "the redaction socket", || self.socket().exists());
        wait_for(20, "the metrics endpoint", || self.metrics_text().is_some());
        s
    }

    fn metrics_text(&self) -> Option<String> {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("200 OK").then_some(out)
    }

    /// The value of one sample (`name{labels}` exactly as exposed), 0 when absent.
    fn metric(&self, sample: &str) -> u64 {
        let text = self.metrics_text().unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    }
}

fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvWXYZ";

/// Line `i`: every 100th carries a GitHub token.
fn line(i: u64) -> String {
    if i.is_multiple_of(100) {
        format!("line {i:07} push with {TOKEN}\n")
    } else {
        format!("line {i:07} request served in 12ms status=200\n")
    }
}

/// Write lines `0..n` into the socket from a thread (it blocks under backpressure).
fn writer(sock: &Path, n: u64) -> std::thread::JoinHandle<()> {
    let mut s = UnixStream::connect(sock).unwrap();
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(64 << 10);
        for i in 0..n {
            buf.extend_from_slice(line(i).as_bytes());
            if buf.len() > (60 << 10) {
                s.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        s.write_all(&buf).unwrap();
    })
}

/// Read every line stored on `subject` in `stream`, in stream order.
async fn read_subject(url: &str, stream: &str, subject: &str, want: u64) -> Vec<String> {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let st = js.get_stream(stream).await.unwrap();
    let c = st
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let mut lines = Vec::with_capacity(want as usize);
    let mut ids = std::collections::HashSet::new();
    while (lines.len() as u64) < want {
        let m = tokio::time::timeout(Duration::from_secs(20), msgs.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} lines on the subject", lines.len()))
            .unwrap()
            .unwrap();
        let h = m.headers.as_ref().expect("headers");
        let id = h
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap_or_else(|| panic!("no Nats-Msg-Id: {h:?}"))
            .to_string();
        assert!(ids.insert(id.clone()), "message {id} stored twice");
        let n: usize = h.get("Brainbox-Lines").unwrap().as_str().parse().unwrap();
        let text = std::str::from_utf8(&m.payload).unwrap();
        assert!(text.ends_with('\n'));
        let before = lines.len();
        lines.extend(text.lines().map(str::to_owned));
        assert_eq!(lines.len() - before, n, "Brainbox-Lines header of {id}");
    }
    // Nothing after the last expected line.
    let extra = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await;
    assert!(extra.is_err(), "more messages than lines written");
    lines
}

fn check_lines(lines: &[String], n: u64) {
    assert_eq!(lines.len() as u64, n, "line count");
    for (i, l) in lines.iter().enumerate() {
        let i = i as u64;
        let prefix = format!("line {i:07} ");
        assert!(
            l.starts_with(&prefix),
            "line {i} out of order or lost: {l:?}"
        );
        assert!(!l.contains(TOKEN), "token leaked in line {i}");
        if i.is_multiple_of(100) {
            assert!(l.contains("[REDACTED:github-token:"), "line {i}: {l}");
        }
    }
}

fn nats_pipeline(url: &str, stream: &str, subject: &str) -> String {
    format!(
        r#"output = "nats"
channel_batches = 8
[redact.pipeline.nats]
url = "{url}"
subject = "{subject}"
stream = "{stream}"
buffer_batches = 4
ack_timeout_ms = 1000
drain_timeout_ms = 20000
"#
    )
}

fn read_subject_blocking(url: &str, stream: &str, subject: &str, want: u64) -> Vec<String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(read_subject(url, stream, subject, want))
}

#[test]
fn run_nats_burst_of_one_million_lines_complete_and_in_order() {
    let nats = NatsServer::start();
    let s = Setup::new();
    let subject = "brainbox.logs.redact-test";
    let sidecar = s.start(&nats_pipeline(&nats.url(), "LOGS_BURST", subject));
    const N: u64 = 1_000_000;
    let t0 = Instant::now();
    writer(&s.socket(), N).join().unwrap();
    wait_for(120, "all lines acked by JetStream", || {
        s.metric("brainbox_redact_nats_published_lines_total") == N
    });
    eprintln!("1M lines through run → JetStream in {:?}", t0.elapsed());
    let lines = read_subject_blocking(&nats.url(), "LOGS_BURST", subject, N);
    check_lines(&lines, N);
    // The sidecar's own metrics say the same.
    assert_eq!(s.metric("brainbox_redact_lines_in_total"), N);
    assert_eq!(s.metric("brainbox_redact_lines_out_total"), N);
    assert_eq!(
        s.metric("brainbox_redact_redactions_total{kind=\"github-token\"}"),
        N / 100
    );
    let read = s.metric("brainbox_redact_read_bytes_total");
    let expect: u64 = (0..N).map(|i| line(i).len() as u64).sum();
    assert_eq!(read, expect, "bytes read");
    assert!(s.metric("brainbox_redact_written_bytes_total") > 0);
    assert_eq!(s.metric("brainbox_redact_nats_dropped_lines_total"), 0);
    assert_eq!(s.metric("brainbox_redact_nats_connected"), 1);
    assert!(sidecar.terminate().success());
}

#[test]
fn run_nats_restarts_mid_stream_lose_nothing() {
    let mut nats = NatsServer::start();
    let s = Setup::new();
    let subject = "brainbox.logs.restart";
    let sidecar = s.start(&nats_pipeline(&nats.url(), "LOGS_RESTART", subject));
    const N: u64 = 300_000;
    let w = writer(&s.socket(), N);
    let published = || s.metric("brainbox_redact_nats_published_lines_total");
    for (round, at) in [(1, N / 5), (2, N / 2)] {
        wait_for(120, "lines published before the outage", || {
            published() >= at
        });
        nats.stop();
        // Inputs keep coming while NATS is away: they must wait, not vanish.
        std::thread::sleep(Duration::from_millis(1500));
        let during = published();
        assert!(
            during < N,
            "round {round}: everything was out before the outage"
        );
        nats.restart();
        eprintln!("round {round}: NATS restarted after {during} lines were acked");
    }
    w.join().unwrap();
    wait_for(120, "all lines acked after the restarts", || {
        published() == N
    });
    let lines = read_subject_blocking(&nats.url(), "LOGS_RESTART", subject, N);
    check_lines(&lines, N);
    assert!(s.metric("brainbox_redact_nats_publish_failures_total") > 0);
    assert!(
        s.metric("brainbox_redact_backpressure_waits_total{stage=\"output\"}") > 0,
        "the outage should have filled the output buffer"
    );
    assert_eq!(s.metric("brainbox_redact_nats_dropped_lines_total"), 0);
    assert!(sidecar.terminate().success());
}

#[test]
fn run_without_the_section_has_no_pipeline_and_a_bad_section_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sidecar.toml");
    std::fs::write(
        &cfg,
        "[metrics]\nlisten = \"\"\n[egress]\nenabled = false\n[redact.pipeline]\n\
         socket = \"/tmp/never.sock\"\noutput = \"nats\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("redact.pipeline.nats.url"), "{err}");

    // A rules directory the engine cannot load is a configuration error too.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("bad.yaml"),
        "kind: redact-rules\nrules:\n- id: x\n  kind: x\n  regex: \"(\"\n",
    )
    .unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nlisten = \"\"\n[egress]\nenabled = false\n[redact]\nrules_dir = \"{}\"\n\
             [redact.pipeline]\nsocket = \"{}\"\n",
            rules.display(),
            dir.path().join("l.sock").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
}

/// Connect to `sock` as uid/gid 65534 (`nobody`), the way an agent container running as another
/// user than the sidecar does, and write `line`. `Err` carries the connect error.
fn write_as_nobody(sock: &Path, line: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX)\n\
             try:\n s.connect(sys.argv[1])\n\
             except OSError as e:\n print(e.strerror); sys.exit(3)\n\
             s.sendall(sys.argv[2].encode()+b'\\n'); s.close()",
        ])
        .arg(sock)
        .arg(line)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("python3 is needed to connect as another user (apt-get install python3)");
    match out.status.code() {
        Some(0) => Ok(()),
        Some(3) => Err(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        _ => panic!("python3: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn run_socket_mode_lets_another_user_write_and_the_umask_default_does_not() {
    use std::os::unix::fs::PermissionsExt;
    for (mode, open) in [("", false), ("socket_mode = \"0666\"\n", true)] {
        let s = Setup::new();
        // The test directory is root's (0700); the socket's own bits are what is tested.
        std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = s.dir.path().join("redacted.log");
        let sidecar = s.start(&format!(
            "{mode}output = \"file\"\noutput_file = \"{}\"\n",
            out.display()
        ));
        let bits = std::fs::metadata(s.socket()).unwrap().permissions().mode() & 0o777;
        let r = write_as_nobody(
            &s.socket(),
            "agent says token=ghp_0123456789abcdefghijABCDEFGHIJ012345",
        );
        if open {
            assert_eq!(bits, 0o666);
            r.unwrap();
            wait_for(20, "the line", || {
                s.metric("brainbox_redact_lines_out_total") >= 1
            });
            assert!(sidecar.terminate().success());
            let text = std::fs::read_to_string(&out).unwrap();
            assert!(text.starts_with("agent says token=[REDACTED:"), "{text}");
            assert!(!text.contains("ghp_0123"), "{text}");
        } else {
            assert_eq!(
                bits & 0o022,
                0,
                "umask-default socket is group/other-writable: {bits:o}"
            );
            let e = r.unwrap_err();
            assert!(e.contains("ermission denied"), "{e}");
        }
    }
}

#[test]
fn run_tails_a_file_into_an_output_file_with_metrics_and_flushes_on_sigterm() {
    let s = Setup::new();
    let log = s.dir.path().join("agent.log");
    let out = s.dir.path().join("redacted.log");
    std::fs::write(&log, "").unwrap();
    let sidecar = s.start(&format!(
        "tail = [\"{}\"]\noutput = \"file\"\noutput_file = \"{}\"\nformat = \"json\"\n",
        log.display(),
        out.display()
    ));
    // Without the section the metrics would not exist at all.
    assert!(s
        .metrics_text()
        .unwrap()
        .contains("brainbox_redact_lines_in_total"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..500 {
        writeln!(
            f,
            "{i} user alice@example.com paid with 4111 1111 1111 1111"
        )
        .unwrap();
    }
    // An unterminated last line is written out at shutdown.
    write!(f, "last {{\"password\":\"hunter2-very-secret\"}}").unwrap();
    drop(f);
    wait_for(30, "500 lines read", || {
        s.metric("brainbox_redact_lines_out_total") >= 500
    });
    assert!(sidecar.terminate().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 501, "{text}");
    for (i, l) in lines.iter().enumerate().take(500) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["class"], "pii", "{l}");
        let line = v["line"].as_str().unwrap();
        assert!(
            line.starts_with(&format!("{i} user [REDACTED:email:")),
            "{l}"
        );
        assert!(!line.contains("4111 1111"), "{l}");
    }
    assert!(!lines[500].contains("hunter2"), "{}", lines[500]);
}

#[test]
fn run_exits_when_the_redaction_output_fails() {
    // A pipeline whose output is gone must not leave the sidecar running without redaction
    // (its inputs would silently stop being read): `run` exits 1 and says why.
    let s = Setup::new();
    let mut sidecar = s.start("output = \"file\"\noutput_file = \"/dev/full\"\n");
    let mut w = UnixStream::connect(s.socket()).unwrap();
    w.write_all(b"a line that cannot be written\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = sidecar.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "sidecar kept running without an output"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
}

/// `brainbox-sidecar logwrap`, as `brainboxctl inject --wrap-stdout` runs an agent: its stdout
/// and stderr reach the sidecar's redaction through the log socket and nothing is printed; its
/// exit status is logwrap's; SIGTERM reaches it; and without the socket the command is not run
/// at all (its output would leave the pod unredacted).
#[test]
fn logwrap_sends_a_commands_output_through_the_socket_and_keeps_its_status() {
    let s = Setup::new();
    let out = s.dir.path().join("redacted.log");
    let sidecar = s.start(&format!(
        "output = \"file\"\noutput_file = \"{}\"\n",
        out.display()
    ));
    let wrap = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"));
        c.args(["logwrap", "--socket"])
            .arg(s.socket())
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let o = wrap(&[
        "sh",
        "-c",
        "echo 'cloning with token=ghp_0123456789abcdefghijABCDEFGHIJ012345'; \
         echo 'to stderr' >&2; printf 'no newline'; exit 3",
    ])
    .output()
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout.is_empty(),
        "printed: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    wait_for(20, "three lines", || {
        s.metric("brainbox_redact_lines_out_total") >= 3
    });

    // SIGTERM is forwarded; the child's answer and status come back.
    let mut child = wrap(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    ])
    .spawn()
    .unwrap();
    wait_for(20, "ready", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("ready"))
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    wait_for(20, "the trap's line", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("got TERM"))
    });
    assert!(sidecar.terminate().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"to stderr") && lines.contains(&"no newline"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cloning with token=[REDACTED:")),
        "{text}"
    );
    assert!(!text.contains("ghp_0123"), "{text}");

    // No socket: the command does not run.
    let marker = s.dir.path().join("ran");
    let o = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
        .args(["logwrap", "--socket"])
        .arg(s.dir.path().join("absent.sock"))
        .args(["--", "touch"])
        .arg(&marker)
        .env("BRAINBOX_LOGWRAP_CONNECT_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not starting"));
    assert!(!marker.exists(), "the command ran without the socket");
}

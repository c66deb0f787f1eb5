//! The redaction pipeline end to end: the CLI keeps one output line per input line in order;
//! a burst of 1 M lines through the Unix socket loses, reorders and duplicates nothing; a tailed
//! file is followed across rotation and truncation.

use brainbox_redact::{Engine, FingerprintKey};
use brainbox_sidecar::redact::{
    pipeline::{Output, Pipeline, PipelineConfig},
    Format,
};
use std::{
    io::{BufRead, Write},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

fn engine() -> Arc<Engine> {
    Arc::new(
        Engine::builder()
            .key(FingerprintKey::derive(b"pipeline-test"))
            .build()
            .unwrap(),
    )
}

/// Wait until `f` holds, or fail after `secs`.
async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cli_one_line_out_per_line_in() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, b"pipeline-test-key-0123456789").unwrap();
    let mut input = Vec::new();
    for i in 0..2000 {
        match i % 5 {
            0 => writeln!(
                input,
                "{i} token ghp_0123456789abcdefghijklmnopqrstuv{:04}",
                i % 10000
            )
            .unwrap(),
            1 => writeln!(input, "{i} {{\"password\":\"hunter{i}\",\"ok\":true}}").unwrap(),
            2 => input.extend_from_slice(format!("{i} bin \x00\x1b[31m\n").as_bytes()),
            3 => writeln!(input, "{i} -----BEGIN PRIVATE KEY-----").unwrap(),
            _ => writeln!(input, "{i} plain line").unwrap(),
        }
    }
    input.extend_from_slice(b"\xff\xfe raw bytes\n");
    input.extend_from_slice(b"last line without newline ghp_0123456789abcdefghijklmnopqrstuvwxyz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
        .args(["redact", "--key-file"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2002);
    for (i, l) in lines.iter().take(2000).enumerate() {
        assert!(l.starts_with(&format!("{i} ")), "line {i}: {l}");
        assert!(!l.contains("ghp_0123"), "{l}");
        assert!(!l.contains("hunter"), "{l}");
        assert!(!l.bytes().any(|b| b < 0x20 && b != b'\t'), "{l:?}");
    }
    assert_eq!(lines[2000], "\\xff\\xfe raw bytes");
    assert!(lines[2001].contains("[REDACTED:github-token:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_burst_of_one_million_lines() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("logs.sock");
    let out = dir.path().join("out.log");
    let p = Pipeline::start(
        engine(),
        PipelineConfig {
            socket: Some(sock.clone()),
            output: Output::File(out.clone()),
            format: Format::Raw,
            channel_batches: 8, // small, so backpressure is exercised
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sock2 = sock.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut s = std::io::BufWriter::with_capacity(
            1 << 16,
            std::os::unix::net::UnixStream::connect(&sock2).unwrap(),
        );
        for i in 0..N {
            if i % 1000 == 0 {
                writeln!(s, "{i} {{\"msg\":\"login\",\"password\":\"pw{i}\"}}").unwrap();
            } else {
                writeln!(s, "{i} request ok").unwrap();
            }
        }
        s.flush().unwrap();
    });
    writer.await.unwrap();
    let stats = p.stats.clone();
    wait_for(300, "1M lines out", || stats.lines_out.get() >= N as u64).await;
    p.shutdown().await.unwrap();
    let f = std::fs::File::open(&out).unwrap();
    let mut n = 0usize;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.unwrap();
        let (num, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            num.parse::<usize>().unwrap(),
            n,
            "order/duplicates at line {n}"
        );
        if n.is_multiple_of(1000) {
            assert!(rest.contains("[REDACTED:password:"), "{line}");
            assert!(!rest.contains(&format!("pw{n}")));
        }
        n += 1;
    }
    assert_eq!(n, N, "lines lost");
    assert!(!sock.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailed_file_across_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let out = dir.path().join("out.log");
    std::fs::write(&log, b"").unwrap();
    let p = Pipeline::start(
        engine(),
        PipelineConfig {
            tail: vec![log.clone()],
            output: Output::File(out.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let append = |from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap();
        for i in from..to {
            writeln!(f, "{i} key=AKIAQ3EGRO4KXH2WQ7NM user {i}").unwrap();
        }
    };
    append(0, 500);
    wait_for(30, "first 500", || read_lines(&out).len() >= 500).await;
    // Rotation: rename away, write a bit more to the old file, then a new file.
    let old_path = dir.path().join("agent.log.1");
    std::fs::rename(&log, &old_path).unwrap();
    {
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&old_path)
            .unwrap();
        for i in 500..510 {
            writeln!(old, "{i} key=AKIAQ3EGRO4KXH2WQ7NM user {i}").unwrap();
        }
    }
    append(510, 1000);
    wait_for(30, "1000 after rotation", || read_lines(&out).len() >= 1000).await;
    // Truncation in place (copytruncate), then more lines.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(1000, 1100);
    wait_for(30, "1100 after truncation", || {
        read_lines(&out).len() >= 1100
    })
    .await;
    p.shutdown().await.unwrap();
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 1100);
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("{i} key=[REDACTED:aws-access-key-id:")),
            "{i}: {l}"
        );
    }
}

/// Past `max_connections` the socket holds writers back in its backlog instead of reading them
/// all: each connection costs a read buffer and up to a line, so without the bound an agent
/// opening thousands of connections could run its sidecar out of memory. Held-back writers
/// are served, in full, as others close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_connections_past_the_limit_wait_and_are_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("logs.sock");
    let out = dir.path().join("out.log");
    let p = Pipeline::start(
        engine(),
        PipelineConfig {
            socket: Some(sock.clone()),
            output: Output::File(out.clone()),
            format: Format::Raw,
            max_connections: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stats = p.stats.clone();
    let mut conns = Vec::new();
    for i in 0..4 {
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        writeln!(
            c,
            "writer {i} token=ghp_0123456789abcdefghijABCDEFGHIJ01234{i}"
        )
        .unwrap();
        conns.push(c);
    }
    wait_for(20, "two writers served", || stats.lines_out.get() >= 2).await;
    assert_eq!(stats.connections.get(), 2);
    wait_for(20, "a writer held back", || {
        stats.connections_waited.get() >= 1
    })
    .await;
    // The other two are in the backlog: nothing of theirs is read while the first two stay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.lines_in.get(), 2);
    drop(conns.remove(0));
    wait_for(20, "a third writer served", || stats.lines_out.get() >= 3).await;
    conns.clear();
    wait_for(20, "all four served", || stats.lines_out.get() >= 4).await;
    wait_for(20, "no connection left", || stats.connections.get() == 0).await;
    p.shutdown().await.unwrap();
    let mut lines = read_lines(&out);
    lines.sort();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("writer {i} token=[REDACTED:")),
            "{l}"
        );
    }
}

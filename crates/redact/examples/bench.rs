//! Redaction benchmark: our engine (one core) against ripgrep searching the same patterns and
//! against detect-secrets, on the same generated corpus, in one run.
//!
//! `cargo run --release -p brainbox-redact --example bench -- [--out bench/results/redact.json]
//!  [--mib 64] [--detect-secrets /opt/brainbox/venv-bench/bin/detect-secrets] [--ds-mib 2]
//!  [--hs target/hs_ref]`

use brainbox_redact::{corpus, rules, Engine, FingerprintKey};
use std::{
    io::Write,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

struct Args {
    out: PathBuf,
    mib: usize,
    ds: PathBuf,
    ds_mib: usize,
    rg: PathBuf,
    /// The Hyperscan reference (`bench/redact/hs_ref.c`, built by `run.sh`).
    hs: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        out: "bench/results/redact.json".into(),
        mib: 64,
        ds: "/opt/brainbox/venv-bench/bin/detect-secrets".into(),
        ds_mib: 2,
        rg: "rg".into(),
        hs: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        match v[i].as_str() {
            "--out" => a.out = v[i + 1].clone().into(),
            "--mib" => a.mib = v[i + 1].parse().expect("--mib N"),
            "--detect-secrets" => a.ds = v[i + 1].clone().into(),
            "--ds-mib" => a.ds_mib = v[i + 1].parse().expect("--ds-mib N"),
            "--rg" => a.rg = v[i + 1].clone().into(),
            "--hs" => a.hs = Some(v[i + 1].clone().into()),
            o => panic!("unknown argument {o}"),
        }
        i += 2;
    }
    a
}

/// Clean lines repeated up to `mib` MiB; and a "mixed" variant with 1% secret lines.
fn build(mib: usize, secret_every: usize) -> Vec<u8> {
    let clean = corpus::clean_lines(42, 20_000);
    let secrets = corpus::secret_lines(43, 5);
    let mut buf = Vec::with_capacity(mib << 20);
    let mut i = 0usize;
    while buf.len() < mib << 20 {
        if secret_every > 0 && i.is_multiple_of(secret_every) {
            buf.extend_from_slice(secrets[(i / secret_every) % secrets.len()].line.as_bytes());
        } else {
            buf.extend_from_slice(clean[i % clean.len()].as_bytes());
        }
        buf.push(b'\n');
        i += 1;
    }
    buf
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// CPU seconds (user + system) of this thread, and of the waited-for children of this process.
/// The benchmark machine is shared, so CPU time, not wall time, is what compares fairly.
fn cpu_times() -> (f64, f64) {
    let field = |path: &str, idx: &[usize]| -> f64 {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        let Some(p) = s.rfind(')') else { return 0.0 };
        let f: Vec<&str> = s[p + 2..].split(' ').collect();
        // Fields after the command name start at field 3 (state): utime=14, stime=15,
        // cutime=16, cstime=17 in proc(5) numbering.
        idx.iter()
            .map(|i| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
            / 100.0
    };
    (
        field("/proc/thread-self/stat", &[14, 15]),
        field("/proc/self/stat", &[16, 17]),
    )
}

fn ours(e: &Engine, data: &[u8]) -> (f64, usize) {
    // Best of three runs, each repeating the corpus until it used ≥ 0.5 s of CPU: the CPU
    // clock ticks in 10 ms, so one pass over a few MiB would be measured to ±10 %.
    let mut best = 0.0f64;
    let mut changed = 0;
    for _ in 0..3 {
        let t = cpu_times().0;
        let mut bytes = 0usize;
        loop {
            changed = 0;
            let mut lr = brainbox_redact::LineRedactor::new(e);
            // Lines found with memchr, as the sidecar's line reader does.
            let mut at = 0;
            while at < data.len() {
                let end = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |p| at + p);
                let r = lr.redact(&data[at..end]);
                changed += usize::from(r.changed());
                std::hint::black_box(&r);
                at = end + 1;
            }
            bytes += data.len();
            if cpu_times().0 - t >= 0.5 {
                break;
            }
        }
        let d = (cpu_times().0 - t).max(0.01);
        best = best.max(mib_s(bytes, Duration::from_secs_f64(d)));
    }
    (best, changed)
}

/// MiB/s of CPU time of `pass` over `len` bytes: best of three runs of ≥ 0.5 s each.
fn rate(len: usize, mut pass: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = cpu_times().0;
        let mut bytes = 0usize;
        loop {
            pass();
            bytes += len;
            if cpu_times().0 - t >= 0.5 {
                break;
            }
        }
        best = best.max(mib_s(
            bytes,
            Duration::from_secs_f64((cpu_times().0 - t).max(0.01)),
        ));
    }
    best
}

/// The parts of our clean path, each alone over the clean corpus's lines: the byte pass, the
/// keyword pass, both with the rules they open, and the full path on the lines that open no
/// rule. These say where the time goes (docs/benchmarks.md).
fn parts(e: &Engine, data: &[u8]) -> [(&'static str, f64); 4] {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let quiet: Vec<&[u8]> = lines
        .iter()
        .copied()
        .filter(|l| e.debug_fired(l).is_empty())
        .collect();
    let quiet_len: usize = quiet.iter().map(|l| l.len() + 1).sum();
    let pass = |what: u8| {
        rate(data.len(), || {
            for l in &lines {
                std::hint::black_box(e.debug_prefilter(l, what));
            }
        })
    };
    [
        ("byte_pass", pass(0)),
        ("keyword_pass", pass(1)),
        ("prefilters", pass(2)),
        (
            "lines_opening_no_rule",
            rate(quiet_len, || {
                for l in &quiet {
                    std::hint::black_box(e.redact_line(l));
                }
            }),
        ),
    ]
}

/// Run a child; its CPU time (user + system).
fn run_timed(cmd: &mut Command) -> Option<Duration> {
    let t = cpu_times().1;
    let w = Instant::now();
    let out = cmd.output().ok()?;
    let d = Duration::from_secs_f64((cpu_times().1 - t).max(0.01));
    eprintln!(
        "  {:?}: cpu {:.2}s wall {:.2}s",
        cmd.get_program(),
        d.as_secs_f64(),
        w.elapsed().as_secs_f64()
    );
    // rg exits 1 when nothing matched; that is a valid run.
    if !(out.status.success() || out.status.code() == Some(1)) {
        eprintln!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(d)
}

fn main() {
    let a = args();
    let e = Engine::builder()
        .key(FingerprintKey::derive(b"bench"))
        .build()
        .expect("engine");
    let clean = build(a.mib, 0);
    let mixed = build(a.mib, 100);
    let (ours_clean, _) = ours(&e, &clean);
    let (ours_mixed, mixed_changed) = ours(&e, &mixed);
    eprintln!("ours: clean {ours_clean:.0} MiB/s, mixed {ours_mixed:.0} MiB/s ({mixed_changed} lines changed)");

    let dir = tempdir();
    let clean_path = dir.join("clean.log");
    let mixed_path = dir.join("mixed.log");
    std::fs::write(&clean_path, &clean).expect("write corpus");
    std::fs::write(&mixed_path, &mixed).expect("write corpus");
    // The same regexes, one per line, for `rg -f`.
    let pats: Vec<String> = rules::BUILTIN
        .iter()
        .map(|s| rules::pattern_source(&s.pattern).0)
        .collect();
    let pat_path = dir.join("patterns.txt");
    std::fs::write(&pat_path, pats.join("\n") + "\n").expect("write patterns");
    let rg = |file: &PathBuf, len: usize| -> Option<f64> {
        let mut best: Option<Duration> = None;
        for _ in 0..3 {
            let d = run_timed(
                Command::new(&a.rg)
                    .args(["--no-unicode", "-j1", "-c", "--no-config", "-f"])
                    .arg(&pat_path)
                    .arg(file),
            )?;
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        best.map(|d| mib_s(len, d))
    };
    let rg_clean = rg(&clean_path, clean.len());
    let rg_mixed = rg(&mixed_path, mixed.len());
    eprintln!("ripgrep: clean {rg_clean:?} MiB/s, mixed {rg_mixed:?} MiB/s");

    // detect-secrets is slow: a smaller slice of the mixed corpus.
    let slice_len = (a.ds_mib << 20).min(mixed.len());
    let cut = mixed[..slice_len]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(slice_len, |p| p + 1);
    let ds_path = dir.join("slice.log");
    std::fs::write(&ds_path, &mixed[..cut]).expect("write slice");
    let ds = if a.ds.exists() {
        run_timed(
            Command::new(&a.ds)
                .args(["scan", "--all-files"])
                .arg(&ds_path)
                .stdout(std::process::Stdio::null()),
        )
        .map(|d| mib_s(cut, d))
    } else {
        eprintln!("detect-secrets not found at {}", a.ds.display());
        None
    };
    eprintln!("detect-secrets: {ds:?} MiB/s on {} KiB", cut >> 10);
    let (ours_slice, _) = ours(&e, &mixed[..cut]);

    let parts = parts(&e, &clean);
    eprintln!("ours, parts (clean): {parts:?}");
    // Hyperscan on the same keywords and regexes, the same clean corpus.
    let hs = a.hs.as_ref().and_then(|hs| {
        let kw_path = dir.join("keywords.txt");
        std::fs::write(&kw_path, e.debug_keywords().join("\n") + "\n").expect("write keywords");
        let out = Command::new(hs)
            .arg(&kw_path)
            .arg(&pat_path)
            .arg(&clean_path)
            .output()
            .ok()?;
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            eprintln!("{} failed", hs.display());
            return None;
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    });
    eprintln!("hyperscan: {hs:?}");

    let r1 = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    let mut json = serde_json::json!({
        "ours_mib_s": r1(Some(ours_clean)),
        "ripgrep_mib_s": r1(rg_clean),
        "detect_secrets_mib_s": r1(ds),
        "rules": e.rule_count(),
        "corpus_mib": a.mib,
        "ours_mixed_mib_s": r1(Some(ours_mixed)),
        "ripgrep_mixed_mib_s": r1(rg_mixed),
        "ours_detect_secrets_slice_mib_s": r1(Some(ours_slice)),
        "detect_secrets_slice_kib": cut >> 10,
        "ratio_vs_ripgrep": rg_clean.map(|r| (ours_clean / r * 100.0).round() / 100.0),
        "ratio_vs_detect_secrets": ds.map(|d| (ours_slice / d * 10.0).round() / 10.0),
        "ours_parts_clean_mib_s": parts
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(r1(Some(*v)))))
            .collect::<serde_json::Map<_, _>>(),
        "hyperscan": hs,
        "notes": "MiB/s of CPU time (user+system; the machine is shared, wall time is noise); ours: one thread, full redaction (redacted lines built in memory, not written), lines split with memchr; ours_parts_clean_mib_s: each part of our clean path alone; ripgrep: search only (-c, -j1, --no-unicode) with the built-in rules' regexes; hyperscan: search only, our keyword set as caseless literals and our regexes in prefilter mode, per line and as one buffer, clean corpus; clean = generated clean log lines, mixed = 1% secret lines; detect-secrets scan on a slice of mixed",
    });
    if json["hyperscan"].is_null() {
        json.as_object_mut().expect("object").remove("hyperscan");
    }
    let json = serde_json::to_string_pretty(&json).expect("json") + "\n";
    if let Some(p) = a.out.parent() {
        std::fs::create_dir_all(p).expect("results dir");
    }
    std::fs::File::create(&a.out)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .expect("write results");
    print!("{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainbox-redact-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

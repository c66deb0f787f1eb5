//! `brainbox-load`: a syscall load generator for the sensor benchmarks. Built static (musl) and
//! mounted read-only into lab containers, like `brainbox-attack`.
//!
//! brainbox-load openat --ops N [--threads T] [--rate R] [--file PATH]
//!
//! Creates PATH (default `/tmp/brainbox-load.<pid>`, a tmpfs in lab containers), then issues N
//! `openat(AT_FDCWD, PATH, O_RDONLY|O_CLOEXEC)` + `close` pairs split over T threads, flat out or
//! paced at R pairs per second in total. `openat` is a watched syscall (one sensor event each);
//! `close` is not. Prints one JSON line: the ops done, failures, elapsed seconds and ops/s.

use nix::{
    fcntl::{openat, OFlag},
    sys::stat::Mode,
    unistd::close,
};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

struct Opts {
    ops: u64,
    threads: u64,
    rate: Option<f64>,
    file: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: brainbox-load openat --ops N [--threads T] [--rate OPS_PER_SEC] [--file PATH]"
    );
    std::process::exit(2);
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("openat") {
        usage();
    }
    let mut o = Opts {
        ops: 0,
        threads: 1,
        rate: None,
        file: PathBuf::from(format!("/tmp/brainbox-load.{}", std::process::id())),
    };
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { usage() };
        match flag.as_str() {
            "--ops" => o.ops = value.parse().unwrap_or_else(|_| usage()),
            "--threads" => o.threads = value.parse().unwrap_or_else(|_| usage()),
            "--rate" => o.rate = Some(value.parse().unwrap_or_else(|_| usage())),
            "--file" => o.file = PathBuf::from(value),
            _ => usage(),
        }
    }
    if o.ops == 0 || o.threads == 0 || o.rate.is_some_and(|r| r <= 0.0) {
        usage();
    }
    o
}

/// Pacing granularity: a thread checks the clock every this many ops.
const BATCH: u64 = 256;

/// Runs `ops` open/close pairs, paced at `rate` per second if given; returns the failures.
fn worker(file: &std::path::Path, ops: u64, rate: Option<f64>, start: Instant) -> u64 {
    let mut failed = 0;
    let mut done = 0;
    while done < ops {
        let n = BATCH.min(ops - done);
        for _ in 0..n {
            // openat(2) itself: std's File::open is open(2) on musl/x86_64, another syscall.
            match openat(
                None,
                file,
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    if close(fd).is_err() {
                        failed += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        done += n;
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(done as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    failed
}

fn main() {
    let o = parse();
    if let Err(e) = std::fs::write(&o.file, b"brainbox-load\n") {
        eprintln!("creating {}: {e}", o.file.display());
        std::process::exit(1);
    }
    let per_thread_rate = o.rate.map(|r| r / o.threads as f64);
    let start = Instant::now();
    let handles: Vec<_> = (0..o.threads)
        .map(|i| {
            // Spread the remainder over the first threads so the total is exactly `ops`.
            let ops = o.ops / o.threads + u64::from(i < o.ops % o.threads);
            let file = o.file.clone();
            std::thread::spawn(move || worker(&file, ops, per_thread_rate, start))
        })
        .collect();
    let failed: u64 = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(u64::MAX))
        .sum();
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&o.file);
    println!(
        "{}",
        serde_json::json!({
            "syscall": "openat",
            "ops": o.ops,
            "failed": failed,
            "threads": o.threads,
            "target_rate": o.rate,
            "elapsed_secs": elapsed,
            "ops_per_sec": o.ops as f64 / elapsed,
        })
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

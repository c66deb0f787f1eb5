#!/usr/bin/env bash
# The sensor benchmarks of issue #4: throughput (events generated vs counted vs read, drops,
# agent CPU and RSS at >= 300k watched syscalls/s) and overhead (an openat/close loop with the
# agent not running / running, watched and unwatched containers). Needs root, Docker, eBPF.
# Writes bench/results/sensor.json and prints a table. Extra arguments go to the bench binary
# (e.g. --ops 1000000 --ring-mib 32 --rounds 3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench/results/sensor.json"

cleanup() {
    # Containers the bench created (also when it was killed), and its agent if it outlived it.
    if [[ -n "${BENCH_PID:-}" ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
        # Its node agent first (a killed bench does not run its destructors), then the bench.
        pkill -TERM -P "$BENCH_PID" 2>/dev/null || true
        kill "$BENCH_PID" 2>/dev/null || true
    fi
    local ids
    ids="$(docker ps -aq --filter label=brainbox.io/lab --filter name=bench-watched --filter name=bench-unwatched 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        docker rm -f -v $ids >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

echo "== building release binaries"
nice -n 10 cargo build --release -q -p brainbox-node-agent -p brainbox-lab --bin brainbox-node-agent --bin brainbox-sensor-bench
nice -n 10 cargo build --release -q -p brainbox-lab --bin brainbox-load --target x86_64-unknown-linux-musl

echo "== running (about 4 minutes: every attach mode)"
"$ROOT/target/release/brainbox-sensor-bench" --out "$OUT" "$@" >/dev/null &
BENCH_PID=$!
wait "$BENCH_PID"
BENCH_PID=

python3 - "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = r["overhead"]
print(f"\nhost: {r['host_cpus']} CPUs, load average at start {r.get('host_loadavg_at_start', '?')}, at end {r['host_loadavg_at_end']}, kernel {r['kernel']}")
for mode in r["attach_modes"]:
    t = r["throughput"][mode]
    print(f"\nthroughput, attach={mode} (watched container, openat paced)")
    rows = [
        ("ring buffer", f"{t['ring_buffer_bytes'] // (1024*1024)} MiB"),
        ("target rate", f"{t['target_rate_ops_per_sec']:,} openat/s ({t['generator_threads']} threads)"),
        ("achieved rate, no agent", f"{t['baseline_no_agent_rate_ops_per_sec']:,.0f} openat/s (baseline, same settings)"),
        ("achieved rate, agent running", f"{t['achieved_rate_ops_per_sec']:,.0f} openat/s (x{t['achieved_over_baseline_ratio']:.2f} of baseline)"),
        ("generated", f"{t['generated_openat']:,}"),
        ("kernel openat events", f"{t['kernel_openat_events']:,.0f} ({t['kernel_openat_minus_generated']:+,.0f} vs generated)"),
        ("kernel events, all syscalls", f"{t['kernel_syscall_events']:,.0f}"),
        ("kernel drops, all syscalls", f"{t['kernel_syscall_drops']:,.0f}"),
        ("read by user space", f"{t['user_events_read']:,.0f}"),
        ("processed (rules evaluated)", f"{t['user_events_processed']:,.0f}"),
        ("agent CPU during load", f"{t['agent_cpu_cores_during_load']:.2f} cores"),
        ("agent CPU per event", f"{t['agent_cpu_us_per_event']:.2f} us"),
        ("agent peak RSS (VmHWM)", f"{t['agent_peak_rss_mib']:.1f} MiB (anon {t['agent_rss_anon_mib']:.1f}, file {t['agent_rss_file_mib']:.1f}, shmem {t['agent_rss_shmem_mib']:.1f}); PSS {t.get('agent_pss_mib', 0):.1f} MiB"),
        ("goal >= 300k/s", "met" if t["goal_rate_met"] else "NOT met"),
        ("goal zero drops", "met" if t["goal_zero_drops_met"] else "NOT met"),
        ("goal RSS <= 48 MiB", "met" if t["goal_rss_48mib_met"] else "NOT met"),
    ]
    for k, v in rows:
        print(f"  {k:<30} {v}")
print(f"\noverhead (openat/close loop, {o['ops_per_run']:,} ops per run, median of {o['rounds']} alternating rounds)")
print(f"  {'case':<44} {'ops/s':>12} {'vs no agent':>12}")
print(f"  {'watched, no agent (baseline)':<44} {o['median_no_agent_ops_per_sec']:>12,.0f} {1.0:>12.3f}")
for mode in r["attach_modes"]:
    m = o[mode]
    print(f"  {'watched, agent running, attach=' + mode:<44} {m['median_agent_watched_ops_per_sec']:>12,.0f} {m['watched_over_baseline_ratio']:>12.3f}")
    print(f"  {'unwatched, agent running, attach=' + mode:<44} {m['median_agent_unwatched_ops_per_sec']:>12,.0f} {m['unwatched_over_baseline_ratio']:>12.3f}")
for mode in r["attach_modes"]:
    m = o[mode]
    print(f"  goal <= 3% slower, attach={mode}: watched {'met' if m['goal_3pct_watched_met'] else 'NOT met'} ({m['watched_slowdown_pct']:.1f}%), "
          f"unwatched {'met' if m['goal_3pct_unwatched_met'] else 'NOT met'} ({m['unwatched_slowdown_pct']:.1f}%)")
print(f"\nwritten: {sys.argv[1]}")
PY

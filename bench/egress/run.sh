#!/usr/bin/env bash
# Egress proxy benchmark, in one go on loopback: the same nginx upstream and the same clients for
# direct, brainbox-sidecar's egress proxy, Squid and tinyproxy (both from Debian).
#   plain HTTP (absolute-form, keep-alive): wrk, 2 threads, 32 connections, 10 s
#   CONNECT tunnels with keep-alive requests inside: egress_load, 32 connections, 10 s
#   latency at a fixed 1k req/s: egress_load --rate 1000 (direct vs sidecar)
#   sidecar RSS idle (after start) and under load (peak, VmHWM, after all its runs)
# A reference row, not a competitor: nginx itself as a keep-alive reverse proxy to the same
# upstream (no policy, no audit, absolute-form requests). It does the same four loopback socket
# operations per request as any forward proxy, so it shows what this machine allows a proxy.
# Writes bench/results/proxy.json and bench/results/proxy.md (the table for docs/benchmarks.md).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECS="${SECS:-10}"
LAT_ROUNDS="${LAT_ROUNDS:-3}"
CONNS=32
UP_PORT=18080; SIDECAR_PORT=15001; SQUID_PORT=13128; TINY_PORT=18888; RP_PORT=15002
W="$(mktemp -d /tmp/bb-egress-bench.XXXXXX)"
chmod 777 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
for t in nginx wrk squid tinyproxy python3; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.d/egress.packages)" >&2; exit 1; }
done

echo "building release binaries..." >&2
(cd "$ROOT" && nice -n 10 cargo build --release -q -p brainbox-sidecar --bin brainbox-sidecar --example egress_load)
SIDECAR="$ROOT/target/release/brainbox-sidecar"
LOAD="$ROOT/target/release/examples/egress_load"

# --- upstream: nginx, a 13-byte body, keep-alive without a request cap
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<NGX
worker_processes auto;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type text/plain; return 200 "hello, agent\n"; }
  }
}
NGX
nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!)
cat > "$W/nginx/rp.conf" <<NGX
worker_processes auto;
pid $W/nginx/rp.pid;
error_log $W/nginx/rp-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$RP_PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGX
nginx -c "$W/nginx/rp.conf" -g 'daemon off;' & PIDS+=($!)

# --- brainbox-sidecar: a policy that names the upstream's literal IP and port
mkdir -p "$W/policy"
cat > "$W/policy/bench.yaml" <<POL
kind: egress-policy
name: bench
spiffe_ids: ["spiffe://brainbox.local/ns/bench/*"]
rules:
  - host: 127.0.0.1
    ports: [$UP_PORT]
    tunnel: tcp
POL
cat > "$W/sidecar.toml" <<CFG
pod_name = "bench"
[log]
level = "warn"
[metrics]
listen = ""
[egress]
listen = "127.0.0.1:$SIDECAR_PORT"
spiffe_id = "spiffe://brainbox.local/ns/bench/sa/agent"
policy_dir = "$W/policy"
audit_log = "$W/audit.jsonl"
CFG
"$SIDECAR" --config "$W/sidecar.toml" run >"$W/sidecar.out" 2>&1 & SIDECAR_PID=$!; PIDS+=($SIDECAR_PID)

# --- Squid (Debian), no cache, no logs
cat > "$W/squid.conf" <<SQ
http_port 127.0.0.1:$SQUID_PORT
acl bench_ports port $UP_PORT
acl CONNECT method CONNECT
http_access allow localhost
http_access deny all
cache deny all
access_log none
cache_log $W/squid-cache.log
pid_filename $W/squid.pid
coredump_dir $W
workers 1
SQ
squid -N -f "$W/squid.conf" >"$W/squid.out" 2>&1 & PIDS+=($!)

# --- tinyproxy (Debian)
cat > "$W/tinyproxy.conf" <<TP
Port $TINY_PORT
Listen 127.0.0.1
Timeout 600
MaxClients 256
LogLevel Critical
PidFile "$W/tinyproxy.pid"
User nobody
Group nogroup
TP
tinyproxy -d -c "$W/tinyproxy.conf" >"$W/tinyproxy.out" 2>&1 & PIDS+=($!)

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
for p in $UP_PORT $SIDECAR_PORT $SQUID_PORT $TINY_PORT $RP_PORT; do wait_port "$p"; done
sleep 1
rss_kib() { awk -v k="$2" '$1==k {print $2}' "/proc/$1/status"; }
IDLE_KIB=$(rss_kib "$SIDECAR_PID" VmRSS:)

cat > "$W/proxy.lua" <<LUA
wrk.path = "http://127.0.0.1:$UP_PORT/"
wrk.headers["Host"] = "127.0.0.1:$UP_PORT"
LUA
# wrk: requests/s and p50/p99 in ms
run_wrk() { # url [script]
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t2 -c$CONNS -d"${SECS}s" --latency -s "$2" "$1"); else out=$(wrk -t2 -c$CONNS -d"${SECS}s" --latency "$1"); fi
  echo "$out" >&2
  python3 - "$out" <<'PY'
import re, sys, json
out = sys.argv[1]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v); x = float(m.group(1))
    return {"us": x / 1000, "ms": x, "s": x * 1000}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
print(json.dumps({"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(errs.group(1)) if errs else 0, "socket_errors": sock.group(1) if sock else ""}))
PY
}
load() { "$LOAD" --target 127.0.0.1:$UP_PORT --conns $CONNS --secs "$SECS" "$@"; }

echo "== plain HTTP (wrk)" >&2
H_DIRECT=$(run_wrk "http://127.0.0.1:$UP_PORT/"); sleep 1
H_SIDECAR=$(run_wrk "http://127.0.0.1:$SIDECAR_PORT/" "$W/proxy.lua"); sleep 1
H_SQUID=$(run_wrk "http://127.0.0.1:$SQUID_PORT/" "$W/proxy.lua"); sleep 1
H_TINY=$(run_wrk "http://127.0.0.1:$TINY_PORT/" "$W/proxy.lua"); sleep 1
H_RP=$(run_wrk "http://127.0.0.1:$RP_PORT/" "$W/proxy.lua"); sleep 1
echo "== CONNECT tunnels (egress_load)" >&2
C_DIRECT=$(load --mode direct); echo "$C_DIRECT" >&2; sleep 1
C_SIDECAR=$(load --mode connect --proxy 127.0.0.1:$SIDECAR_PORT); echo "$C_SIDECAR" >&2; sleep 1
C_SQUID=$(load --mode connect --proxy 127.0.0.1:$SQUID_PORT); echo "$C_SQUID" >&2; sleep 1
C_TINY=$(load --mode connect --proxy 127.0.0.1:$TINY_PORT); echo "$C_TINY" >&2; sleep 1
echo "== latency at 1k req/s (egress_load --rate 1000, 8 connections; $LAT_ROUNDS alternating rounds, medians)" >&2
lat() { "$LOAD" --target 127.0.0.1:$UP_PORT --conns 8 --secs "$SECS" --rate 1000 "$@"; }
: >"$W/lat-direct"; : >"$W/lat-sidecar"; : >"$W/lat-rp"
for _ in $(seq "$LAT_ROUNDS"); do
  lat --mode direct | tee -a "$W/lat-direct" >&2
  lat --mode absolute --proxy 127.0.0.1:$SIDECAR_PORT | tee -a "$W/lat-sidecar" >&2
  lat --mode absolute --proxy 127.0.0.1:$RP_PORT | tee -a "$W/lat-rp" >&2
done
median_json() { python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
m = dict(runs[0]); m["rounds"] = len(runs)
for k in ("rps", "p50_ms", "p99_ms"):
    m[k] = round(statistics.median(r[k] for r in runs), 3)
m["requests"] = sum(r["requests"] for r in runs); m["errors"] = sum(r["errors"] for r in runs)
print(json.dumps(m))' "$1"; }
L_DIRECT=$(median_json "$W/lat-direct"); L_SIDECAR=$(median_json "$W/lat-sidecar"); L_RP=$(median_json "$W/lat-rp")
LOAD_KIB=$(rss_kib "$SIDECAR_PID" VmHWM:)
AUDIT_LINES=$(wc -l < "$W/audit.jsonl")

python3 - "$ROOT" "$IDLE_KIB" "$LOAD_KIB" "$AUDIT_LINES" "$H_DIRECT" "$H_SIDECAR" "$H_SQUID" "$H_TINY" \
  "$C_DIRECT" "$C_SIDECAR" "$C_SQUID" "$C_TINY" "$L_DIRECT" "$L_SIDECAR" "$(nproc)" "$SECS" \
  "$H_RP" "$L_RP" <<'PY'
import json, sys, datetime, pathlib
root = pathlib.Path(sys.argv[1])
idle, load, audit = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
h = [json.loads(x) for x in sys.argv[5:9]]
c = [json.loads(x) for x in sys.argv[9:13]]
ld, ls = json.loads(sys.argv[13]), json.loads(sys.argv[14])
cores, secs = int(sys.argv[15]), int(sys.argv[16])
hrp, lrp = json.loads(sys.argv[17]), json.loads(sys.argv[18])
names = ["direct", "sidecar", "squid", "tinyproxy"]
r = {
    "direct_rps": h[0]["rps"], "sidecar_rps": h[1]["rps"], "squid_rps": h[2]["rps"], "tinyproxy_rps": h[3]["rps"],
    "sidecar_p99_added_ms": round(ls["p99_ms"] - ld["p99_ms"], 3),
    "sidecar_rss_idle_mib": round(idle / 1024, 2), "sidecar_rss_load_mib": round(load / 1024, 2),
    "sidecar_vs_direct": round(h[1]["rps"] / h[0]["rps"], 3),
    "sidecar_vs_squid": round(h[1]["rps"] / h[2]["rps"], 2),
    "connect": {n: c[i] for i, n in enumerate(names)},
    "connect_sidecar_vs_direct": round(c[1]["rps"] / c[0]["rps"], 3),
    "connect_sidecar_vs_squid": round(c[1]["rps"] / max(c[2]["rps"], 1), 2),
    "http": {n: h[i] for i, n in enumerate(names)},
    "latency_1k_rps": {"direct": ld, "sidecar": ls, "nginx_reverse_proxy": lrp},
    "reference_nginx_reverse_proxy": {
        "what": "nginx as a keep-alive reverse proxy to the same upstream: no policy, no audit",
        "http": hrp, "vs_direct": round(hrp["rps"] / h[0]["rps"], 3),
        "vs_squid": round(hrp["rps"] / h[2]["rps"], 2),
        "p99_added_ms": round(lrp["p99_ms"] - ld["p99_ms"], 3),
        "p50_added_ms": round(lrp["p50_ms"] - ld["p50_ms"], 3),
        "sidecar_over_nginx_rps": round(h[1]["rps"] / hrp["rps"], 3),
    },
    "sidecar_p50_added_ms": round(ls["p50_ms"] - ld["p50_ms"], 3),
    "sidecar_audit_records": audit,
    "setup": {"cores": cores, "connections": 32, "seconds": secs, "upstream": "nginx (Debian), loopback, 13-byte body",
              "http_client": "wrk -t2 -c32", "connect_client": "egress_load (sidecar/examples), 32 keep-alive tunnels",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
}
(root / "bench/results").mkdir(parents=True, exist_ok=True)
(root / "bench/results/proxy.json").write_text(json.dumps(r, indent=2) + "\n")
rows = ["| | plain HTTP req/s | vs direct | p50 / p99 ms | CONNECT req/s | vs direct | p50 / p99 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
for i, n in enumerate(names):
    rows.append(f"| {n} | {h[i]['rps']:.0f} | {h[i]['rps']/h[0]['rps']:.0%} | {h[i]['p50_ms']:.2f} / {h[i]['p99_ms']:.2f} | "
                f"{c[i]['rps']:.0f} | {c[i]['rps']/c[0]['rps']:.0%} | {c[i]['p50_ms']:.2f} / {c[i]['p99_ms']:.2f} |")
rows.append(f"| *reference: nginx reverse proxy* | {hrp['rps']:.0f} | {hrp['rps']/h[0]['rps']:.0%} | {hrp['p50_ms']:.2f} / {hrp['p99_ms']:.2f} | — | — | — |")
md = "\n".join(rows) + "\n\n" + (
    f"Sidecar vs Squid: {r['sidecar_vs_squid']}x (plain HTTP), {r['connect_sidecar_vs_squid']}x (CONNECT). "
    f"Latency at 1k req/s: direct p99 {ld['p99_ms']:.3f} ms, through the sidecar {ls['p99_ms']:.3f} ms "
    f"(added {r['sidecar_p99_added_ms']:.3f} ms), through nginx as a reverse proxy {lrp['p99_ms']:.3f} ms "
    f"(added {r['reference_nginx_reverse_proxy']['p99_added_ms']:.3f} ms). Sidecar RSS: {r['sidecar_rss_idle_mib']} MiB idle, "
    f"{r['sidecar_rss_load_mib']} MiB peak under load. {audit} audit records written during the runs.\n")
(root / "bench/results/proxy.md").write_text(md)
print(md)
PY

#!/usr/bin/env bash
# CPU profile of `movie-recs serve` under load, without perf: a build with
# `--features profiling` samples itself with SIGPROF (pprof-rs) and writes a
# flamegraph on shutdown; this script serves the loadtest artifact, sends
# wrk load (2 threads x 64 connections, random users), stops the server with
# SIGTERM and prints the heaviest frames.
# Usage: infra/profile.sh [BIN] [OUT.svg]   (make profile)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/target/local/movie-recs}"
OUT="${2:-$ROOT/target/loadtest/profile.svg}"
WORK="$ROOT/target/loadtest"
[[ -d "$WORK/data/registry" ]] || { echo "run make loadtest once first (it trains the artifact)" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOVIE_RECS_POLICY="${POLICY:-none}" "$BIN" serve --data-dir "$WORK/data" --addr "127.0.0.1:$PORT" \
  --canary-every-minutes 0 --profile-svg "$OUT" >"$WORK/profile-serve.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  sleep 0.1
done
wrk -t2 -c64 -d"${PROFILE_SECONDS:-15}s" -s "$WORK/random-users.lua" "http://127.0.0.1:$PORT/" | grep -E 'Requests/sec|Latency'
kill -TERM "$PID"; wait "$PID" || true
trap - EXIT
echo "flamegraph: $OUT; heaviest frames (inclusive share of samples):"
python3 - "$OUT" <<'PY'
import html, re, sys
frames = {}
for t in re.findall(r"<title>(.*?)</title>", open(sys.argv[1]).read()):
    m = re.match(r"(.*) \(([\d,]+) samples, ([\d.]+)%\)$", html.unescape(t))
    if m:
        name, pct = m.group(1), float(m.group(3))
        frames[name] = max(frames.get(name, 0.0), pct)
for name, pct in sorted(frames.items(), key=lambda kv: -kv[1])[:60]:
    print(f"{pct:6.2f}%  {name[:150]}")
PY

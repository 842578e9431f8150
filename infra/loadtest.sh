#!/usr/bin/env bash
# Loopback load test and cold-start measurement of `movie-recs serve`.
# Usage: infra/loadtest.sh [DATA_DIR] [PORT]   (needs wrk: apt-get install wrk)
# Starts its own server on 127.0.0.1:PORT and stops only that process.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/movie-recs"
DATA="${1:-$ROOT/.movie-recs}"
PORT="${2:-18090}"
URL="http://127.0.0.1:$PORT"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
[[ -x "$BIN" ]] || { echo "build first: make build" >&2; exit 1; }

echo "cold start (process start -> first 200 from /recommend), 5 runs:"
for r in 1 2 3 4 5; do
  t0=$(date +%s%N)
  "$BIN" serve --data-dir "$DATA" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 &
  pid=$!
  until curl -sf -o /dev/null "$URL/recommend/5?k=20"; do sleep 0.002; done
  t1=$(date +%s%N)
  echo "  run $r: $(( (t1 - t0) / 1000000 )) ms"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

LUA="$(mktemp)"
trap 'rm -f "$LUA"; [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null || true' EXIT
cat > "$LUA" <<'LUA'
math.randomseed(7)
request = function()
  return wrk.format("GET", "/recommend/" .. math.random(1, 2000) .. "?k=20")
end
LUA
"$BIN" serve --data-dir "$DATA" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 &
pid=$!
until curl -sf -o /dev/null "$URL/healthz"; do sleep 0.01; done
echo "wrk: 2 threads, 64 connections, 20 s, random users:"
wrk -t2 -c64 -d20s --latency -s "$LUA" "$URL/"
echo "server-side counts:"
curl -s "$URL/metrics" | grep -E '^movie_recs_requests_total'

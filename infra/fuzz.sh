#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 600),
# growing fuzz/corpus/<target>/, and copies every crash input found into
# fuzz/regressions/<target>/ (which the stable test suite replays), then
# prints executions and crashes per target. Needs the nightly toolchain;
# installs cargo-fuzz into .tools/cargo. Usage: infra/fuzz.sh [target ...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-600}"
TOOLS="$ROOT/.tools/cargo"
if [[ ! -x "$TOOLS/bin/cargo-fuzz" ]]; then
  cargo install --quiet --locked cargo-fuzz --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(event_json avro_confluent kafka_batch artifact recommend_query)
cd fuzz
cargo +nightly fuzz build
SUMMARY=()
for t in "${TARGETS[@]}"; do
  log="$ROOT/target/fuzz-$t.log"
  mkdir -p "$ROOT/target" "corpus/$t" "regressions/$t" "artifacts/$t"
  set +e
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 > "$log" 2>&1
  set -e
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  crashes=0
  for c in artifacts/"$t"/crash-* artifacts/"$t"/oom-* artifacts/"$t"/timeout-*; do
    [[ -e "$c" ]] || continue
    cp "$c" "regressions/$t/"
    crashes=$((crashes + 1))
  done
  SUMMARY+=("$(printf '  %-16s %12s executions in %s s, %d crash inputs' "$t" "${runs:-?}" "$SECONDS_EACH" "$crashes")")
done
echo "fuzzing summary:"
printf '%s\n' "${SUMMARY[@]}"

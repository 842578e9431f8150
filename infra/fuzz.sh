#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 600)
# on a working corpus in target/fuzz-corpus/<target>/ (seeded from the
# committed one), then merges into fuzz/corpus/<target>/ only the inputs that
# add coverage (libFuzzer -set_cover_merge=1: a small set covering every
# feature), so the committed corpus, which the
# stable test suite replays, grows by what matters. Every crash input found
# is copied into fuzz/regressions/<target>/ (replayed too). Prints executions
# and crashes per target. Needs the nightly toolchain; installs cargo-fuzz
# into .tools/cargo. FUZZ_SECONDS=0 only merges the working corpus.
# Usage: infra/fuzz.sh [target ...]
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
  work="$ROOT/target/fuzz-corpus/$t"
  mkdir -p "$work" "corpus/$t" "regressions/$t" "artifacts/$t"
  rm -f artifacts/"$t"/*
  cp -n corpus/"$t"/* "$work"/ 2>/dev/null || true
  set +e
  if (( SECONDS_EACH > 0 )); then
    cargo +nightly fuzz run "$t" "$work" -- -max_total_time="$SECONDS_EACH" \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 > "$log" 2>&1
  fi
  # Into the committed corpus: only inputs of the working one that add coverage.
  cargo +nightly fuzz run "$t" "corpus/$t" "$work" -- -set_cover_merge=1 \
    -rss_limit_mb=2048 -max_len=65536 > "$ROOT/target/fuzz-$t-merge.log" 2>&1
  set -e
  added=$(grep -Eo 'MERGE-OUTER: [0-9]+ new files' "$ROOT/target/fuzz-$t-merge.log" | grep -Eo '[0-9]+' | head -1 || true)
  runs=$(grep -Eos 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  crashes=0
  for c in artifacts/"$t"/crash-* artifacts/"$t"/oom-* artifacts/"$t"/timeout-*; do
    [[ -e "$c" ]] || continue
    cp "$c" "regressions/$t/"
    crashes=$((crashes + 1))
  done
  SUMMARY+=("$(printf '  %-16s %12s executions in %s s, %d crash inputs, %s inputs merged into fuzz/corpus' \
    "$t" "${runs:-?}" "$SECONDS_EACH" "$crashes" "${added:-?}")")
done
echo "fuzzing summary:"
printf '%s\n' "${SUMMARY[@]}"

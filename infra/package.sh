#!/usr/bin/env bash
# Builds every function as a Lambda zip with cargo-lambda (cross-compiling
# through zig, both from .tools/venv) for each architecture asked (default:
# arm64 and x86_64), and the ONNX Runtime layer zip of each, then prints the
# sizes. Binaries are stripped (the release profile) and built with thin LTO and
# one codegen unit. With `--sam` it also runs `sam build` (cargo-lambda build
# method, no Docker) for the template's default architecture.
# Usage: infra/package.sh [--sam] [arm64] [x86_64]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SAM=0
ARCHS=()
for a in "$@"; do
  case "$a" in
    --sam) SAM=1 ;;
    arm64|x86_64) ARCHS+=("$a") ;;
    *) echo "usage: $0 [--sam] [arm64] [x86_64]" >&2; exit 1 ;;
  esac
done
[[ ${#ARCHS[@]} -gt 0 ]] || ARCHS=(arm64 x86_64)
infra/python-tools.sh
export PATH="$ROOT/.tools/venv/bin:$PATH"
FUNCTIONS=(recommend trace rollout ingest audit canary batch)
OUT="$ROOT/target/package"
rm -rf "$OUT"
for ARCH in "${ARCHS[@]}"; do
  TRIPLE=$([[ "$ARCH" == arm64 ]] && echo aarch64-unknown-linux-gnu || echo x86_64-unknown-linux-gnu)
  rustup target list --installed | grep -qx "$TRIPLE" || rustup target add "$TRIPLE"
  FLAG=$([[ "$ARCH" == arm64 ]] && echo --arm64 || echo --x86-64)
  BINS=()
  for f in "${FUNCTIONS[@]}"; do BINS+=(--bin "$f"); done
  start=$(date +%s)
  cargo-lambda lambda build --release "$FLAG" --output-format zip --lambda-dir "$OUT/$ARCH" "${BINS[@]}"
  echo "built ${FUNCTIONS[*]} for $ARCH in $(( $(date +%s) - start )) s" >&2
  infra/build-layer.sh "$ARCH"
  (cd .aws-sam-layer/onnxruntime && python3 -m zipfile -c "$OUT/$ARCH/onnxruntime-layer.zip" lib)
done
echo "package sizes:"
for ARCH in "${ARCHS[@]}"; do
  for f in "${FUNCTIONS[@]}" ; do
    z="$OUT/$ARCH/$f/bootstrap.zip"
    b="$(unzip -l "$z" | awk '$4=="bootstrap"{print $1}')"
    printf '  %-7s %-10s zip %6.1f MiB   bootstrap %6.1f MiB\n' "$ARCH" "$f" \
      "$(echo "$(stat -c %s "$z") / 1048576" | bc -l)" "$(echo "$b / 1048576" | bc -l)"
  done
  printf '  %-7s %-10s zip %6.1f MiB\n' "$ARCH" "layer" \
    "$(echo "$(stat -c %s "$OUT/$ARCH/onnxruntime-layer.zip") / 1048576" | bc -l)"
done
if [[ "$SAM" == 1 ]]; then
  # sam build's cargo-lambda method runs without Docker; it needs the layer
  # content for the template's architecture (arm64 by default) in place.
  infra/build-layer.sh arm64
  SAM_CLI_TELEMETRY=0 .tools/sam-venv/bin/sam build --beta-features --template template.yaml
  du -sh .aws-sam/build/* | sed 's/^/  sam build: /'
fi

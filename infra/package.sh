#!/usr/bin/env bash
# Builds every function as a Lambda zip for ARCH (default arm64) with cargo-lambda
# (cross-compiling through zig, both from .tools/venv) and the ONNX Runtime layer
# zip, then prints their sizes. Usage: infra/package.sh [arm64|x86_64]
set -euo pipefail
ARCH="${1:-arm64}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
infra/python-tools.sh
export PATH="$ROOT/.tools/venv/bin:$PATH"
FLAG=$([[ "$ARCH" == arm64 ]] && echo --arm64 || echo --x86-64)
for f in recommend trace rollout ingest audit canary; do
  cargo-lambda lambda build --release "$FLAG" --output-format zip --bin "$f"
done
infra/build-layer.sh "$ARCH"
mkdir -p target/lambda
(cd .aws-sam-layer/onnxruntime && rm -f "$ROOT/target/lambda/onnxruntime-layer.zip" && python3 -m zipfile -c "$ROOT/target/lambda/onnxruntime-layer.zip" lib)
echo "package sizes ($ARCH):"
for z in target/lambda/*/bootstrap.zip target/lambda/onnxruntime-layer.zip; do
  printf '  %-45s %8.1f MiB\n' "$z" "$(echo "$(stat -c %s "$z") / 1048576" | bc -l)"
done

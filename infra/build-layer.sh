#!/usr/bin/env bash
# Builds the ONNX Runtime Lambda layer content for ARCH (arm64 | x86_64) into
# .aws-sam-layer/onnxruntime/lib/ (template.yaml's OnnxRuntimeLayer ContentUri;
# Lambda mounts it at /opt/lib), from the PyPI wheel onnxruntime==1.31.1 of
# that architecture. Usage: infra/build-layer.sh [arm64|x86_64]
set -euo pipefail
ARCH="${1:-arm64}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
case "$ARCH" in
  arm64|aarch64) WHEEL_ARCH=aarch64 ;;
  x86_64|amd64) WHEEL_ARCH=x86_64 ;;
  *) echo "usage: $0 [arm64|x86_64]" >&2; exit 1 ;;
esac
OUT="$ROOT/.aws-sam-layer/onnxruntime"
rm -rf "$OUT"
"$ROOT/infra/fetch-onnxruntime.sh" "$WHEEL_ARCH" "$OUT/lib"
echo "$WHEEL_ARCH" > "$OUT/ARCH"
echo "layer content for $ARCH in $OUT" >&2

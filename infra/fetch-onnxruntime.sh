#!/usr/bin/env bash
# Fetches libonnxruntime.so.1.31.1 from the PyPI wheel onnxruntime==1.31.1 into
# .tools/onnxruntime/ (ignored by git). Idempotent. Usage: infra/fetch-onnxruntime.sh [x86_64|aarch64] [DEST]
set -euo pipefail
ORT_VERSION=1.31.1
ARCH="${1:-$(uname -m)}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${2:-$ROOT/.tools/onnxruntime}"
LIB="libonnxruntime.so.$ORT_VERSION"
if [[ -f "$DEST/$LIB" ]]; then
  exit 0
fi
case "$ARCH" in
  x86_64|amd64) PLAT=manylinux_2_28_x86_64 ;;
  aarch64|arm64) PLAT=manylinux_2_28_aarch64 ;;
  *) echo "unsupported architecture: $ARCH" >&2; exit 1 ;;
esac
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetching onnxruntime==$ORT_VERSION ($PLAT) from PyPI" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform "$PLAT" --python-version 3.11 --implementation cp \
  "onnxruntime==$ORT_VERSION" -d "$TMP"
WHEEL="$(ls "$TMP"/onnxruntime-*.whl)"
python3 - "$WHEEL" "$TMP/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$DEST"
cp "$TMP/x/onnxruntime/capi/$LIB" "$DEST/$LIB"
ln -sf "$LIB" "$DEST/libonnxruntime.so"
echo "ONNX Runtime $ORT_VERSION -> $DEST/$LIB" >&2

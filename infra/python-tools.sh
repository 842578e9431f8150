#!/usr/bin/env bash
# Installs the Python-packaged tools the tests drive into .tools/venv (ignored by git):
# moto_server (local S3/DynamoDB/EventBridge), cargo-lambda (Lambda runtime emulator),
# cfn-lint, checkov and aws-sam-cli (template checks). Idempotent: re-running with the same pins does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.tools/venv"
PINS="moto[server]==5.2.5 cargo-lambda==1.9.2 cfn-lint==1.58.0"
STAMP="$VENV/.pins"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$PINS" ]]; then
  echo "installing $PINS into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
  echo "$PINS" > "$STAMP"
fi

# A tool in a venv of its own (kept apart so the tool sets' pins never fight).
own_venv() {
  local venv="$ROOT/.tools/$1"
  shift
  local pins="$*"
  if [[ ! -f "$venv/.pins" || "$(cat "$venv/.pins")" != "$pins" ]]; then
    echo "installing $pins into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$pins" > "$venv/.pins"
  fi
}

# checkov (template security scan), and aws-sam-cli for `sam validate --lint`.
own_venv checkov-venv "checkov==3.3.30"
own_venv sam-venv "aws-sam-cli==1.170.0"

# The serving benchmark's plain peer (infra/peer/server.py), only for `make loadtest`.
if [[ "${1:-}" == "--peer" ]]; then
  own_venv peer-venv "fastapi==0.165.0" "uvicorn[standard]==0.55.0" "numpy==2.4.6" "onnxruntime==1.31.1"
fi

# asl-validator (npm): the Amazon States Language check of the state machines
# in template.yaml (infra/validate-asl.py), which cfn-lint does not make.
ASL_PIN="asl-validator@4.0.0"
NODE_DIR="$ROOT/.tools/node"
if [[ ! -f "$NODE_DIR/.pins" || "$(cat "$NODE_DIR/.pins")" != "$ASL_PIN" ]]; then
  echo "installing $ASL_PIN into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" "$ASL_PIN"
  echo "$ASL_PIN" > "$NODE_DIR/.pins"
fi

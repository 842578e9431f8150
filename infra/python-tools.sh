#!/usr/bin/env bash
# Installs the Python-packaged tools the tests drive into .tools/venv (ignored by git):
# moto_server (local S3/DynamoDB/EventBridge), cargo-lambda (Lambda runtime emulator),
# cfn-lint (template checks). Idempotent: re-running with the same pins does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.tools/venv"
PINS="moto[server]==5.2.5 cargo-lambda==1.9.2 cfn-lint==1.58.0"
STAMP="$VENV/.pins"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PINS" ]]; then
  exit 0
fi
echo "installing $PINS into $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
echo "$PINS" > "$STAMP"

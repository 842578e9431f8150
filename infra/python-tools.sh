#!/usr/bin/env bash
# Installs the Python-packaged tools the tests drive into .tools/venv (ignored by git):
# moto_server (local S3/DynamoDB/EventBridge), cargo-lambda (Lambda runtime emulator),
# cfn-lint and aws-sam-cli (template checks). Idempotent: re-running with the same pins does nothing.
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

# aws-sam-cli in a venv of its own (kept apart so the two tool sets' pins never fight): `sam validate --lint`.
SAM_VENV="$ROOT/.tools/sam-venv"
SAM_PIN="aws-sam-cli==1.170.0"
if [[ ! -f "$SAM_VENV/.pins" || "$(cat "$SAM_VENV/.pins")" != "$SAM_PIN" ]]; then
  echo "installing $SAM_PIN into $SAM_VENV" >&2
  python3 -m venv "$SAM_VENV"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check "$SAM_PIN"
  echo "$SAM_PIN" > "$SAM_VENV/.pins"
fi

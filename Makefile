# movie-recs: the two commands are `make run` and `make test`.
# Everything they need is installed into ignored folders of the repo (.tools/, target/).

SHELL := /bin/bash
DATA_DIR ?= .movie-recs
ADDR ?= 127.0.0.1:8080
# `make run` builds with the `local` profile: optimised like release, no LTO and
# parallel codegen, so a fresh clone serves in minutes (release is for packaging).
BIN := target/local/movie-recs
ORT := .tools/onnxruntime/libonnxruntime.so.1.31.1

.PHONY: setup test-tools build run test lint cfn unit fuzz bench bench-audit accuracy tradeoffs simulate bench-lambda loadtest profile package clean-tools

## setup: fetch ONNX Runtime 1.31.1 (from the PyPI wheel) into .tools/
setup: $(ORT)

$(ORT):
	infra/fetch-onnxruntime.sh

## test-tools: moto_server, cargo-lambda and cfn-lint into .tools/venv (pinned; idempotent)
test-tools:
	infra/python-tools.sh

## build: the movie-recs binary (profile `local`: release speed, a fraction of its build time)
build:
	cargo build --profile local --bin movie-recs

## run: set up, build, serve on http://127.0.0.1:8080 (training a model on synthetic data if none exists)
run: setup build
	$(BIN) serve --data-dir $(DATA_DIR) --addr $(ADDR)

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## cfn: lint template.yaml with cfn-lint, its state machines with asl-validator, and `sam validate --lint` (offline; dummy credentials),
## and scan it with checkov (every check passes or is skipped in the template with its reason)
cfn: test-tools
	.tools/venv/bin/cfn-lint template.yaml
	.tools/venv/bin/python infra/validate-asl.py
	.tools/checkov-venv/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=none AWS_SECRET_ACCESS_KEY=none \
	  .tools/sam-venv/bin/sam validate --lint --region eu-west-1 --template template.yaml

## unit: every test in the workspace, including moto and Lambda-emulator tests
## (MovieLens tests skip when ../shared/data is absent)
unit: setup test-tools
	cargo build --workspace --bins
	cargo test --workspace

## test: everything CI runs
test: lint cfn unit

## bench: criterion benchmarks (graph scoring cost; recommend handler in process; ingest parse+validate+Parquet; audit computation)
bench: setup
	cargo bench -p movie-recs-trainer --bench scoring
	cargo bench -p movie-recs-trainer --bench tower
	cargo bench -p movie-recs-cli --bench recommend
	cargo bench -p movie-recs-shared --bench ingest
	cargo bench -p movie-recs-shared --bench audit

## accuracy: README's quality table with the data-chosen defaults (no hyper-parameter flag) on ML-100K (3 seeds) and ML-1M; prints each test report (~25 min)
ACCURACY_REG := target/accuracy-reg
accuracy: setup
	cargo build --profile local --bin movie-recs
	rm -rf $(ACCURACY_REG)
	set -o pipefail; for s in 1 2 3; do $(BIN) train --quiet --data ../shared/data/ml-100k-ncf --registry $(ACCURACY_REG) --version ml100k-s$$s --seed $$s \
	  2>&1 | grep -E '^(defaults|best epoch|test:)' || exit 1; done
	set -o pipefail; /usr/bin/time -f 'ml-1m whole run: %e s' $(BIN) train --quiet --data ../shared/data/ml-1m-implicit --registry $(ACCURACY_REG) --version ml1m --seed 1 \
	  2>&1 | grep -E '^(defaults|best epoch|test:|ml-1m)'

## tradeoffs: docs/tradeoffs.md and its charts, the re-ranking policies (the exposure controller among them) on ML-100K (NCF)
## and ML-1M (full ranking) with the default models; trains the two models first if missing (~40 min)
TRADEOFF_REG := target/tradeoff-reg
tradeoffs: setup
	cargo build --profile local --bin movie-recs
	test -d $(TRADEOFF_REG)/ml100k || $(BIN) train --quiet --data ../shared/data/ml-100k-ncf --registry $(TRADEOFF_REG) --version ml100k --seed 1
	test -d $(TRADEOFF_REG)/ml1m || $(BIN) train --quiet --data ../shared/data/ml-1m-implicit --registry $(TRADEOFF_REG) --version ml1m --seed 1
	$(BIN) tradeoff --model $(TRADEOFF_REG)/ml100k --data ../shared/data/ml-100k-ncf --genres ../shared/data/ml-100k/u.item --genre-id-offset 1 \
	  --title "ML-100K (NCF protocol)" --out docs/tradeoffs.md --chart docs/tradeoffs-ml100k.svg
	$(BIN) tradeoff --model $(TRADEOFF_REG)/ml1m --data ../shared/data/ml-1m-implicit \
	  --title "ML-1M implicit (full ranking)" --out docs/tradeoffs.md --chart docs/tradeoffs-ml1m.svg

## simulate: docs/simulation/, the closed loop (10 rounds each of none, slots, explore and the exposure controller) and the promotion attack; docs/simulation/stealthy/, the attack with 5 filler ratings (~12 min)
simulate: setup
	cargo build --profile local --bin movie-recs
	$(BIN) simulate --policies "none;slots:slots=3;explore:weight=0.2;exposure" --out docs/simulation
	$(BIN) simulate --rounds 0 --attack-filler 5 --out docs/simulation/stealthy

## bench-audit: one audit of 1,000,000 exposures and 1,000,000 ratings from JSONL files: wall time and peak memory
bench-audit:
	cargo build --profile local --bin movie-recs
	python3 infra/gen-audit-load.py target/audit-load
	/usr/bin/time -f "audit of 1M exposures + 1M ratings: %e s wall, peak RSS %M KB" \
	  $(BIN) audit --recommendations target/audit-load/recommendations.jsonl \
	  --ratings target/audit-load/ratings.jsonl --catalog-size 3883 > /dev/null

## bench-lambda: recommend (init, p50/p99) and ingest (10,000-record Kafka batch) under the Lambda emulator with moto
bench-lambda: setup test-tools
	cargo build --release --workspace --bins
	cargo bench -p movie-recs-e2e --bench lambda_invoke
	cargo bench -p movie-recs-e2e --bench ingest_lambda

## package: Lambda zips (cargo lambda build, arm64 and x86_64) and the ONNX Runtime layer; prints sizes;
## then `sam build` for the template's architecture (no Docker: the rust-cargolambda method; ~1 hour on 2 cores)
package: test-tools
	infra/package.sh --sam

## loadtest: movie-recs serve and the FastAPI + onnxruntime peer on the same artifact, side by side:
## cold start, wrk at 64 and 1 connections, one table (needs wrk; installs the peer into .tools/peer-venv)
loadtest: setup build
	infra/loadtest.sh $(abspath $(BIN))

## profile: a CPU flamegraph of movie-recs serve under wrk load (pprof, no perf), heaviest frames printed
profile: setup
	cargo build --profile local --bin movie-recs --features profiling
	infra/profile.sh $(abspath $(BIN)) $(abspath target/loadtest/profile.svg)

## fuzz: every cargo-fuzz target for FUZZ_SECONDS each (default 600; nightly); crash inputs land in fuzz/regressions/, which make test replays
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) infra/fuzz.sh

clean-tools:
	rm -rf .tools

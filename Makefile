# movie-recs: the two commands are `make run` and `make test`.
# Everything they need is installed into ignored folders of the repo (.tools/, target/).

SHELL := /bin/bash
DATA_DIR ?= .movie-recs
REGISTRY := $(DATA_DIR)/registry
BIN := target/release/movie-recs
ORT := .tools/onnxruntime/libonnxruntime.so.1.31.1

.PHONY: setup build run test lint unit bench clean-tools

## setup: fetch ONNX Runtime 1.31.1 (from the PyPI wheel) into .tools/
setup: $(ORT)

$(ORT):
	infra/fetch-onnxruntime.sh

## build: the release binary
build:
	cargo build --release --bin movie-recs

## run: set up, build, train a model on synthetic data if the registry is empty, show it
run: setup build
	@if [ -z "$$(ls -A $(REGISTRY) 2>/dev/null | grep -v '^\.')" ]; then \
	  echo "no model in $(REGISTRY): training one on the built-in synthetic data"; \
	  $(BIN) train --data synthetic --registry $(REGISTRY); \
	fi
	@$(BIN) registry list --registry $(REGISTRY)
	@echo "Serving (movie-recs serve, GET /recommend/{user_id}) arrives with the serving-core issue;"
	@echo "for now try:  $(BIN) eval --data synthetic --model $(REGISTRY)/$$(ls $(REGISTRY) | tail -1)"

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## unit: every test in the workspace (MovieLens tests skip when ../shared/data is absent)
unit: setup
	cargo test --workspace

## test: everything CI runs
test: lint unit

## bench: criterion benchmarks (serving cost of the exported graph)
bench: setup
	cargo bench -p movie-recs-trainer --bench scoring

clean-tools:
	rm -rf .tools

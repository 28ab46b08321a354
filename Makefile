# Brainformer: `make demo` runs the main job, `make test` the whole suite. Both do all set-up
# (venv with torch + oracles, BIDS validator, release build) and are quick when nothing changed.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
CARGO_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
SHARED ?= ../shared
BENCH_DIR ?= bench-data

.PHONY: setup build demo test test-rust test-oracle bench fuzz clean-setup

setup: $(STAMPS)/venv $(STAMPS)/node build

$(STAMPS)/venv: requirements.txt
	@mkdir -p $(STAMPS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

$(STAMPS)/node: package.json
	@mkdir -p $(STAMPS)
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Release binaries with an rpath to the venv's torch/lib (cli/build.rs); cargo is incremental.
build: $(STAMPS)/venv
	$(CARGO_ENV) cargo build --release --workspace --bins

demo: setup
	@echo "== bf-pipeline info on a BrainVision recording from MNE's test data"
	target/release/bf-pipeline info $(SHARED)/data/mne-python/brainvision/tests/data/test.vhdr
	@echo "== and on a Neuromag-style FIF"
	target/release/bf-pipeline info $(SHARED)/data/mne-python/kit/tests/data/test_bin_raw.fif
	@echo "== libtorch check"
	target/release/bf-train --self-check --device auto

test: setup test-rust test-oracle

test-rust:
	$(CARGO_ENV) cargo test --release --workspace

test-oracle:
	$(PY) -m pytest -q tests/oracle

bench: setup
	$(PY) bench/bench_read.py --out-dir $(BENCH_DIR)

fuzz:
	@echo "see README.md, section Fuzzing (needs cargo-fuzz and a nightly toolchain)"

clean-setup:
	rm -rf $(STAMPS)

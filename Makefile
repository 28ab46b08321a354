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

setup: $(STAMPS)/venv $(STAMPS)/node $(STAMPS)/slurm build

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

# slurm-wlm + munge for the tests on a real one-node SLURM (../shared/slurm/local-slurm), where
# this is root with apt-get; elsewhere those tests say why they skip.
$(STAMPS)/slurm:
	@mkdir -p $(STAMPS)
	@if command -v sbatch >/dev/null && command -v munged >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; } || \
	  echo "slurm-wlm and munge could not be installed: the SLURM tests will skip"; \
	else echo "not root or no apt-get: slurm-wlm and munge not installed, the SLURM tests will skip"; fi
	touch $@

# Release binaries (bf-train and bf-eval with an rpath to the venv's torch/lib: torch-cli/build.rs); cargo is incremental.
build: $(STAMPS)/venv
	$(CARGO_ENV) cargo build --release --workspace --bins

DEMO_DIR ?= demo
# The binaries the demo runs (absolute: some steps run inside DEMO_DIR).
BIN ?= $(CURDIR)/target/release
TEMPLATE := $(SHARED)/data/mne-python/tests/data/test-ave.fif.gz
TEMPLATE_FLAG := $(if $(wildcard $(TEMPLATE)),--template $(TEMPLATE),)
# The demo's data: the physics fixture (a forward model, realistic sources and artifacts, a
# noise-free copy of each run for the noise ceiling) where the Neuromag template is there to
# give it sensor geometry; else the linear fixture.
DEMO_FIXTURE_FLAGS := $(if $(wildcard $(TEMPLATE)),--template $(TEMPLATE) --physics,)
DEMO_NOISE_FREE := $(DEMO_DIR)/ds000117-fixture/derivatives/noise-free

DEMO_SHARDS := $(DEMO_DIR)/ds000117-fixture/derivatives/brainformer/shards
DEMO_STEPS ?= 150
DEMO_TRAIN_FLAGS ?= --d_model 32 --n_heads 4 --d_ff 64 --sequence_length 32 --batch_size 8 --max_steps $(DEMO_STEPS) \
	--lr 3e-3 --warmup_steps 20 --eval_interval 50 --eval_batches 8 --device auto

# --decoder_eeg mixed --eeg_skip 21: the seed's regression model plus our memory residual and
# lagged-linear EEG path, the configuration that (evaluated with bf-eval --hop 32) beats the
# lagged ridge of its context length on held-out subjects of the physics fixture and ties the
# best-lag ridge (BENCHMARKS.md, issue 15, sessions 15-16); the seed's alone stays near r 0.
DEMO_REGRESSION_FLAGS ?= --objective regression --n_heads 2 --sequence_length 64 --patch_size 4 --batch_size 16 \
	--decoder_eeg mixed --eeg_skip 21 \
	--max_steps 300 --lr 1e-3 --warmup_steps 20 --eval_interval 50 --eval_batches 8 --device auto

demo: setup
	@echo "== 1. a ds000117-shaped BIDS dataset (4 subjects x 2 runs, 404 channels at 1100 Hz; $(if $(DEMO_FIXTURE_FLAGS),physics: forward model + artifacts,linear mix: no template))"
	test -f $(DEMO_DIR)/ds000117-fixture/dataset_description.json || \
	  $(BIN)/bf-fixtures --out $(DEMO_DIR)/ds000117-fixture $(DEMO_FIXTURE_FLAGS) > /dev/null
	@echo "== 2. the BIDS validator on it"
	node_modules/.bin/bids-validator $(DEMO_DIR)/ds000117-fixture | tail -n 8
	@echo "== 3. ingest: open and check every run, manifest + project file"
	cd $(DEMO_DIR) && $(BIN)/bf-pipeline ingest ds000117-fixture
	$(PY) -c "import polars as pl; print(pl.read_parquet('$(DEMO_DIR)/ds000117-fixture/derivatives/brainformer/manifest.parquet').select('run_id','meg_source','n_eeg','n_meg','bads','n_events','n_events_dropped','duration','empty_room'))"
	@echo "== 4. one run's info, and readers on MNE's test files"
	$(BIN)/bf-pipeline info $(DEMO_DIR)/ds000117-fixture/sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif
	-$(BIN)/bf-pipeline info $(SHARED)/data/mne-python/brainvision/tests/data/test.vhdr
	@echo "== 5. the pipeline: preprocess -> segment -> split -> fit tokenizer -> tokenize -> shards"
	cd $(DEMO_DIR) && $(BIN)/bf-pipeline plan | tail -n 3
	cd $(DEMO_DIR) && $(BIN)/bf-pipeline tokenize
	cd $(DEMO_DIR) && $(BIN)/bf-pipeline tokenize
	$(PY) -c "import datasets; d = datasets.load_dataset('$(DEMO_DIR)/ds000117-fixture/derivatives/brainformer/shards'); print(d); import numpy as np; r = d['train'][0]; print('one row: eeg', np.array(r['eeg']).shape, 'meg', np.array(r['meg']).shape, 'tokens', np.array(r['meg']).min(), '..', np.array(r['meg']).max())"
	@echo "shards and dataset card: $(DEMO_DIR)/ds000117-fixture/derivatives/brainformer/shards (load with datasets.load_dataset(that folder))"
	@echo "== 6. libtorch check"
	$(BIN)/bf-train --self-check --device auto
	@echo "== 7. a short training run (CPU-sized model; see bf-train --help for the seed's sizes)"
	rm -rf $(DEMO_DIR)/run
	$(BIN)/bf-train --shards $(DEMO_SHARDS) --out $(DEMO_DIR)/run $(DEMO_TRAIN_FLAGS)
	@echo "== 8. evaluation beside the baselines"
	$(BIN)/bf-eval --checkpoint $(DEMO_DIR)/run/best --shards $(DEMO_SHARDS) --out $(DEMO_DIR)/eval --max-windows 32 --ridge-windows 400
	@echo "report: $(DEMO_DIR)/eval/report.md (metrics: $(DEMO_DIR)/eval/metrics.json)"
	@echo "== 9. the regression model on continuous shards (it sees no MEG, only the EEG; the seed's + memory residual + lagged-linear path)"
	cd $(DEMO_DIR) && $(BIN)/bf-pipeline --quiet tokenize --continuous
	rm -rf $(DEMO_DIR)/run-regression
	$(BIN)/bf-train --shards $(DEMO_SHARDS)-continuous --out $(DEMO_DIR)/run-regression $(DEMO_REGRESSION_FLAGS)
	$(BIN)/bf-eval --checkpoint $(DEMO_DIR)/run-regression/best --shards $(DEMO_SHARDS)-continuous \
	  --out $(DEMO_DIR)/eval-regression --max-windows 32 --ridge-windows 400 --hop 32 \
	  $$(test -d $(DEMO_NOISE_FREE) && echo --noise-free $(DEMO_NOISE_FREE))
	@echo "reports: $(DEMO_DIR)/eval/report.md (token model), $(DEMO_DIR)/eval-regression/report.md (regression model)"

test: setup test-rust test-oracle

test-rust:
	$(CARGO_ENV) cargo test --release --workspace

test-oracle:
	$(PY) -m pytest -q tests/oracle

bench: setup
	$(PY) bench/bench_read.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_clean.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_maxwell.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_tokenize.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_real_chain.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_dataset.py --out-dir $(BENCH_DIR)
	$(PY) bench/bench_train.py --seed_heap_like_ours
	$(PY) bench/bench_train.py --seq 64 --batch 8 --steps 3

fuzz:
	@echo "see README.md, section Fuzzing (needs cargo-fuzz and a nightly toolchain)"

clean-setup:
	rm -rf $(STAMPS)

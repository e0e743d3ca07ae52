# Two commands do everything on a fresh clone: `make sim` and `make test`.
# Both create or reuse .venv; torch==2.13.0 (CPU build from local disk) goes in before anything
# that depends on torch, so pip never fetches a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
scenario ?= default
PYTEST_ARGS ?=
DEVICE ?= cpu
MODELS ?=

.PHONY: venv sim test bench validate live-eval pocket clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

sim: $(STAMP)
	$(BIN)/testbed sim $(scenario)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

live-eval: $(STAMP)
	$(BIN)/testbed live $(scenario) --fidelity --device $(DEVICE) $(if $(MODELS),--models $(MODELS))

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s -o addopts='' tests/bench --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

# retrain the pocket pair's heads (traces/models/pocket/): easy-VQA, fixed seed, CPU, minutes
pocket: $(STAMP)
	$(BIN)/testbed train-pocket

validate: $(STAMP)
	$(BIN)/testbed validate

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis .benchmarks

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

.PHONY: venv sim test bench validate live-eval gpu-profile pocket soak clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

sim: $(STAMP)
	$(BIN)/testbed sim $(scenario)

# the suite in TEST_WORKERS processes (pytest-xdist), a test file per worker so module fixtures are built once
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

live-eval: $(STAMP)
	$(BIN)/testbed live $(scenario) --fidelity --device $(DEVICE) $(if $(MODELS),--models $(MODELS))

# real-size random-init Qwen2.5-VL 3B/7B and LLaVA-OneVision 0.5B/7B (bf16, SDPA) on a CUDA GPU:
# traces/profiles/<gpu>-<family>.toml and <gpu>-stages.md (DEVICE=cpu GPU_PROFILE_ARGS=--tiny: a dry run)
GPU_PROFILE_ARGS ?=
gpu-profile: $(STAMP)
	$(BIN)/testbed models profile-families --device $(if $(filter cpu,$(DEVICE)),cuda,$(DEVICE)) $(GPU_PROFILE_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s -o addopts='' tests/bench --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

# soak the live transport: 10,000 requests from 4 clients to one edge on loopback, then faults (about 30 s)
soak: $(STAMP)
	$(BIN)/testbed soak

# retrain the pocket pair's heads (traces/models/pocket/): easy-VQA, fixed seed, CPU, minutes
pocket: $(STAMP)
	$(BIN)/testbed train-pocket

validate: $(STAMP)
	$(BIN)/testbed validate

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis .benchmarks

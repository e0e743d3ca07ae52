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

.PHONY: venv sim test lint bench validate live-eval gpu-profile pocket soak docs clean

venv: $(STAMP)

# One line per step; pip's output goes to $(INSTALL_LOG), and the end of it reaches the terminal only when a
# step fails (then make stops with a non-zero exit code and the next make retries).
INSTALL_LOG := $(VENV)/install.log
STEP_LOG := $(VENV)/.step.log
# $(call step,MESSAGE,COMMAND): say what is being done, run it with its output in the log, show it on failure
step = echo "make: $(1)"; if $(2) >$(STEP_LOG) 2>&1; then cat $(STEP_LOG) >>$(INSTALL_LOG); \
	else cat $(STEP_LOG) >>$(INSTALL_LOG); echo "make: $(1) failed; the end of its output (all of it: $(INSTALL_LOG)):" >&2; \
	tail -n 40 $(STEP_LOG) >&2; rm -f $(STEP_LOG); exit 1; fi; rm -f $(STEP_LOG)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "make: creating $(VENV) ($(PYTHON) -m venv)"; $(PYTHON) -m venv $(VENV); }
	@: >$(INSTALL_LOG)
	@$(call step,upgrading pip,$(BIN)/python -m pip install --progress-bar off --upgrade pip)
	@$(call step,installing torch 2.13.0 (CPU build; a few minutes),$(BIN)/python -m pip install --progress-bar off torch==2.13.0)
	@$(call step,installing the testbed and its dependencies (pip install -e '.[dev]'),$(BIN)/python -m pip install --progress-bar off -e '.[dev]')
	@touch $(STAMP)
	@echo "make: $(VENV) is ready (pip's output: $(INSTALL_LOG))"

sim: $(STAMP)
	$(BIN)/testbed sim $(scenario)

# lint first (ruff: pyproject.toml's [tool.ruff]; mypy -p testbed: the core, the interpreters and the command line,
# no untyped definitions), then the suite in TEST_WORKERS processes (pytest-xdist), a test file per worker so
# module fixtures are built once
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	@echo "make: ruff check"; $(BIN)/python -m ruff check --quiet testbed sim live cli tests
	@echo "make: mypy -p testbed"; $(BIN)/python -m mypy --no-error-summary -p testbed

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

# regenerate docs/cli.md and docs/scenario-keys.md from the parsers and the scenario's keys (tests/test_docs.py
# fails while they are stale)
docs: $(STAMP)
	$(BIN)/python -m testbed.cli.reference

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis .benchmarks

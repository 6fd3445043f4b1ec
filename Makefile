# Every target creates .venv when it is missing and installs layerprobe into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests run in one worker process per core (pytest-xdist; a file stays in one worker, so its
# module fixtures are built once). Files are handed out in tests/conftest.py's order, those with
# slow tests first (--no-loadscope-reorder: xdist would otherwise start the files with the fewest
# tests, the long end-to-end ones, last). Per-test limit (seconds): catches a hung test; sized for
# a loaded machine, not a speed goal.
TEST_TIMEOUT := 1800

.PHONY: setup demo test test-fast bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision first: the releases the machine's pip cap allows (a local wheel here).
	$(BIN)/python -m pip install --quiet "torch>=2.9,<=2.14.1" "torchvision>=0.24,<=0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The paper's findings on the built-in data, offline: pre-train a ladder of small checkpoints,
# probe every layer on every built-in task, fit the saturation curves, write the report.
DEMO_DIR := results/demo
demo: $(STAMP)
	$(BIN)/layerprobe demo --out $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --timeout=$(TEST_TIMEOUT)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder -m "not slow" --timeout=$(TEST_TIMEOUT)

bench: $(STAMP)
	$(BIN)/python benchmarks/extract_overhead.py
	$(BIN)/python benchmarks/probe_sweep.py
	$(BIN)/python benchmarks/tasks_listing.py
	$(BIN)/python benchmarks/probe_cli.py
	$(BIN)/python benchmarks/pretrain_step.py
	$(BIN)/python benchmarks/analysis_scale.py --checkpoints 480

lint: $(STAMP)
	$(BIN)/ruff check layerprobe tests benchmarks docs
	$(BIN)/ruff format --check layerprobe tests benchmarks docs

format: $(STAMP)
	$(BIN)/ruff format layerprobe tests benchmarks docs
	$(BIN)/ruff check --fix layerprobe tests benchmarks docs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

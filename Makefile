# Every target creates .venv when it is missing and installs layerprobe into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision first: the releases the machine's pip cap allows (a local wheel here).
	$(BIN)/python -m pip install --quiet "torch>=2.9,<=2.14.1" "torchvision>=0.24,<=0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job on the built-in data: extract every layer of a (randomly initialised) ResNet-18
# at 32 px on four built-in tasks, probe every layer x shots x seed x lambda, print the table.
DEMO_TASKS := builtin/objects-shape builtin/textures builtin/count builtin/loc-x
DEMO_DIR   := results/demo
demo: $(STAMP)
	for task in $(DEMO_TASKS); do \
	  $(BIN)/layerprobe extract --model timm:resnet18 --image-size 32 --task $$task \
	    --cache $(DEMO_DIR)/cache || exit $$?; \
	done
	$(BIN)/layerprobe probe --cache $(DEMO_DIR)/cache --results $(DEMO_DIR)/results --shots 5,25,0
	$(BIN)/layerprobe results show --results $(DEMO_DIR)/results --shots 25

test: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=600

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" --timeout=600

bench: $(STAMP)
	$(BIN)/python benchmarks/extract_overhead.py
	$(BIN)/python benchmarks/probe_sweep.py
	$(BIN)/python benchmarks/tasks_listing.py

lint: $(STAMP)
	$(BIN)/ruff check layerprobe tests benchmarks
	$(BIN)/ruff format --check layerprobe tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format layerprobe tests benchmarks
	$(BIN)/ruff check --fix layerprobe tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

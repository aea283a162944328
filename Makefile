# One command each for a newcomer: `make run` (the main job) and `make test`.
# Both create .venv and install the package on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BUDGET ?= 3m
# Two pytest processes (pytest-xdist), a whole file to each: the Ray tests share one head per
# file and wait on Ray much of the time, so they overlap with the CPU-bound rest. 0 runs serially.
# The tests that hold a search to a wall-clock budget run after, alone, so no other test slows them.
TEST_WORKERS ?= 2

.PHONY: install run test bench ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/search run --budget $(BUDGET)

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not budget"
	$(BIN)/python -m pytest -m budget

bench: install
	$(BIN)/python -m benchmarks.proxy_vs_full
	$(BIN)/python -m benchmarks.loop_overhead
	$(BIN)/python -m benchmarks.progressive_vs_scratch
	$(BIN)/python -m benchmarks.ray_concurrency

ui: install
	$(BIN)/search ui

clean:
	rm -rf $(VENV) runs .pytest_cache

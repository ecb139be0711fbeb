# medtl: `make demo` and `make test` set everything up (idempotent) and run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medtl-installed

.PHONY: setup demo test lint format bench clean

# constraints.txt holds the exact versions the project is tested with (torch included);
# pyproject.toml itself only states ranges, so GPU users keep their own CUDA build of torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,onnx,tracking,dicom,volumes,explain,app]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/medtl demo

# one pytest-xdist worker per core (at most 4), whole files per worker so module fixtures are
# built once (tests/conftest.py gives each worker one compute thread and puts the files with
# a test marked slow first; --no-loadscope-reorder keeps that order instead of xdist's
# largest-file-first); then the tests marked serial, alone, when there are any (none at
# present: the time limits and the Ctrl-C test hold beside another worker, and the serial
# part cost ~24 s, most of it collection). Both parts run; either failing fails the target.
# the files that hold serial tests (collecting only them saves ~15 s of imports)
SERIAL_FILES := $(shell grep -rl --include='test_*.py' 'mark.serial' tests)
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

# PYTHONDONTWRITEBYTECODE= : bytecode caches for src/ and tests/ (pytest's rewritten test
# modules too) are written and reused, where an environment turned them off
test: $(STAMP)
	export PYTHONDONTWRITEBYTECODE=; rc=0; \
	$(BIN)/lint-imports --no-cache || rc=1; \
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder -m "not serial" || rc=1; \
	if [ -n "$(SERIAL_FILES)" ]; then $(BIN)/python -m pytest -q -m serial $(SERIAL_FILES) || rc=1; fi; \
	exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# the reference naive loop lives in the project's shared folder beside the checkout
NAIVE ?= ../shared/bench/naive_baseline.py

bench: $(STAMP)
	$(BIN)/medtl bench --naive $(NAIVE)

clean:
	rm -rf demo_runs runs .pytest_cache

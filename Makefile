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

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# the reference naive loop lives in the project's shared folder beside the checkout
NAIVE ?= ../shared/bench/naive_baseline.py

bench: $(STAMP)
	$(BIN)/medtl bench --naive $(NAIVE)

clean:
	rm -rf demo_runs runs .pytest_cache

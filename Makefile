# vanseg developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
EXTRAS := dev,onnx,sweep
TORCH := torch==2.14.1 torchvision==0.29.1
# pip constraints for the install: the lock (CI's versions). `make test-newest` empties it.
CONSTRAINTS ?= -c $(LOCK)
# An AVX2-only CPU as far as ATen, oneDNN and OpenCV can tell (docs/pitfalls.md M3).
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OPENCV_CPU_DISABLE=AVX512-SKX,AVX512-CLX
FAST := -m "not slow and not gpu"

.PHONY: help install demo flops wheel test test-avx2 test-newest test-slow test-all gpu-check \
	lock lint format clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(CONSTRAINTS) --upgrade pip setuptools
	$(BIN)/pip install -q $(CONSTRAINTS) $(TORCH)
	$(BIN)/pip install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install vanseg with its dev tools

demo: $(STAMP)  ## the main job: train the CPU demo on the generated dataset
	$(BIN)/python train.py experiment=demo

flops: $(STAMP)  ## params/GMACs of all 17 published configurations
	$(BIN)/python -m vanseg.tools.flops --all

wheel: $(STAMP)  ## build dist/vanseg-*.whl (the conf/ tree included, as vanseg.conf)
	$(BIN)/pip wheel --no-deps --no-build-isolation -w dist .

VERSIONS := import cv2, torch; print(f"OpenCV {cv2.__version__}, torch {torch.__version__}, \
	ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")

test: $(STAMP)  ## fast test suite (no GPU, no network), in the locked environment
	@$(BIN)/python -c '$(VERSIONS)'
	$(BIN)/pytest -q $(FAST) --durations=10

test-avx2: $(STAMP)  ## fast test suite as on an AVX2-only CPU (emulated; numerics, not speed)
	@$(AVX2) $(BIN)/python -c '$(VERSIONS)'
	$(AVX2) $(BIN)/pytest -q $(FAST) -p no:cacheprovider

test-newest:  ## fast test suite with the newest versions pyproject.toml allows (.venv-newest)
	rm -rf .venv-newest
	$(MAKE) --no-print-directory test VENV=.venv-newest CONSTRAINTS=

test-slow: $(STAMP)  ## slow tests only
	$(BIN)/pytest -q -m "slow and not gpu" --durations=10

test-all: $(STAMP)  ## every CPU test
	$(BIN)/pytest -q -m "not gpu" --durations=10

gpu-check: $(STAMP)  ## on a CUDA machine: gpu tests, CUDA benchmarks, 200-step training (< 8 min)
	$(BIN)/python scripts/gpu_check.py

lock:  ## re-resolve the newest allowed versions into requirements.lock (fresh .venv-lock)
	rm -rf .venv-lock
	$(MAKE) --no-print-directory install VENV=.venv-lock CONSTRAINTS=
	.venv-lock/bin/python scripts/lock.py write .venv-lock/bin/python

lint: $(STAMP)  ## ruff lint + format check + the import layers (docs/architecture.md)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove caches (keeps .venv)
	rm -rf .pytest_cache .ruff_cache outputs multirun build dist .venv-newest .venv-lock

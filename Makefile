# vanseg developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo flops wheel test test-slow test-all lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,onnx,sweep]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install vanseg with its dev tools

demo: $(STAMP)  ## the main job: train the CPU demo on the generated dataset
	$(BIN)/python train.py experiment=demo

flops: $(STAMP)  ## params/GMACs of all 17 published configurations
	$(BIN)/python -m vanseg.tools.flops --all

wheel: $(STAMP)  ## build dist/vanseg-*.whl (the conf/ tree included, as vanseg.conf)
	$(BIN)/pip wheel --no-deps --no-build-isolation -w dist .

test: $(STAMP)  ## fast test suite (no GPU, no network)
	$(BIN)/pytest -q -m "not slow and not gpu" --durations=10

test-slow: $(STAMP)  ## slow tests only
	$(BIN)/pytest -q -m "slow and not gpu" --durations=10

test-all: $(STAMP)  ## every CPU test
	$(BIN)/pytest -q -m "not gpu" --durations=10

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove caches (keeps .venv)
	rm -rf .pytest_cache .ruff_cache outputs multirun build dist

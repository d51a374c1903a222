# salesforecast: `make` lists the targets. Needs python3 (3.11+) on PATH and make; everything else goes
# into .venv.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= reports.yml
ARGS ?=
PYTEST_ARGS ?= -n 2 --dist loadfile
LINT_PATHS := salesforecast tests notebooks benchmarks scripts
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help venv test reports screenshots lab lint format clean distclean bench bench-dask

help: ## list the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## create .venv with the package, its dev tools and the `salesforecast` Jupyter kernel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml is newer than the stamp. --compile-bytecode writes the .pyc files at
# install: with PYTHONDONTWRITEBYTECODE set (as on these machines) every process would compile every import.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name salesforecast --display-name "Python (salesforecast)"
	touch $@

# compileall first: the package is installed editable, so --compile-bytecode above leaves its own modules out, and
# with PYTHONDONTWRITEBYTECODE every report kernel the tests start (about 130) would compile them again (0.6 s each).
test: venv ## run the test suite (all of it, slow-marked tests too), 2 workers
	$(BIN)/python -m compileall -q salesforecast
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reports: venv ## render every report of reports.yml to reports/<run>/ and reports/latest/ (ARGS="-p source=DIR")
	$(BIN)/salesforecast report --config $(CONFIG) $(ARGS)

RUN ?= reports/latest
screenshots: venv ## screenshot every page of RUN (default reports/latest; run `make reports` first) to reports/screenshots/
	$(BIN)/salesforecast screenshots $(RUN) --out reports/screenshots

# BENCH_DATA: a folder holding generated CRMs to reuse (crm100k, crm1m: generate(n, seed=5) as Parquet), e.g.
# BENCH_DATA=/work/data; else report_suite.py generates them once into benchmarks/.scratch/.
BENCH_DATA ?=
bench: venv ## run every benchmark (results in benchmarks/results/, tables in benchmarks/README.md)
	$(BIN)/python benchmarks/uci_bank_marketing.py
	$(BIN)/python benchmarks/lead_scoring_speed.py --configs default
	$(BIN)/python benchmarks/scale.py --sizes 100000 1000000
	$(BIN)/python benchmarks/report_suite.py --sizes 100000 1000000 $(if $(BENCH_DATA),--data-dir $(BENCH_DATA),)
	$(BIN)/python benchmarks/summary.py

bench-dask: venv ## the steps over partitions on a Dask LocalCluster vs one process, and generated CRMs to 10M (benchmarks/dask_scale.py)
	$(BIN)/python benchmarks/dask_scale.py --sizes 100000 1000000 --generated 1000000 3000000 10000000 $(if $(BENCH_DATA),--data-dir $(BENCH_DATA),)

lab: venv ## open JupyterLab on notebooks/ with the `salesforecast` kernel
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks --MappingKernelManager.default_kernel_name=salesforecast $(ALLOW_ROOT)

lint: venv ## ruff check and ruff format --check on the package, the tests and the notebooks
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: venv ## format the code and notebooks and apply ruff's safe fixes
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean: ## delete the rendered reports (everything in reports/ but its README)
	if [ -d reports ]; then find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +; fi

distclean: clean ## also delete .venv and the caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

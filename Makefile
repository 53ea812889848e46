# `make serve` and `make test` do all the set-up: a virtualenv in .venv with pinned packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint format postgres chromium bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/tidings serve --host $(HOST) --port $(PORT)

postgres:
	scripts/ensure-postgres

chromium:
	scripts/ensure-chromium

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint postgres chromium
	$(BIN)/pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(STAMP) postgres
	$(BIN)/python bench/api.py
	$(BIN)/python bench/dispatch.py --backend sqlite --posts 100 --channels 10 --concurrency 1000
	$(BIN)/python bench/dispatch.py --backend sqlite --posts 1000 --channels 10 --concurrency 1000
	$(BIN)/python bench/dispatch.py --backend postgresql --workers 3 --posts 100 --channels 10 --concurrency 1000
	$(BIN)/python bench/dispatch.py --backend postgresql --workers 3 --posts 1000 --channels 10 --concurrency 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

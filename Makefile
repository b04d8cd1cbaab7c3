# The two commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv lint bench clean-demo

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements/lock.txt
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python manage.py rundemo

test: venv
	bash scripts/test.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: venv
	$(BIN)/python benchmarks/registry_api.py

clean-demo:
	rm -rf var

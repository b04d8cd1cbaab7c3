# The two commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv lint bench bench-pages plotly clean-demo

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements/lock.txt
	touch $@

venv: $(BIN)/.installed

# As in the image: static files under hashed names, gzip and brotli copies (portal/settings.py).
demo: venv
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py rundemo

test: venv
	bash scripts/test.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: venv
	$(BIN)/python benchmarks/registry_api.py

# Page load in headless Chromium, cold and warm (benchmarks/pages.py).
bench-pages: venv
	$(BIN)/python benchmarks/pages.py

# Rebuild static/vendor/plotly/plotly.min.js (only the trace types the charts use) with the
# versions pinned in scripts/plotly/package-lock.json; needs Node and npm.
plotly:
	cd scripts/plotly && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs

clean-demo:
	rm -rf var

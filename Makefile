# kdiag — developer entry points. `make demo` and `make test` are the README's set-up commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lint test unit demo docs bench generate system-deps clean fuzz

install: $(STAMP)

# kdiag's distribution holds the manager package too (see pyproject.toml); a venv made before
# that has a separate kdiag-manager owning the same files: it goes first. setuptools announces
# every editable install with a warning; the install stays quiet unless something fails.
$(STAMP): pyproject.toml manager/pyproject.toml
	@echo "installing kdiag (editable) and its dev tools into $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip uninstall -q -y kdiag-manager >/dev/null 2>&1 || true
	@PYTHONWARNINGS="ignore:Editable installation" \
	  $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# System packages the node-mode features and tests use (root; skipped when present).
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(VENV)/bin/ruff check kdiag manager tests cluster demo image
	$(VENV)/bin/mypy kdiag manager/kdiag_manager demo image

unit: install
	$(VENV)/bin/pytest -q tests/unit

test: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	$(VENV)/bin/pytest -q -m "not cluster and not dist and not image"

demo: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	$(PY) -m demo

# The README's picture of a report (docs/report.png): make demo's HTML report in headless Chromium.
docs: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	$(PY) -m demo.picture

bench: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	$(PY) -m tests.bench.run

# A long fuzz of `kdiag validate` (make test runs 2000 of these cases; see README, Limits).
fuzz: install
	KDIAG_FUZZ_EXAMPLES=$${KDIAG_FUZZ_EXAMPLES:-50000} $(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/test_fuzz_validate.py
	@cat .fuzz/results.json

clean:
	rm -rf $(VENV) .bench .fuzz .coverage-data .coverage-data-e2e .mutation .pytest_cache .mypy_cache .ruff_cache build dist

-include mk/*.mk

# The checked-in JSON Schema is generated from the step types (a unit test checks it is current).
.PHONY: generate-schema
generate-schema: install
	$(VENV)/bin/kdiag schema > schemas/runbook.schema.json
generate: generate-schema

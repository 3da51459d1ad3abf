# How much the tests check: `make coverage` (branch coverage of `make test`, every Python
# subprocess measured too), `make coverage-e2e` (the same for the cluster tests; needs the
# cluster, see cluster/README.md) and `make mutation` (mutmut over the core packages; slow, see
# tests/quality/mutation.py and tests/MUTATION-SURVIVORS.md). Included by the root Makefile.

COVERAGE_DIR := $(CURDIR)/.coverage-data
COVERAGE := COVERAGE_FILE=$(COVERAGE_DIR)/coverage $(VENV)/bin/coverage
# A sample of mutants per package by default (a full run takes hours on two cores):
# MUTATION_ARGS="" tests every mutant.
MUTATION_ARGS ?= --sample 40

.PHONY: coverage coverage-e2e mutation

# The tests' own verdict decides the exit code; the table is printed either way.
# COVERAGE_VERDICT=report (CI, after `make test` gave the verdict) exits 0 whatever the tests
# did under coverage: tracing every line slows Python 2-3x, so tests bounding CPU time or
# latency (test_hostile_input, completion) can miss their bounds there and only there.
COVERAGE_VERDICT ?= tests
coverage: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	@rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	@status=0; $(COVERAGE) run -m pytest -q -m "not cluster and not dist and not image" || status=$$?; \
	  $(COVERAGE) combine -q $(COVERAGE_DIR) && \
	  COVERAGE_FILE=$(COVERAGE_DIR)/coverage $(PY) -m tests.quality.coverage_table \
	    --json $(COVERAGE_DIR)/table.json $(COVERAGE_ARGS); \
	  if [ "$(COVERAGE_VERDICT)" = report ] && [ $$status -ne 0 ]; then \
	    echo "coverage: pytest exited $$status under coverage (the verdict is make test's)"; \
	    status=0; fi; exit $$status

coverage-e2e: install cluster-up
	@rm -rf $(COVERAGE_DIR)-e2e && mkdir -p $(COVERAGE_DIR)-e2e
	@status=0; COVERAGE_FILE=$(COVERAGE_DIR)-e2e/coverage $(VENV)/bin/coverage run \
	    -m pytest -q -m cluster tests/cluster || status=$$?; \
	  COVERAGE_FILE=$(COVERAGE_DIR)-e2e/coverage $(VENV)/bin/coverage combine -q $(COVERAGE_DIR)-e2e && \
	  COVERAGE_FILE=$(COVERAGE_DIR)-e2e/coverage $(PY) -m tests.quality.coverage_table \
	    --json $(COVERAGE_DIR)-e2e/table.json; exit $$status

# mutmut is installed here only (the `mutation` extra): CI does not need it.
mutation: install
	@$(PY) -c 'import mutmut' 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check 'mutmut>=3.3,<4'
	$(PY) -m tests.quality.mutation $(MUTATION_ARGS) --report $(CURDIR)/.mutation/report.json

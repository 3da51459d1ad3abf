# Packages: `make dist` builds into dist/ the sdist and wheel of kdiag (the CLI, with the
# manager package inside), those of kdiag-manager (what the image installs), and the krew
# package of `kubectl kdiag` (kdiag-krew.tar.gz and its manifest kdiag.yaml; KREW_URL: where
# the archive will be published). `make wheel-test` installs the kdiag wheel, through the
# krew launcher, into a fresh venv and runs it (tests/dist/, in CI).
# Included by the root Makefile.

KREW_URL ?=

.PHONY: dist wheel-test

dist: install
	@rm -rf dist
	@for project in . manager; do \
	  log=$$(mktemp) && \
	  if $(PY) -m build --no-isolation -o dist $$project >"$$log" 2>&1; then rm -f "$$log"; \
	  else cat "$$log"; rm -f "$$log"; exit 1; fi; \
	done
	@$(PY) scripts/krew_package.py --dist dist $(if $(KREW_URL),--url $(KREW_URL)) >/dev/null
	@ls -1 dist

wheel-test: dist
	KDIAG_DIST=$(CURDIR)/dist $(VENV)/bin/pytest -q -m dist tests/dist

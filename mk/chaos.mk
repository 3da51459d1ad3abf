# The fault suite: faults repeated many times against real targets (see tests/chaos/).
# Included by the root Makefile. `make chaos` runs the node faults (root; a few minutes);
# CHAOS_ARGS passes options, e.g. CHAOS_ARGS="--only 'kill -9' --rounds 5".

.PHONY: chaos

chaos: install system-deps
	$(MAKE) --no-print-directory scratch-shell
	$(PY) -m tests.chaos $(CHAOS_ARGS)

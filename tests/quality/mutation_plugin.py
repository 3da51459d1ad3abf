"""A pytest plugin for ``make mutation`` only.

- Tests that start kdiag itself (the CLI, the manager, the demo) in another Python process are
  skipped: mutmut links a mutant to the tests that call its function in mutmut's own process;
  what a child process runs is never linked, so such a test can kill no mutant it is not
  already linked to, and it is slow and timing-bound with mutmut's trampolines in every child.
- A test that fails on the code as it is (mutmut's first runs: ``stats`` and the clean run) is
  excluded from the whole mutation run, and listed in ``mutation-excluded.txt``: it is
  timing-bound and missed its bound on a loaded machine with mutmut's overhead, so a failure
  of it later would kill a mutant by timing rather than by checking.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_MODULES = {"kdiag", "kdiag_manager", "demo", "tests.node.cli_helper"}
EXCLUDED = Path("mutation-excluded.txt")  # in mutmut's folder (the tests' working folder)


def _phase() -> str:
    """``unmutated`` (mutmut's stats and clean runs), ``fail`` (its check that a failure is
    seen) or ``mutant``."""
    current = os.environ.get("MUTANT_UNDER_TEST", "")
    if current in ("", "stats"):
        return "unmutated"
    return "fail" if current == "fail" else "mutant"


def _excluded() -> set[str]:
    return set(EXCLUDED.read_text().splitlines()) if EXCLUDED.exists() else set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _phase() == "mutant" and item.nodeid in _excluded():
        pytest.skip("failed on the unmutated code (mutation-excluded.txt)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _phase() == "unmutated":
        with EXCLUDED.open("a") as out:
            out.write(item.nodeid + "\n")
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           "failed on the unmutated code: excluded from the mutation run")


def _starts_kdiag(args: Any) -> bool:
    argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
    if not argv or argv[0] != sys.executable:
        return False
    return any(a == "-m" and b in _MODULES for a, b in itertools.pairwise(argv))


@pytest.fixture(autouse=True)
def _no_kdiag_children(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = subprocess.Popen.__init__

    def init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if _starts_kdiag(args):
            pytest.skip("starts kdiag in a child process (not linked by mutmut)")
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", init)
    yield

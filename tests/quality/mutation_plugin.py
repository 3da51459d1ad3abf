"""A pytest plugin for ``make mutation`` only: tests that start kdiag itself (the CLI, the
manager, the demo) in another Python process are skipped there.

mutmut links a mutant to the tests that call its function in mutmut's own process; what a
child process runs is never linked, so such a test can kill no mutant it is not already linked
to in-process, and it is slow and timing-bound with mutmut's trampolines loaded in every child.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

_MODULES = {"kdiag", "kdiag_manager", "demo", "tests.node.cli_helper"}


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

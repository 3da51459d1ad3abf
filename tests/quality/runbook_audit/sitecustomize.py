"""Records which example runbooks a ``kdiag run`` process loads (tests only).

The test session (tests/conftest.py) puts this folder on ``PYTHONPATH`` and names a log in
``KDIAG_RUNBOOK_LOG``; every Python process the tests start imports this at start-up. In a
``kdiag run`` that is not a ``--dry-run``, each file under ``KDIAG_RUNBOOK_DIR`` that it opens
(the runbook, and the library runbooks it includes) adds one JSON line to the log with the test
that started the process (pytest's ``PYTEST_CURRENT_TEST``). Other processes are untouched.
"""

from __future__ import annotations

import json
import os
import sys

_LOG = os.environ.get("KDIAG_RUNBOOK_LOG")
_DIR = os.environ.get("KDIAG_RUNBOOK_DIR")


def _is_kdiag_run() -> bool:
    argv = sys.argv
    if len(argv) < 2 or argv[1] != "run" or "--dry-run" in argv:
        return False
    program = os.path.normpath(argv[0])
    return (os.path.basename(program) in ("kdiag", "kubectl-kdiag")
            or program.endswith(os.path.join("kdiag", "__main__.py")))


def _hook(event: str, args: tuple) -> None:
    if event != "open" or not isinstance(args[0], str | os.PathLike):
        return
    path = os.fspath(args[0])
    if not isinstance(path, str) or not path.endswith((".yaml", ".yml")):
        return
    full = os.path.realpath(path)
    if not full.startswith(_DIR + os.sep) or not _is_kdiag_run():
        return
    line = json.dumps({"file": os.path.relpath(full, os.path.dirname(_DIR)),
                       "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0],
                       "pid": os.getpid()}) + "\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write under PIPE_BUF: lines never interleave
    finally:
        os.close(fd)


if _LOG and _DIR:
    sys.addaudithook(_hook)

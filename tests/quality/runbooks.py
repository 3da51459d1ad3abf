"""Which example runbooks the tests run, checked by running them, not by finding their names.

A test that runs an example declares it: ``@pytest.mark.runbook("runbooks/capture.yaml", ...)``
(library runbooks it includes too). While the tests run, every ``kdiag run`` process records
the files under ``runbooks/`` it loads (``runbook_audit/sitecustomize.py``); a declaring test
whose ``kdiag run`` did not load what it declared fails at teardown. ``--runbook-map PATH``
writes, at collection, which collected test declares which runbook (``test_cli.py`` checks
that every file in ``runbooks/`` is declared by a test that ``make test`` or ``make e2e`` runs).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = (ROOT / "runbooks").resolve()
AUDIT = Path(__file__).with_name("runbook_audit")


def configure(config: pytest.Config) -> None:
    """Start recording (every process the tests start inherits the environment)."""
    config.addinivalue_line("markers", "runbook(*paths): the example runbooks this test runs "
                                       "with `kdiag run` (checked: they must be loaded)")
    fd, log = tempfile.mkstemp(prefix="kdiag-runbooks-", suffix=".jsonl")
    os.close(fd)
    config.stash[_LOG] = Path(log)
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(AUDIT) + (os.pathsep + path if path else "")
    os.environ["KDIAG_RUNBOOK_LOG"] = log
    os.environ["KDIAG_RUNBOOK_DIR"] = str(RUNBOOKS)


def unconfigure(config: pytest.Config) -> None:
    """Remove the session's log."""
    log = config.stash.get(_LOG, None)
    if log is not None:
        log.unlink(missing_ok=True)


_LOG = pytest.StashKey[Path]()


def loaded_by(config: pytest.Config, nodeid: str) -> set[str]:
    """The runbook files (``runbooks/...``) that ``kdiag run`` processes started by test
    ``nodeid`` loaded."""
    log = config.stash[_LOG]
    files = set()
    for line in log.read_text().splitlines() if log.exists() else []:
        entry = json.loads(line)
        if entry["test"] == nodeid:
            files.add(entry["file"])
    return files


def declared(item: pytest.Item) -> list[str]:
    """The runbooks ``item`` declares it runs."""
    return [path for mark in item.iter_markers("runbook") for path in mark.args]


@pytest.fixture(autouse=True)
def _runbooks_really_ran(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test declaring runbooks fails unless its ``kdiag run`` loaded each of them."""
    yield
    wanted = declared(request.node)
    report = getattr(request.node, "_kdiag_call_report", None)
    if not wanted or report is None or not report.passed:
        return  # a failed or skipped test says so itself
    missing = sorted(set(wanted) - loaded_by(request.config, request.node.nodeid))
    if missing:
        pytest.fail(f"declares @pytest.mark.runbook {missing} but no `kdiag run` it started "
                    "loaded them", pytrace=False)


def remember_call_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """Keep the call phase's report on the item (the teardown check reads it)."""
    if report.when == "call":
        item._kdiag_call_report = report  # type: ignore[attr-defined]


def write_map(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--runbook-map PATH``: {runbook: [{test, markers, skipped}]} for the collected items."""
    path = config.getoption("runbook_map", None)
    if not path:
        return
    mapping: dict[str, list[dict[str, object]]] = {}
    for item in items:
        for runbook in declared(item):
            mapping.setdefault(runbook, []).append({
                "test": item.nodeid,
                "markers": sorted({m.name for m in item.iter_markers()}),
                "skipped": any(not m.args or m.args[0] is True
                               for m in item.iter_markers("skip")) or
                           any(m.args and m.args[0] is True for m in item.iter_markers("skipif")),
            })
    Path(path).write_text(json.dumps(mapping, indent=2, sort_keys=True) + "\n")

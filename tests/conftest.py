"""Session-wide test plumbing: which example runbooks the tests really run (see
``tests/quality/runbooks.py``)."""

from __future__ import annotations

import pytest

from tests.quality import runbooks
from tests.quality.runbooks import _runbooks_really_ran  # noqa: F401  (autouse fixture)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runbook-map", default=None,
                     help="write which collected test runs which example runbook (JSON)")


def pytest_configure(config: pytest.Config) -> None:
    runbooks.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    runbooks.unconfigure(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    runbooks.write_map(config, items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    runbooks.remember_call_report(item, outcome.get_result())

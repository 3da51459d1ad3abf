"""Every report format of one fixed run, whole, against the expected files in ``expected/``.

The other report tests check single facts; these pin every word, number and tag a reader sees
(a status word, a unit, a timestamp's zone, a column header), so a change to any of them shows
here as a diff to review. The run (``timeline_run``) has a background redirect with counters, a
retried step, log lines and a failed assertion, and a secret that must not appear. The clock
runs in a zone other than UTC: the reports' times must still be UTC.

After an intended change to a report: ``KDIAG_UPDATE_EXPECTED=1 pytest tests/unit/test_report_whole.py``
and review the diff of ``tests/unit/expected/`` like code.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdiag.engine.bus import EventBus
from kdiag.engine.masking import Masker
from kdiag.reports.console import ConsoleReporter
from kdiag.reports.html import HtmlReporter
from kdiag.reports.json_report import JsonReporter
from kdiag.reports.junit import JunitReporter
from kdiag.reports.markdown import MarkdownReporter
from tests.unit.timeline_run import SECRET, T0, events

EXPECTED = Path(__file__).with_name("expected")
FORMATS = ["md", "md-text", "html", "junit.xml", "json", "console.txt"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # +05:30: a report in local time would show
    time.tzset()
    try:
        yield _render(tmp_path_factory.mktemp("reports"))
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def _render(folder: Path) -> dict[str, str]:
    files = {"md": MarkdownReporter(str(folder / "r.md"), clock=lambda: T0 + 9),
             "md-text": MarkdownReporter(str(folder / "t.md"), timeline="text",
                                         clock=lambda: T0 + 9),
             "html": HtmlReporter(str(folder / "r.html"), clock=lambda: T0 + 9),
             "junit.xml": JunitReporter(str(folder / "r.xml"), clock=lambda: T0 + 9),
             "json": JsonReporter(str(folder / "r.json"), clock=lambda: T0 + 9)}
    plain = io.StringIO()
    console = ConsoleReporter(plain, env={})
    bus = EventBus([*files.values(), console], Masker([SECRET]))
    for event in events():
        bus.emit(event)
    for reporter in [*files.values(), console]:
        reporter.close()
    out = {name: Path(reporter.path).read_text() for name, reporter in files.items()}
    out["console.txt"] = plain.getvalue()
    return out


@pytest.mark.parametrize("name", FORMATS)
def test_report_is_the_expected_one(rendered: dict[str, str], name: str) -> None:
    expected = EXPECTED / f"report.{name}"
    if os.environ.get("KDIAG_UPDATE_EXPECTED"):
        expected.write_text(rendered[name])
    assert rendered[name] == expected.read_text()
    assert SECRET not in rendered[name]

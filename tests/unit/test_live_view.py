"""The live region's spinner lines (``kdiag run`` on a terminal): a step's name and time, and
its attempt number only once it is retried."""

from __future__ import annotations

import io
import time

from rich.console import Console
from rich.spinner import Spinner

from kdiag.engine.events import StepRef
from kdiag.reports.console_view import LiveView, Running


def _render(*attempts: int) -> list[str]:
    view = LiveView()
    view.entries = tuple(Running(StepRef(i, f"step{i}", "run", seq=i + 1), attempt,
                                 time.monotonic() - 2.5, Spinner("line"))
                         for i, attempt in enumerate(attempts))
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(view)
    return out.getvalue().splitlines()


def test_a_first_attempt_has_no_label_and_a_retry_says_which_attempt_it_is() -> None:
    first, retried = _render(1, 3)
    assert "step0" in first and " 2.5" in first and "attempt" not in first
    assert "step1" in retried and retried.rstrip().endswith("attempt 3")

"""``keep_up``: a step's work kept up for its ``duration`` (not in the background) ends early
and fails the step with the cause when the work dies (an environment problem or a step failure,
as the loss says); it is stopped in every case; in the background it is handed to the engine."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kdiag.errors import EnvironmentProblem
from kdiag.lifeline import Lifeline
from kdiag.steps.base import StepFailed, keep_up, lifeline_of


class Work:
    def __init__(self, lifeline: Lifeline | None = None) -> None:
        if lifeline is not None:
            self.lifeline = lifeline
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


def _ctx(background: bool = False) -> Any:
    return SimpleNamespace(background=background, cancelled=threading.Event())


def _dies(lifeline: Lifeline, cause: str, environmental: bool) -> None:
    threading.Timer(0.2, lambda: lifeline.fail(cause, environmental=environmental)).start()


@pytest.mark.parametrize("environmental, error", [(True, EnvironmentProblem),
                                                  (False, StepFailed)])
def test_work_that_dies_ends_the_step_early_with_the_cause(environmental: bool,
                                                           error: type[Exception]) -> None:
    lifeline = Lifeline()
    work = Work(lifeline)
    _dies(lifeline, "the tunnel closed", environmental)
    began = time.monotonic()
    with pytest.raises(error, match=r"^the tunnel closed$"):
        keep_up(cast(Any, work), {"duration": "5s"}, _ctx(), {"n": 1})
    assert time.monotonic() - began < 4
    assert work.stopped == 1


def test_work_that_lives_is_kept_for_the_duration_then_stopped() -> None:
    work = Work(Lifeline())
    began = time.monotonic()
    outcome = keep_up(cast(Any, work), {"duration": "300ms"}, _ctx(), {"n": 1})
    assert time.monotonic() - began >= 0.3
    assert (outcome.result, outcome.background, work.stopped) == ({"n": 1}, None, 1)


def test_in_the_background_the_work_goes_to_the_engine() -> None:
    work = Work(Lifeline())
    outcome = keep_up(cast(Any, work), {"duration": "20s"}, _ctx(background=True), {"n": 2})
    assert outcome.background is work and outcome.result == {"n": 2} and work.stopped == 0


def test_only_a_lifeline_counts_as_one() -> None:
    lifeline = Lifeline()
    assert lifeline_of(cast(Any, Work(lifeline))) is lifeline
    assert lifeline_of(cast(Any, Work())) is None
    assert lifeline_of(cast(Any, SimpleNamespace(lifeline="not one", stop=None))) is None

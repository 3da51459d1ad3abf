"""A run to draw, as events: a background redirect with connection counters, a step retried
until it passed, and a failed assertion over log lines (issue 20's picture), all at fixed
times. ``SECRET`` is in some of them, as a step would print it: the events go through the
engine's event bus, which masks it, before any reporter sees them."""

from __future__ import annotations

from kdiag.engine.events import (
    AssertionResult,
    AttemptFinished,
    BackgroundStopped,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepOutput,
    StepProgress,
    StepRef,
    StepStarted,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SECRET = "tok-Zq81-secret"

REDIRECT = StepRef(0, "redirect the api", "redirect", seq=1)
WAIT = StepRef(1, "wait for the api", "http", seq=2)
LOGS = StepRef(2, "logs around a call", "logs", seq=3)
SKIPPED = StepRef(3, "after", "note", seq=4)


def counts(to_operator: int, to_app: int, rejected: int = 0, open_: int = 0) -> dict[str, int]:
    return {"to_operator": to_operator, "to_app": to_app, "rejected": rejected, "dropped": 0,
            "open": open_, "closed": to_operator + to_app - open_, "bytes_in": 10,
            "bytes_out": 20}


LINES = [
    {"pod": "api-0", "container": "app", "text": "GET /call 200", "time": "2023-11-14T22:13:21.900000000Z"},
    {"pod": "api-0", "container": "app", "text": f"order 42 paid with {SECRET}",
     "time": "2023-11-14T22:13:22.100000000Z"},
    {"pod": "api-0", "container": "app", "text": "payment declined: card expired",
     "time": "2023-11-14T22:13:22.450123456Z"},
]
HELD = AssertionResult(LOGS, "around.lines | selectattr('text', 'search', 'order \\\\d+') | list",
                       True, {"around.count": "3"})
FIRED = AssertionResult(LOGS, "'payment declined' not in around.text", False,
                        {"around.text": f"... order 42 paid with {SECRET} ..."})


def events() -> list[Event]:
    return [
        RunStarted("checkout", "runbooks/checkout.yaml", {"token": SECRET, "port": 8080},
                   "pod (namespace=shop, pod=api-0)", 4, T0),
        StepStarted(REDIRECT, 1, T0),
        StepOutput(REDIRECT, "redirect", "incoming redirect of 8080 -> 127.0.0.1:9000\n"),
        StepFinished(REDIRECT, "passed", 0.05, 1, result={"stats": counts(0, 0)}),
        StepStarted(WAIT, 1, T0 + 0.1),
        AttemptFinished(WAIT, 1, "failed", "connection refused", 0.2),
        StepStarted(WAIT, 2, T0 + 0.8),
        StepProgress(REDIRECT, T0 + 0.6, counts(1, 0, open_=1)),
        AttemptFinished(WAIT, 2, "failed", "status 503", 0.1),
        StepStarted(WAIT, 3, T0 + 1.4),
        StepProgress(REDIRECT, T0 + 1.3, counts(3, 2)),
        AttemptFinished(WAIT, 3, "passed", "", 0.3),
        StepFinished(WAIT, "passed", 1.6, 3),
        StepStarted(LOGS, 1, T0 + 1.8),
        StepOutput(LOGS, "api-0/app", "".join(f"{line['text']}\n" for line in LINES)),
        StepProgress(REDIRECT, T0 + 2.2, counts(4, 2, rejected=1)),
        HELD,
        FIRED,
        StepFinished(LOGS, "failed", 0.9, 1, message="assertion failed: "
                     "'payment declined' not in around.text",
                     result={"lines": LINES, "count": 3}, assertions=(HELD, FIRED)),
        StepFinished(SKIPPED, "skipped", 0.0, 0, message="not run: an earlier step failed"),
        BackgroundStopped(REDIRECT, T0 + 2.9),
        RunFinished("failed", 1, 3.0, {"passed": 2, "failed": 1, "skipped": 1},
                    "a step failed"),
    ]

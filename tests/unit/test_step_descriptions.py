"""What a step says it will do (step mode's question, the plan, live status), for the step
types whose description depends on their fields."""

from __future__ import annotations

from typing import Any

import pytest

from kdiag.steps import step_types


@pytest.mark.parametrize("body, text", [
    ({"all": True}, "all processes"),
    ({"all": False}, "the target's processes"),
    ({}, "the target's processes"),
    (None, "the target's processes"),
])
def test_ps(body: Any, text: str) -> None:
    assert step_types()["ps"].describe(body) == text


@pytest.mark.parametrize("body, text", [
    ({"ports": [8080, 9090], "to": "127.0.0.1:3000"}, "incoming 8080, 9090 -> 127.0.0.1:3000"),
    ({"direction": "outgoing", "ports": [443]}, "outgoing 443 -> 127.0.0.1"),
    ("{{ not rendered }}", ""),
    (None, ""),
])
def test_redirect(body: Any, text: str) -> None:
    assert step_types()["redirect"].describe(body) == text


@pytest.mark.parametrize("body, text", [
    ({"argv": ["env"], "from_target": {"env": True, "files": ["/etc/app"]}},
     "env (with the target's env, files)"),
    ({"argv": ["env"], "from_target": {"names": True}}, "env (with the target's names)"),
    ({"argv": ["env"], "from_target": {"env": False}}, "env"),
    ({"argv": ["env"], "connect": {"services": ["db"]}}, "env (with cluster Service names)"),
])
def test_run(body: Any, text: str) -> None:
    assert step_types()["run"].describe(body) == text

"""The ``logs`` step in a run, with stand-ins for the cluster's log streams (as in
``test_logs_command``): the container it names is the one followed on each pod, and what it
registers holds the lines (``result.lines`` with their pod and container)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.unit.test_logs_command import Follower, pods  # noqa: F401  (the fixture)


class StepFollower(Follower):
    """The command's stand-in, with what the step reads of it at the end."""

    errors: list[str] = []


@pytest.fixture(autouse=True)
def _step_follower(pods: list[Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:  # noqa: F811
    import kdiag.kube.logs as logs

    monkeypatch.setattr(logs, "LogFollower", StepFollower)
    yield


def test_the_named_container_is_followed_on_each_pod(
        pods: list[Any], run_runbook: Callable[..., Any]) -> None:  # noqa: F811
    outcome = run_runbook("""
        target: {kubernetes: {namespace: shop, selector: app=shop}}
        steps:
          - name: side logs
            logs: {namespace: shop, selector: app=shop, container: side, duration: 0s}
            register: seen
            assert: ["seen.count == 4"]
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()["side logs"].message
    (follower,) = Follower.made
    assert [s.label for s in follower.sources] == ["shop-0/side", "shop-1/side"]
    assert "following shop-0/side, shop-1/side" in outcome.recorder.output("side logs")
    assert pods[0][1] == "all"  # every pod the selector matches


def test_without_a_container_each_pods_default_one_is_followed(
        pods: list[Any], run_runbook: Callable[..., Any]) -> None:  # noqa: F811
    outcome = run_runbook("""
        target: {kubernetes: {namespace: shop, selector: app=shop}}
        steps:
          - {name: default logs, logs: {namespace: shop, selector: app=shop, duration: 0s}}
    """)
    assert outcome.exit_code == 0
    (follower,) = Follower.made
    assert [s.label for s in follower.sources] == ["shop-0/app", "shop-1/app"]

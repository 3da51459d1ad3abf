"""``kdiag logs`` in-process, with stand-ins for the cluster's log streams: each line prefixed
``[pod/container]``, ``--since`` in whole seconds, ``-c all`` every container, a local command
run while following (its exit code is the command's), a selector following new pods, and a
follower that dies ending the command with exit 3 and its cause."""

from __future__ import annotations

import threading
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.cli.main import main
from kdiag.kube.logs import LogLine
from kdiag.lifeline import Lifeline
from tests.unit.kubefakes import FakePodGuard as Guard


class Follower:
    made: list[Follower] = []
    lines = ["started", "ready"]
    die = ""

    def __init__(self, core: Any, sources: list[Any], on_line: Any, since: int | None,
                 server: str, new_pods: Any) -> None:
        self.sources, self.on_line, self.since, self.new_pods = sources, on_line, since, new_pods
        self.lifeline = Lifeline()
        self.stopped = 0
        Follower.made.append(self)

    def start(self) -> None:
        for source in self.sources:
            for text in Follower.lines:
                self.on_line(LogLine(source, text))
        if Follower.die:
            threading.Timer(0.01, self.lifeline.fail, [Follower.die]).start()

    def stop(self) -> None:
        self.stopped += 1


@pytest.fixture
def pods(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import kdiag.kube.logs as logs
    import kdiag.kube.podguard as podguard
    import kdiag.kube.pods as kube_pods
    import kdiag.targets.kubernetes as kubernetes

    asked: list[Any] = []
    found = [NS(namespace="shop", name=f"shop-{i}", uid=f"u{i}", container="app",
                containers=["app", "side"]) for i in range(2)]

    def selection_for_step(target: Any, body: Any, *, pick: str) -> Any:
        asked.append((body, pick))
        return NS(core=lambda: None, server=""), NS(namespace=body["namespace"])

    def select(core: Any, want: Any, server: str, *, ready: bool) -> Any:
        selector = asked[-1][0]["selector"] or ""
        return NS(pods=found if selector else found[:1], selector=selector)

    monkeypatch.setattr(kubernetes, "selection_for_step", selection_for_step)
    monkeypatch.setattr(kube_pods, "select", select)
    monkeypatch.setattr(logs, "LogFollower", Follower)
    monkeypatch.setattr(podguard, "PodGuard", Guard)
    Follower.made, Follower.die, Guard.made = [], "", []
    return asked


def test_lines_prefixed_around_a_command_whose_exit_code_is_kept(pods, capfd) -> None:
    code = main(["logs", "-l", "app=shop", "-n", "shop", "--since", "90.2s", "-c", "all",
                 "--drain", "0s", "--", "sh", "-c", "echo from-the-command; exit 3"])
    out, err = capfd.readouterr()
    assert code == 3, err
    (follower,) = Follower.made
    assert follower.since == 91
    assert follower.new_pods.selector == "app=shop" and follower.new_pods.known == {"u0", "u1"}
    assert pods[0][0]["container"] is None and pods[0][1] == "all"
    lines = out.splitlines()
    assert lines[:8] == [f"[shop-{i}/{c}] {t}" for i in range(2) for c in ("app", "side")
                         for t in ("started", "ready")]
    assert lines[8:] == ["from-the-command"]
    assert err == "following shop-0/app, shop-0/side, shop-1/app, shop-1/side\n"
    assert follower.stopped == 1
    assert Guard.made == []  # pods come and go under a selector


def test_a_follower_that_dies_ends_it_with_its_cause(pods, capsys) -> None:
    Follower.die = "log stream of shop-0/app: 403 Forbidden"
    assert main(["logs", "shop-0", "-n", "shop"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == ("kdiag: error: logs ended: log stream of shop-0/app: 403 "
                                    "Forbidden")
    (follower,) = Follower.made
    assert follower.new_pods is None and follower.since is None
    assert [s.label for s in follower.sources] == ["shop-0/app"]
    assert follower.stopped == 1
    assert [(g.pod.name, g.events) for g in Guard.made] == [("shop-0", ["start", "stop"])]


@pytest.mark.parametrize(("args", "message"), [
    (["logs", "--pid", "1"], "logs works on pods only"),
    (["logs", "shop-0", "--since", "yesterday"], "yesterday"),
    (["logs", "shop-0", "--drain", "0s", "--", "no-such-command-kdiag"],
     "cannot run no-such-command-kdiag"),
])
def test_mistakes_exit_2(pods, capsys, args: list[str], message: str) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err

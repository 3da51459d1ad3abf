"""Starting a command plainly (no private view) and choosing the view: a command that cannot
be started is one line saying why (not found, not runnable, a cwd that is not a folder), and
without root the view is a user namespace where one can be made, else the remap, or an error
when ``namespace`` was asked for; the target spec a run cannot open is one line too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kdiag.errors import EnvironmentProblem
from kdiag.launch import view
from kdiag.launch.launcher import Launch, LaunchError, start
from kdiag.launch.view import View, choose
from kdiag.targets.factory import open_target


def test_a_command_started_plainly_runs_with_its_env_and_cwd(tmp_path: Path) -> None:
    process = start(Launch(["sh", "-c", "echo $GREETING; pwd"], {"GREETING": "hi"},
                           cwd=str(tmp_path)), stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=30)
    assert (process.returncode, out.decode()) == (0, f"hi\n{tmp_path}\n")


def test_what_cannot_be_started_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("echo not runnable\n")
    plain.chmod(0o644)
    cases = [
        (Launch(["no-such-command-kdiag"], {"PATH": "/usr/bin:/bin"}),
         "command not found: no-such-command-kdiag"),
        (Launch(["true"], {"PATH": "/usr/bin:/bin"}, cwd=str(tmp_path / "absent")),
         f"cwd is not a directory: {tmp_path / 'absent'}"),
        (Launch(["true"], {"PATH": "/usr/bin:/bin"}, cwd=str(plain)),
         f"cwd is not a directory: {plain}"),
        (Launch([str(plain)], {}), f"cannot run {plain}: Permission denied"),
    ]
    for launch, line in cases:
        with pytest.raises(LaunchError) as caught:
            start(launch)
        assert str(caught.value) == line


def test_the_view_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose("remap") == View("remap", reason="asked for")
    monkeypatch.setattr(view.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(view, "userns_problem", lambda: None)
    assert choose("auto") == View("namespace", userns=True)
    monkeypatch.setattr(view, "userns_problem", lambda: "unshare: Operation not permitted")
    assert choose("auto") == View("remap", reason="not root, and no user namespace (unshare: "
                                                  "Operation not permitted)")
    with pytest.raises(ValueError, match=r"^no private mount namespace: not root, and no user "
                       r"namespace \(unshare: Operation not permitted\)$"):
        choose("namespace")


def test_the_user_namespace_probe_is_asked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper in probe mode answers (None: one can be made, as root here), once."""
    import os

    monkeypatch.setattr(view, "_userns_checked", False)
    monkeypatch.setattr(view, "_userns_problem", "stale")
    first = view.userns_problem()
    if os.geteuid() == 0:
        assert first is None
    else:
        assert first is None or (first and "\n" not in first)
    monkeypatch.setattr(view, "_userns_problem", "kept")
    assert view.userns_problem() == "kept"


@pytest.mark.parametrize(("spec", "message"), [
    ({"node": {"pid": "abc"}}, "target node: pid must be a number, got 'abc'"),
    ({"node": {}}, "target node: pid must be a number, got None"),
    ({"docker": {"id": "x"}}, "target 'docker' is not supported"),
])
def test_a_target_that_cannot_be_opened_is_one_line(spec: dict[str, dict[str, str]],
                                                    message: str) -> None:
    with pytest.raises(EnvironmentProblem) as caught:
        open_target(spec)
    assert str(caught.value) == message

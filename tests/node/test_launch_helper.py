"""The launch helper (``kdiag/launch/mountns.py``) run in a forked child of the test, not as
its own ``python3 -I -S`` process: the same views as ``test_launch_views`` (a mount namespace,
one in a user namespace too, a shadow, a new root, something of the wrong type in the way), the
same command checking them, and its one-line failures on the error pipe with exit 127."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kdiag.launch import mountns
from tests.node.test_launch_views import LOOK, check_untouched, private_folder

SEEN = ["0", "top-file", "shadow-file", "passwd-kept", "127.77.0.9      kdiag-test-name",
        "read-only", "/tmp", ""]


def helper(plan: dict[str, object], cwd: str = "/tmp") -> tuple[int, str, str]:
    """Run ``mountns.main`` in a forked child with ``plan``: its exit code, what the command
    printed, and the helper's error line."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    plan_read, plan_write = os.pipe()
    os.write(plan_write, json.dumps(plan).encode())
    os.close(plan_write)
    pid = os.fork()
    if pid == 0:  # the child: becomes the command, or exits 127 (99: main returned)
        try:
            os.chdir(cwd)
            os.dup2(out_write, 1)
            sys.argv = ["mountns.py", str(plan_read), str(err_write)]
            mountns.main()
        finally:
            os._exit(99)
    for fd in (out_write, err_write, plan_read):
        os.close(fd)
    with os.fdopen(out_read, "rb") as out, os.fdopen(err_read, "rb") as err:
        printed, problem = out.read().decode(), err.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), printed, problem


def plan(argv: list[str], binds: list[tuple[str, str]], newroot: Path, *,
         userns: bool = False) -> dict[str, object]:
    return {"argv": argv, "env": {"PATH": os.defpath}, "binds": binds, "userns": userns,
            "uid": os.getuid(), "gid": os.getgid(), "newroot": str(newroot)}


@pytest.mark.parametrize("userns", [False, True], ids=["mount-namespace", "user-namespace"])
def test_the_command_sees_the_binds_read_only_and_nothing_else_changes(
        tmp_path: Path, userns: bool) -> None:
    base, binds = private_folder(tmp_path / "private", 0)
    code, printed, problem = helper(plan(["sh", "-c", LOOK], binds, base / "newroot",
                                         userns=userns))
    assert (code, problem) == (0, "")
    assert printed.split("\n") == SEEN
    check_untouched()


def test_a_folder_bound_where_a_file_is(tmp_path: Path) -> None:
    """``/etc/hostname`` is a file here: in the view it is the bound folder."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside").write_text("in-the-folder\n")
    (tmp_path / "newroot").mkdir()
    code, printed, problem = helper(plan(["sh", "-c", "cat /etc/hostname/inside"],
                                         [(str(folder), "/etc/hostname")], tmp_path / "newroot"))
    assert (code, problem, printed) == (0, "", "in-the-folder\n")
    assert Path("/etc/hostname").is_file()


def test_a_folder_that_is_gone_is_left_for_root(tmp_path: Path) -> None:
    """The command starts in ``/`` when the folder it was started from is not in its view (an
    empty folder is bound over the one holding it)."""
    (tmp_path / "covered" / "here").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "newroot").mkdir()
    code, printed, problem = helper(plan(["pwd"], [(str(tmp_path / "empty"),
                                                    str(tmp_path / "covered"))],
                                         tmp_path / "newroot"),
                                    cwd=str(tmp_path / "covered" / "here"))
    assert (code, problem) == (0, "")
    assert printed == "/\n"


@pytest.mark.parametrize(("argv", "binds", "line"), [
    (["no-such-command-kdiag"], [], "command not found: no-such-command-kdiag"),
    (["{tmp}/plain"], [], "cannot run {tmp}/plain: Permission denied"),
    (["{tmp}/not-a-program"], [], "Exec format error"),
    (["true"], [("/kdiag-no-such-source", "/kdiag-test-top")], "No such file or directory"),
])
def test_a_failure_before_the_exec_is_one_line_and_exit_127(
        tmp_path: Path, argv: list[str], binds: list[tuple[str, str]], line: str) -> None:
    (tmp_path / "newroot").mkdir()
    (tmp_path / "plain").write_text("not executable\n")
    (tmp_path / "not-a-program").write_bytes(b"\x7fELF-not-really")
    (tmp_path / "not-a-program").chmod(0o755)
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code, printed, problem = helper(plan(argv, binds, tmp_path / "newroot"))
    line = line.format(tmp=tmp_path)
    assert (code, printed, problem) == (127, "", line)
    check_untouched()


def test_an_unreadable_plan_is_one_line_and_exit_127() -> None:
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sys.argv = ["mountns.py", str(out_read), str(err_write)]
            os.close(out_write)  # the plan: an empty pipe, not JSON
            mountns.main()
        finally:
            os._exit(99)
    os.close(out_write)
    os.close(err_write)
    with os.fdopen(err_read, "rb") as err:
        problem = err.read().decode()
    _, status = os.waitpid(pid, 0)
    os.close(out_read)
    assert os.waitstatus_to_exitcode(status) == 127
    assert problem.startswith("Expecting value")

"""The manager's ReadTree and Environ calls, for real, on a node target: a folder and its
files' bytes in one stream (links listed, never followed; limits before anything is sent),
and the target process's environment byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from demo.lab import Lab
from kdiag.errors import ManagerError
from kdiag.session.results import RemoteEntry
from kdiag.session.treeread import read_tree
from kdiag.targets.node import NodeTarget

from .conftest import ENTER


def _tree(items: list[RemoteEntry | bytes]) -> dict[str, object]:
    found: dict[str, object] = {}
    current = ""
    for item in items:
        if isinstance(item, bytes):
            found[current] = bytes(found[current]) + item  # type: ignore[call-overload]
        else:
            current = item.path
            found[current] = b"" if item.kind == "file" else (item.kind, item.link)
    return found


def test_read_tree_streams_a_folder_and_its_files(app: Lab) -> None:
    etc = app.root / "etc" / "tree"
    (etc / "sub").mkdir(parents=True)
    (etc / "a.conf").write_bytes(b"alpha\n")
    (etc / "sub" / "big.bin").write_bytes(os.urandom(200_000))
    (etc / "link").symlink_to("/etc/passwd")  # listed, never followed
    os.mkfifo(etc / "pipe")  # listed, never opened
    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
    try:
        tree = _tree(list(read_tree(session.manager, "/etc/tree")))
        assert tree == {"a.conf": b"alpha\n", "link": ("symlink", "/etc/passwd"),
                        "pipe": ("other", ""), "sub": ("dir", ""),
                        "sub/big.bin": (etc / "sub" / "big.bin").read_bytes()}
        with pytest.raises(ManagerError, match="over the limit of 100000") as over:
            list(read_tree(session.manager, "/etc/tree", max_bytes=100_000))
        assert over.value.code == "RESOURCE_EXHAUSTED"
        with pytest.raises(ManagerError, match="more than 2 entries"):
            list(read_tree(session.manager, "/etc/tree", max_entries=2))
        with pytest.raises(ManagerError, match="Not a directory"):
            list(read_tree(session.manager, "/etc/tree/a.conf"))
        # Through a symlinked folder in the target's root: resolved inside that root.
        (app.root / "etc" / "alias").symlink_to("/etc/tree")
        assert _tree(list(read_tree(session.manager, "/etc/alias")))["a.conf"] == b"alpha\n"
    finally:
        session.close()


def test_environ_is_the_target_process_environment(lab: Lab, app_binary: Path) -> None:
    lab.start_app(app_binary, 8080, env={"ONE": "1", "TWO": "a=b=c", "RAW": os.fsdecode(b"\xff")})
    session = NodeTarget(lab.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
    try:
        found = dict(session.manager.environ())
    finally:
        session.close()
    assert found["ONE"] == "1" and found["TWO"] == "a=b=c"
    assert os.fsencode(found["RAW"]) == b"\xff"

"""A folder listing from the target cannot make a download write outside the local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kdiag.errors import ManagerError
from kdiag.session.results import RemoteEntry, RemoteFile
from kdiag.session.trees import download_tree


class _Listing:
    """A manager that answers one listing (what a tampered target could send)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.fetched: list[str] = []

    def list_dir(self, remote: str, max_entries: int = 0) -> tuple[list[RemoteEntry], bool]:
        return [RemoteEntry(p, "file", RemoteFile(p, 1, 0o644, 0, 0, 0.0)) for p in self.paths], False

    def copy_from(self, remote: str, local: Path, max_bytes: int = 0) -> RemoteFile:
        self.fetched.append(str(local))
        local.write_text("x")
        return RemoteFile(remote, 1, 0o644, 0, 0, 0.0)


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", "a/../../b", ""])
def test_paths_leaving_the_folder_are_refused(tmp_path: Path, bad: str) -> None:
    manager: Any = _Listing(["fine", bad])
    with pytest.raises(ManagerError, match="unsafe path"):
        download_tree(manager, "/etc/app", tmp_path / "got", max_file_bytes=10,
                      max_total_bytes=100)
    assert manager.fetched == [str(tmp_path / "got" / "fine")]
    assert not (tmp_path / "outside").exists()


def test_total_size_is_checked_before_anything_is_fetched(tmp_path: Path) -> None:
    manager: Any = _Listing(["a", "b", "c"])
    with pytest.raises(ManagerError, match="3 bytes of files, over max_bytes 2"):
        download_tree(manager, "/d", tmp_path / "got", max_file_bytes=10, max_total_bytes=2)
    assert manager.fetched == []

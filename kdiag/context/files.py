"""Copying a target's files and folders into a private folder, read-only.

Each listed path is read through the manager (``ReadFile``; a folder: ``ListDir``, then each
file), never following a symlink out of the target's root. Inside a copied folder, a symlink
that stays in the folder is made again as it is (Kubernetes mounts ConfigMaps and Secrets as
``key -> ..data/key``, ``..data -> ..2026_12_01...``); one that leaves it is read through (the
file it points to in the target is copied in its place); anything else (a link to a folder
outside, a device, a socket) is listed as not copied. Files and folders lose their write bits.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kdiag.errors import ManagerError

from .folder import PrivateFolder
from .spec import MAX_ENTRIES

if TYPE_CHECKING:
    from kdiag.session.client import ManagerClient
    from kdiag.session.results import RemoteEntry


@dataclass
class CopiedPath:
    """One listed path: a file, or a folder and what it held."""

    path: str  # in the target, normalized (no trailing slash)
    kind: str  # file | dir
    local: Path
    files: list[str] = field(default_factory=list)  # in the target, absolute
    size: int = 0
    links: int = 0
    not_copied: list[dict[str, str]] = field(default_factory=list)  # path, kind, why

    def summary(self) -> dict[str, object]:
        """Plain data for the step's result (paths and sizes, never contents)."""
        return {"path": self.path, "kind": self.kind, "files": len(self.files),
                "size": self.size, "links": self.links, "not_copied": self.not_copied}


@dataclass
class FileCopy:
    """What was copied, and how long it took."""

    paths: list[CopiedPath] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def size(self) -> int:
        """Bytes copied in all."""
        return sum(p.size for p in self.paths)


class Cancelled(Exception):
    """The step was cancelled (timeout, Ctrl-C) while files were being copied."""


class _Budget:
    """What may still be copied; and whether to go on at all."""

    def __init__(self, max_bytes: int, cancelled: threading.Event | None) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.cancelled = cancelled

    def take(self, size: int, what: str) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise Cancelled(f"cancelled while copying {what}")
        if self.used + size > self.max_bytes:
            raise ManagerError(f"{what}: copying it goes over max_bytes ({self.max_bytes} "
                               f"bytes for all files)")
        self.used += size

    def left(self) -> int:
        return max(1, self.max_bytes - self.used)


def copy_paths(manager: ManagerClient, paths: tuple[str, ...], folder: PrivateFolder,
               max_bytes: int, cancelled: threading.Event | None = None) -> FileCopy:
    """Copy every listed path of the target into ``folder`` (ManagerError naming the path
    that could not be copied; Cancelled when ``cancelled`` is set meanwhile)."""
    started = time.monotonic()
    done = FileCopy()
    budget = _Budget(max_bytes, cancelled)
    covered: list[str] = []
    for wanted in sorted(paths, key=lambda p: p.rstrip("/")):
        path = wanted.rstrip("/")
        if any(path == c or path.startswith(c + "/") for c in covered):
            continue  # inside a folder already copied
        local = folder.local(path)
        local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        copied = None if wanted.endswith("/") else _copy_file(manager, path, local, budget)
        if copied is None:
            copied = _copy_folder(manager, path, local, budget)
            covered.append(path)
        done.paths.append(copied)
    _read_only(folder.root)
    done.seconds = time.monotonic() - started
    return done


def _copy_file(manager: ManagerClient, path: str, local: Path, budget: _Budget
               ) -> CopiedPath | None:
    """Copy one file (None: ``path`` is a folder)."""
    try:
        got = manager.copy_from(path, local, max_bytes=budget.left())
    except ManagerError as exc:
        if exc.code == "INVALID_ARGUMENT" and str(exc).endswith("is a directory"):
            return None
        raise
    budget.take(got.size, path)
    return CopiedPath(path, "file", local, [path], got.size)


def _inside(base: Path, relative: str) -> Path:
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise ManagerError(f"unsafe path in the listing: {relative!r}")
    return base.joinpath(*rel.parts)


def _copy_folder(manager: ManagerClient, path: str, local: Path, budget: _Budget) -> CopiedPath:
    """The folder in one stream (ReadTree); from a manager without that call, listed and then
    read file by file."""
    local.mkdir(exist_ok=True, mode=0o700)
    copied = CopiedPath(path, "dir", local)
    links: list[tuple[Path, str]] = []
    try:
        _streamed(manager, path, budget, copied, links)
    except ManagerError as exc:
        if exc.code != "UNIMPLEMENTED":
            raise
        _file_by_file(manager, path, budget, copied, links)
    for dest, link in links:  # last: no file is ever written through a link we made
        os.symlink(link, dest)
        copied.links += 1
    return copied


def _streamed(manager: ManagerClient, path: str, budget: _Budget, copied: CopiedPath,
              links: list[tuple[Path, str]]) -> None:
    from kdiag.session.treeread import read_tree

    out: int | None = None
    limit = budget.left()  # (the manager holds to it too)
    try:
        for item in read_tree(manager, path, max_entries=MAX_ENTRIES, max_bytes=limit):
            if isinstance(item, bytes):
                if out is None:
                    raise ManagerError(f"read {path}: data without a file")
                copied.size += len(item)
                if copied.size > limit:
                    raise ManagerError(f"{path}: copying it goes over max_bytes "
                                       f"({budget.max_bytes} bytes for all files)")
                os.write(out, item)
                continue
            if out is not None:
                os.close(out)
                out = None
            budget.take(0, posixpath.join(path, item.path))  # (cancelled?)
            if item.kind == "file":
                out = os.open(_inside(copied.local, item.path),
                              os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                              stat.S_IMODE(item.file.mode) | 0o600)
                copied.files.append(posixpath.join(path, item.path))
            else:
                _other(manager, path, item, copied, links, budget)
    finally:
        if out is not None:
            os.close(out)
    budget.used += copied.size


def _file_by_file(manager: ManagerClient, path: str, budget: _Budget, copied: CopiedPath,
                  links: list[tuple[Path, str]]) -> None:
    entries, truncated = manager.list_dir(path, max_entries=MAX_ENTRIES)
    if truncated:
        raise ManagerError(f"{path} holds more than {MAX_ENTRIES} entries")
    budget.take(sum(e.file.size for e in entries if e.kind == "file"), path)
    for entry in entries:  # each folder comes before what it holds
        if entry.kind != "file":
            _other(manager, path, entry, copied, links, budget)
            continue
        budget.take(0, posixpath.join(path, entry.path))  # (cancelled?)
        got = manager.copy_from(posixpath.join(path, entry.path),
                                _inside(copied.local, entry.path), max_bytes=budget.max_bytes)
        copied.files.append(posixpath.join(path, entry.path))
        copied.size += got.size


def _other(manager: ManagerClient, path: str, entry: RemoteEntry, copied: CopiedPath,
           links: list[tuple[Path, str]], budget: _Budget) -> None:
    """An entry that is not a regular file: a folder, a symlink, or what is not copied."""
    dest = _inside(copied.local, entry.path)
    if entry.kind == "dir":
        dest.mkdir(exist_ok=True, mode=0o700)
    elif entry.kind == "symlink":
        _symlink(manager, path, entry, dest, copied, links, budget)
    else:
        copied.not_copied.append({"path": entry.path, "kind": entry.kind,
                                  "why": "not a file, folder or symlink"})


def _symlink(manager: ManagerClient, top: str, entry: RemoteEntry, dest: Path,
             copied: CopiedPath, links: list[tuple[Path, str]], budget: _Budget) -> None:
    """Keep a link that stays inside the folder; else copy the file it points to."""
    link = entry.link
    if link.startswith(top + "/"):  # absolute, but into the folder itself: make it relative
        link = posixpath.relpath(link, posixpath.join(top, posixpath.dirname(entry.path)))
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), link))
    if not link.startswith("/") and resolved != ".." and not resolved.startswith("../"):
        links.append((dest, link))
        return
    try:
        got = manager.copy_from(posixpath.join(top, entry.path), dest, max_bytes=budget.left())
    except ManagerError as exc:
        copied.not_copied.append({"path": entry.path, "kind": "symlink",
                                  "why": f"points to {entry.link} outside the folder: {exc}"})
        return
    budget.take(got.size, posixpath.join(top, entry.path))
    copied.files.append(posixpath.join(top, entry.path))
    copied.size += got.size


def _read_only(root: Path) -> None:
    """Take the write bits off everything copied (folders last, deepest first)."""
    folders = []
    for here, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                os.chmod(path, (mode | 0o400) & ~0o222)
        folders += [os.path.join(here, name) for name in dirs]
    for path in sorted(folders, key=len, reverse=True):
        if not os.path.islink(path):
            os.chmod(path, 0o555)

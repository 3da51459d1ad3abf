"""Folders copied file by file between this machine and the target (``copy`` of a directory).

Downloading lists the folder in the target (symlinks are listed, never followed) and fetches
each regular file; upload walks the local folder the same way. Symlinks and special files are
reported, not copied: a symlink from a target that could have been tampered with must never
make a later write land outside the local folder. Local paths are checked to stay inside it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kdiag.errors import ManagerError

from .client import ManagerClient
from .results import RemoteEntry


@dataclass
class TreeCopy:
    """What a folder copy did."""

    files: list[dict[str, object]] = field(default_factory=list)  # path (relative), size, mode
    folders: int = 0
    size: int = 0
    not_copied: list[dict[str, str]] = field(default_factory=list)  # path, kind, link

    def result(self) -> dict[str, object]:
        """Plain data for the step's result."""
        return {"files": self.files, "count": len(self.files), "folders": self.folders,
                "size": self.size, "not_copied": self.not_copied}


def _inside(base: Path, relative: str) -> Path:
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise ManagerError(f"unsafe path in the listing: {relative!r}")
    return base.joinpath(*rel.parts)


def download_tree(manager: ManagerClient, remote: str, local: Path, *, max_file_bytes: int,
                  max_total_bytes: int, max_entries: int = 0) -> TreeCopy:
    """Copy the folder ``remote`` of the target to ``local`` (made if missing)."""
    entries, truncated = manager.list_dir(remote, max_entries=max_entries)
    if truncated:
        raise ManagerError(f"{remote} holds more than {len(entries)} entries (max_entries)")
    total = sum(e.file.size for e in entries if e.kind == "file")
    if total > max_total_bytes:
        raise ManagerError(f"{remote} holds {total} bytes of files, over max_bytes "
                           f"{max_total_bytes}")
    local.mkdir(parents=True, exist_ok=True)
    done = TreeCopy()
    folders: list[tuple[Path, RemoteEntry]] = []
    for entry in entries:  # each folder comes before what it holds
        dest = _inside(local, entry.path)
        if entry.kind == "dir":
            dest.mkdir(exist_ok=True)
            folders.append((dest, entry))
        elif entry.kind == "file":
            got = manager.copy_from(posixpath.join(remote, entry.path), dest,
                                    max_bytes=max_file_bytes)
            done.files.append({"path": entry.path, "size": got.size,
                               "mode": f"{got.mode & 0o7777:04o}"})
            done.size += got.size
        else:
            done.not_copied.append({"path": entry.path, "kind": entry.kind, "link": entry.link})
    for dest, entry in reversed(folders):  # modes last: a read-only folder is filled first
        os.chmod(dest, stat.S_IMODE(entry.file.mode))
    done.folders = len(folders)
    return done


def upload_tree(manager: ManagerClient, local: Path, remote: str, *,
                max_total_bytes: int) -> TreeCopy:
    """Copy the local folder ``local`` into the target as ``remote`` (made, with parents)."""
    plan: list[tuple[str, Path]] = []
    total = 0
    for here, dirs, files in os.walk(local):  # symlinks to folders are not descended into
        base = Path(here)
        for name in sorted(dirs):
            plan.append(("dir", base / name))
        for name in sorted(files):
            plan.append(("file", base / name))
            if (base / name).is_file() and not (base / name).is_symlink():
                total += (base / name).stat().st_size
    if total > max_total_bytes:
        raise ManagerError(f"{local} holds {total} bytes of files, over max_bytes "
                           f"{max_total_bytes}")
    done = TreeCopy()
    manager.make_dir(remote, mode=stat.S_IMODE(local.stat().st_mode), make_parents=True)
    for kind, path in sorted(plan, key=lambda item: item[1]):  # folders before their files
        relative = path.relative_to(local).as_posix()
        target = posixpath.join(remote, relative)
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            done.not_copied.append({"path": relative, "kind": "symlink" if path.is_symlink()
                                    else "other", "link": os.readlink(path)
                                    if path.is_symlink() else ""})
        elif kind == "dir":
            manager.make_dir(target, mode=stat.S_IMODE(path.stat().st_mode))
            done.folders += 1
        else:
            sent = manager.copy_to(path, target)
            done.files.append({"path": relative, "size": sent.size,
                               "mode": f"{sent.mode & 0o7777:04o}"})
            done.size += sent.size
    return done

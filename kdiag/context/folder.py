"""The private folder holding what was copied from a target for one command.

``kdiag-target-*``, mode 0700, in a memory file system when this user has one
(``$XDG_RUNTIME_DIR``, else ``/dev/shm``: what is copied is often secret, and there it never
reaches a disk; making files there is also ten times faster), else in ``$TMPDIR``. It holds
the target's files under ``root/`` at their paths there, ``hosts`` (cluster names) and
``newroot/`` (where the launch helper may build a new root). It is removed when the command's
step ends — also after Ctrl-C; one whose kdiag was killed is removed by the next command that
makes one (see :mod:`kdiag.ownedfolders`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kdiag.ownedfolders import remove, remove_stale, write_owners

PREFIX = "kdiag-target-"


def _memory_file_systems() -> set[str]:
    try:
        with open("/proc/self/mounts") as f:
            return {line.split()[1] for line in f if line.split()[2:3] == ["tmpfs"]}
    except OSError:
        return set()


def base() -> str:
    """Where private folders go (see the module's docstring)."""
    memory = _memory_file_systems()
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and candidate in memory and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


@dataclass
class PrivateFolder:
    """One command's folder (see the module's docstring)."""

    path: Path

    @classmethod
    def make(cls) -> PrivateFolder:
        """A new folder (stale ones of dead runs are removed first)."""
        parent = base()
        remove_stale(PREFIX, parent)
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))  # mode 0700
        write_owners(path, [os.getpid()])
        for name in ("root", "newroot"):
            (path / name).mkdir(mode=0o700)
        return cls(path)

    @property
    def root(self) -> Path:
        """Where the target's files go, at their paths in the target."""
        return self.path / "root"

    @property
    def newroot(self) -> Path:
        """An empty folder for the launch helper."""
        return self.path / "newroot"

    def local(self, target_path: str) -> Path:
        """Where the target's ``target_path`` (absolute, normalized) is kept here."""
        return self.root.joinpath(*[p for p in target_path.split("/") if p])

    def remove(self) -> None:
        """Remove the folder and all it holds."""
        if self.path.exists():
            remove(self.path)

"""Private folders owned by live processes, and removing those whose owners are all gone.

A folder kdiag makes in the temporary folder (a node session's socket, a target's copied
files) records its owners — PIDs with their start times, so a later process given the same PID
is not mistaken for one — in a file ``owners``. A later kdiag removes the folders of its kind
whose owners are all gone (killed with ``-9``, a machine that lost power): nothing is left
behind for long, and no live run loses its folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

OWNERS = "owners"
UNMARKED_STALE_AFTER = 3600.0
"""A folder without an owners file is stale once this old (its CLI died between making the
folder and writing the file, or an older kdiag made it): nothing live takes that long."""


def start_time(pid: int) -> str | None:
    """The start time (clock ticks after boot) of ``pid`` if it runs (a zombie does not):
    tells a process apart from a later one given the same PID."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def write_owners(folder: str | Path, pids: list[int]) -> None:
    """Record the processes that own ``folder`` (atomically: a reader never sees half)."""
    owners = [[pid, start_time(pid)] for pid in pids]
    tmp = os.path.join(folder, OWNERS + ".tmp")
    Path(tmp).write_text(json.dumps(owners))
    os.replace(tmp, os.path.join(folder, OWNERS))


def is_stale(folder: Path) -> bool:
    """No process that owned ``folder`` is alive (a folder without owners: only when old)."""
    try:
        owners = json.loads((folder / OWNERS).read_text())
    except (OSError, ValueError):
        try:
            return time.time() - folder.stat().st_mtime > UNMARKED_STALE_AFTER
        except OSError:
            return False
    return not any(isinstance(o, list) and len(o) == 2 and isinstance(o[0], int)
                   and o[1] is not None and start_time(o[0]) == o[1] for o in owners)


def remove_stale(prefix: str, parent: str | None = None) -> list[str]:
    """Remove this user's folders named ``prefix*`` in ``parent`` (default: the temporary
    folder) that no live process owns any more; return them."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(prefix + "*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if is_stale(path):
            remove(path)
            removed.append(str(path))
    return removed


def remove(folder: str | Path) -> None:
    """Remove ``folder`` and all it holds, read-only parts included."""
    def writable(_func: object, path: str, _exc: object) -> None:
        # A read-only folder's entries cannot be unlinked: open it up, then retry.
        parent = os.path.dirname(path)
        os.chmod(parent, 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, onerror=writable)
        else:
            os.unlink(path)

    shutil.rmtree(folder, onerror=writable)

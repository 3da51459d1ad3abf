"""How a command gets its private view of the files on this machine.

``namespace``: a private mount namespace, made directly when kdiag runs as root, else inside a
user namespace of its own (where the kernel allows unprivileged ones: most Linux
distributions); the command sees the files at their original paths. ``remap``: no namespace;
the files stay in their private folder and the command is told where (the caller sets an
environment variable). ``auto`` picks ``namespace`` when it can be had.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

VIEWS = ("auto", "namespace", "remap")

_userns_problem: str | None = None
_userns_checked = False


@dataclass(frozen=True)
class View:
    """The way chosen, and why not the other one (for a note)."""

    kind: str  # namespace | remap
    userns: bool = False
    reason: str = ""


def userns_problem() -> str | None:
    """Why an unprivileged user and mount namespace cannot be made here (None: it can);
    asked once per process by starting the helper in probe mode."""
    global _userns_problem, _userns_checked
    if not _userns_checked:
        from .launcher import Launch, LaunchError, start

        try:
            process = start(Launch(argv=["true"], env={}, userns=True), probe=True,
                            new_session=False)
            process.wait()
            _userns_problem = None
        except LaunchError as exc:
            _userns_problem = str(exc)
        _userns_checked = True
    return _userns_problem


def choose(wanted: str) -> View:
    """The view for ``wanted`` (auto, namespace or remap); ValueError when ``namespace`` was
    asked for and cannot be had."""
    if wanted == "remap":
        return View("remap", reason="asked for")
    if os.geteuid() == 0:
        return View("namespace")
    problem = userns_problem()
    if problem is None:
        return View("namespace", userns=True)
    if wanted == "namespace":
        raise ValueError(f"no private mount namespace: not root, and no user namespace "
                         f"({problem})")
    return View("remap", reason=f"not root, and no user namespace ({problem})")

"""Where a step's files go: one folder per step under the run's artifacts directory.

The engine writes a step's own files there (captures, copies) and the artifacts reporter writes
the step's output and result next to them, so both use :func:`step_folder_name`.
"""

from __future__ import annotations

import re

_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: str, max_len: int = 60) -> str:
    """A file-name-safe slug of ``name``: runs of other characters than ``A-Za-z0-9._-``
    become ``-``; never empty, never ``.`` or ``..``."""
    s = _SLUG_RE.sub("-", name).strip("-.")[:max_len].rstrip("-")
    return s or "step"


def step_folder_name(seq: int, qualified_name: str) -> str:
    """The folder of a step's files under the artifacts directory: ``NN-<slug>``.

    ``seq`` is the run-wide 1-based :attr:`~kdiag.engine.events.StepRef.seq`.
    """
    return f"{seq:02d}-{slug(qualified_name)}"

"""Where a step's files go: one folder per step under the run's artifacts directory.

The engine writes a step's own files there (captures, copies) and the artifacts reporter writes
the step's output and result next to them, so both use :func:`step_folder_name`.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from kdiag.engine.masking import Masker

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


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken (made, so no other run takes it)."""
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


class MaskedFile:
    """A step's artifact file written as a stream of bytes, kept exact except that the run's
    secret values become ``***`` (also one that a chunk boundary cuts in two).

    Bytes are masked as UTF-8 text decoded with ``surrogateescape``, which gives every byte
    back unchanged when encoded again, binary output included.
    """

    def __init__(self, path: Path, masker: Masker) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._masker = masker
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._held = ""
        self._masking = False

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        if not self._masking and not self._masker.active:
            self._file.write(data)
            return
        self._masking = True  # from here on every chunk goes through the decoder
        masked, self._held = self._masker.split(self._held + self._decoder.decode(data))
        self._file.write(masked.encode("utf-8", "surrogateescape"))

    def close(self) -> None:
        """Write what was held back and close the file."""
        if self._file.closed:
            return
        if self._masking:
            rest = self._held + self._decoder.decode(b"", final=True)
            self._file.write(self._masker.text(rest).encode("utf-8", "surrogateescape"))
        self._file.close()

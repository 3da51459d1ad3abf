"""Load YAML into plain Python data while remembering where every value came from.

Errors anywhere later (schema, params, templates) are reported as ``file:line:col``, so the
loader keeps a :class:`SourceMap` from each value's path (a tuple of keys and indexes) to its
position. Mapping keys are always strings (``on:`` stays ``"on"``, not ``True``), duplicate keys
are errors, and YAML errors of any kind become :class:`~kdiag.errors.RunbookError` with the place
of the mistake itself: the first byte that is not UTF-8, the quote or bracket that is never
closed. Loading is bounded (:mod:`~kdiag.language.limits`): a file over the size limit is refused
before it is parsed, and values are built by :mod:`~kdiag.language.yamlcompose` within limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from kdiag.errors import Location, Problem, RunbookError
from kdiag.language import limits as limits_
from kdiag.language.yamlcompose import Composer, Positions

Path = tuple[str | int, ...]

# libyaml's contexts for a construct that is still open when the file ends: named by what opens it.
_UNCLOSED = {
    "while scanning a quoted scalar": "this quoted string is never closed",
    "while parsing a flow sequence": "this [ list is never closed",
    "while parsing a flow mapping": "this { mapping is never closed",
    "while scanning a block scalar": "this block scalar is never finished",
}


@dataclass
class SourceMap:
    """Positions of the values (and of the mapping keys) of one loaded document."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[Path] = field(default_factory=set)
    """Values written as ``|`` or ``>`` block scalars: their text starts on the next line."""
    aliases: dict[Path, Path] = field(default_factory=dict)
    """Where an alias (or a ``<<`` merged key) stands → where its content was written."""

    def written(self, path: Path) -> Path:
        """``path`` as written: a path inside an alias's value becomes the same place inside
        its anchor's value (the alias itself keeps its own place)."""
        for depth in range(len(path) - 1, -1, -1):
            target = self.aliases.get(path[:depth])
            if target is not None:
                return self.written((*target, *path[depth:]))
        return path

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The location of ``path``'s value (or its key), else of its nearest known parent."""
        table = self.keys if key else self.values
        probe = self.written(path)
        while True:
            pos = table.get(probe) or self.values.get(probe)
            if pos is not None:
                return Location(self.file, pos[0], pos[1])
            if not probe:
                return Location(self.file, 1, 1)
            probe = probe[:-1]

    def locate_line(self, path: Path, line_in_value: int) -> Location:
        """The location of a line inside a (multi-line) string value, for template errors."""
        base = self.locate(path)
        block = self.written(path) in self.block_scalars
        offset = line_in_value - 1 + (1 if block else 0)
        if offset == 0:
            return base
        return Location(base.file, base.line + offset, 1)


@dataclass
class Document:
    """A loaded YAML document: its data and where each part of it came from."""

    data: Any
    source: SourceMap


def load_text(text: str, file: str, limits: limits_.Limits | None = None) -> Document:
    """Parse one YAML document from ``text``; ``file`` is the name used in error locations."""
    limits = limits or limits_.current()
    positions = Positions()
    try:
        data, found = Composer(text, file, limits, positions).compose()
    except yaml.MarkedYAMLError as exc:
        raise RunbookError(_syntax_problem(exc, text, file)) from None
    except yaml.YAMLError as exc:  # reader errors (bad characters) carry a byte offset
        line, col = _byte_position(text.encode("utf-8", "surrogatepass"),
                                   getattr(exc, "position", None))
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise RunbookError(Problem(f"YAML error: {reason}", Location(file, line, col))) from None
    if not found:
        raise RunbookError(Problem("the file is empty", Location(file, 1, 1)))
    source = SourceMap(file, positions.values, positions.keys, positions.block_scalars,
                       positions.aliases)
    return Document(data, source)


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """A libyaml error at the mistake: a construct the file ends inside is reported where it
    opens (with where the file ended), anything else where libyaml stopped."""
    problem, context = exc.problem_mark, exc.context_mark
    what = exc.problem or exc.context or "invalid YAML"
    opened = _UNCLOSED.get(exc.context or "")
    if problem is not None and context is not None and opened \
            and not text[problem.index:].strip():
        return Problem(f"YAML syntax error: {opened} (the file ends at "
                       f"{problem.line + 1}:{problem.column + 1})",
                       Location(file, context.line + 1, context.column + 1))
    mark = problem or context
    where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    return Problem(f"YAML syntax error: {what}", where)


def _byte_position(data: bytes, offset: object) -> tuple[int, int]:
    """Line and column (1-based, in characters) of byte ``offset`` of UTF-8 ``data``."""
    if not isinstance(offset, int):
        return 1, 1
    offset = max(0, min(offset, len(data)))
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace"))
    return data.count(b"\n", 0, offset) + 1, column + 1


def read_text(path: str, limits: limits_.Limits) -> str:
    """A file's text: refused when it is over the size limit (only that much is read) or not
    UTF-8 (at the first bad byte); unreadable files are a RunbookError naming the path."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.file_bytes + 1)
    except FileNotFoundError:
        raise RunbookError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunbookError(f"{path}: is a directory, not a runbook file") from None
    except OSError as exc:
        raise RunbookError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > limits.file_bytes:
        size = limits_.size_text(limits.file_bytes)
        raise RunbookError(Problem(f"the file is larger than {size}, the limit for a runbook or "
                                   f"values file ({limits_.ENV['file_bytes']})",
                                   Location(path, 1, 1)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(data, exc.start)
        bad = data[exc.start:exc.start + 1].hex()
        raise RunbookError(Problem(f"not UTF-8 text: {exc.reason} (byte 0x{bad})",
                                   Location(path, line, col))) from None


def load_file(path: str, limits: limits_.Limits | None = None) -> Document:
    """Read and parse a YAML file (see :func:`read_text` and :func:`load_text`)."""
    limits = limits or limits_.current()
    return load_text(read_text(path, limits), path, limits)

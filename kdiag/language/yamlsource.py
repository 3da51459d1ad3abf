"""Load YAML into plain Python data while remembering where every node came from.

Errors anywhere later (schema, params, templates) are reported as ``file:line:col``, so the
loader keeps a :class:`SourceMap` from each value's path (a tuple of keys and indexes) to its
position. Mapping keys are always strings (``on:`` stays ``"on"``, not ``True``), duplicate keys
are errors, and YAML errors of any kind become :class:`~kdiag.errors.RunbookError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from kdiag.errors import Location, Problem, RunbookError

Path = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAX_DEPTH = 200


@dataclass
class SourceMap:
    """Positions of the values (and of the mapping keys) of one loaded document."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[Path] = field(default_factory=set)
    """Values written as ``|`` or ``>`` block scalars: their text starts on the next line."""

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The location of ``path``'s value (or its key), else of its nearest known parent."""
        table = self.keys if key else self.values
        probe = path
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
        offset = line_in_value - 1 + (1 if path in self.block_scalars else 0)
        if offset == 0:
            return base
        return Location(base.file, base.line + offset, 1)


@dataclass
class Document:
    """A loaded YAML document: its data and where each part of it came from."""

    data: Any
    source: SourceMap


class _Converter:
    """Turns a composed node tree into Python values, filling a SourceMap on the way."""

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.constructor = yaml.constructor.SafeConstructor()

    def convert(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise self._error(node, "the document is nested too deeply")
        self.source.values[path] = _pos(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        if getattr(node, "style", None) in ("|", ">"):
            self.source.block_scalars.add(path)
        if node.tag == _TIMESTAMP:
            return str(node.value)  # a runbook never wants a datetime object
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        self.constructor.flatten_mapping(node)  # resolves ``<<: *anchor`` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._error(key_node, "a mapping key must be a plain string")
            key = str(key_node.value)
            if key in result:
                raise self._error(key_node, f"duplicate key {key!r}")
            self.source.keys[(*path, key)] = _pos(key_node)
            result[key] = self.convert(value_node, (*path, key))
        return result

    def _error(self, node: yaml.Node, message: str) -> RunbookError:
        line, col = _pos(node)
        return RunbookError(Problem(message, Location(self.source.file, line, col)))


def _pos(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def load_text(text: str, file: str) -> Document:
    """Parse one YAML document from ``text``; ``file`` is the name used in error locations."""
    source = SourceMap(file)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise RunbookError(Problem(f"YAML syntax error: {what}", where)) from None
    except yaml.YAMLError as exc:  # reader errors (bad characters) carry a flat position
        line, col = _reader_position(exc, text)
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise RunbookError(Problem(f"YAML error: {reason}", Location(file, line, col))) from None
    except RecursionError:
        raise RunbookError(Problem("the document is nested too deeply", Location(file, 1, 1))) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise RunbookError(Problem("the file is empty", Location(file, 1, 1)))
    if len(nodes) > 1:
        line, col = _pos(nodes[1])
        raise RunbookError(Problem("only one YAML document is allowed", Location(file, line, col)))
    try:
        data = _Converter(source).convert(nodes[0], ())
    except RecursionError:
        raise RunbookError(Problem("the document is nested too deeply", Location(file, 1, 1))) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        raise RunbookError(Problem(f"YAML error: {exc.problem}", where)) from None
    return Document(data, source)


def _reader_position(exc: yaml.YAMLError, text: str) -> tuple[int, int]:
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return 1, 1
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def load_file(path: str) -> Document:
    """Read and parse a YAML file; unreadable files are a RunbookError naming the path."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise RunbookError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise RunbookError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RunbookError(f"{path}: cannot read: {exc.strerror}") from None
    return load_text(text, path)

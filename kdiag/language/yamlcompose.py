"""Building Python values from YAML parser events, within :mod:`~kdiag.language.limits`.

PyYAML's own composer builds a node tree for the whole document first (hundreds of bytes per
value, whatever the limits) and shares an anchored node between its aliases, so expanding them
afterwards is where an alias bomb explodes. Here values are built straight from libyaml's
events, one at a time: every value counts against ``values`` as it is made, an alias counts
the whole value it stands for *before* it is copied (an alias bomb stops at the alias that
would cross the limit, with that alias's place), and nesting stops at ``depth``. Positions go
into the :class:`~kdiag.language.yamlsource.SourceMap`; an alias's content is not recorded
again but mapped to where its anchor was written (``SourceMap.aliases``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from kdiag.errors import Location, Problem, RunbookError
from kdiag.language.limits import ENV, Limits, clip

Path = tuple[str | int, ...]
Pos = tuple[int, int]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCTORS = yaml.constructor.SafeConstructor.yaml_constructors
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE_KEY = "<<"
_BLOCK_STYLES = ("|", ">")


@dataclass
class Positions:
    """Where values and keys were written (filled while composing)."""

    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    block_scalars: set[Path] = field(default_factory=set)
    aliases: dict[Path, Path] = field(default_factory=dict)
    """An alias's (or a merged key's) path → the path its content was written at."""


@dataclass
class _Anchor:
    value: Any
    path: Path
    count: int  # values in it, its own aliases expanded
    depth: int  # levels below it


@dataclass
class _Open:
    """A mapping or list being composed."""

    value: dict[str, Any] | list[Any]
    path: Path
    pos: Pos
    anchor: str | None
    count_at_start: int
    depth: int = 0  # levels below it so far
    key: str | None = None  # a mapping's key waiting for its value
    merging: bool = False  # the value being composed is a ``<<`` merge
    merges: list[tuple[dict[str, Any], Path]] = field(default_factory=list)


def _pos(mark: Any) -> Pos:
    return mark.line + 1, mark.column + 1


def _copy(value: Any) -> Any:
    """An alias's own copy of its anchor's value (its size was counted already)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class Composer:
    """Composes the single document of ``text``; :meth:`compose` returns its value."""

    def __init__(self, text: str, file: str, limits: Limits, positions: Positions) -> None:
        self.text = text
        self.file = file
        self.limits = limits
        self.positions = positions
        self.count = 0
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Open] = []
        self.root: Any = None
        self.done = False

    def error(self, message: str, pos: Pos) -> RunbookError:
        return RunbookError(Problem(clip(message), Location(self.file, pos[0], pos[1])))

    # -- the event loop -----------------------------------------------------------------------

    def compose(self) -> tuple[Any, bool]:
        """The document's value, and whether the file held a document at all."""
        loader = _Loader(self.text)
        try:
            documents = 0
            while True:
                event = loader.get_event()
                if isinstance(event, yaml.StreamEndEvent):
                    return self.root, documents > 0
                if isinstance(event, yaml.DocumentStartEvent):
                    documents += 1
                    if documents > 1:
                        node = loader.get_event()  # the second document's first value
                        raise self.error("only one YAML document is allowed",
                                         _pos(node.start_mark))
                elif isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
                    self._event(event, loader)
        finally:
            loader.dispose()

    def _event(self, event: Any, loader: Any) -> None:
        pos = _pos(event.start_mark)
        top = self.stack[-1] if self.stack else None
        if isinstance(event, yaml.CollectionEndEvent):
            self._close()
            return
        if isinstance(top, _Open) and isinstance(top.value, dict) and top.key is None \
                and not top.merging:
            self._key(top, event, pos)
            return
        path = self._child_path(top)
        if len(path) > self.limits.depth:
            raise self.error(f"the document nests more than {self.limits.depth} levels deep "
                             f"({ENV['depth']})", pos)
        if isinstance(event, yaml.AliasEvent):
            self._alias(event, path, pos)
            return
        self._count(1, pos)
        self.positions.values[path] = pos
        if isinstance(event, yaml.ScalarEvent):
            if event.style in _BLOCK_STYLES:
                self.positions.block_scalars.add(path)
            value = self._scalar(event, loader, pos)
            self._remember(event.anchor, value, path, 1, 0)
            self._place(value, path, pos, 0)
            return
        container: dict[str, Any] | list[Any] = (
            {} if isinstance(event, yaml.MappingStartEvent) else [])
        self.stack.append(_Open(container, path, pos, event.anchor, self.count))

    # -- values -------------------------------------------------------------------------------

    def _count(self, amount: int, pos: Pos, alias: str | None = None) -> None:
        self.count += amount
        if self.count <= self.limits.values:
            return
        if alias is not None:
            raise self.error(f"alias *{alias} expands the document past {self.limits.values} "
                             f"values ({ENV['values']}): an alias bomb?", pos)
        raise self.error(f"the document holds more than {self.limits.values} values "
                         f"({ENV['values']})", pos)

    def _scalar(self, event: Any, loader: Any, pos: Pos) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        if tag == _TIMESTAMP:
            return event.value  # a runbook never wants a datetime object
        constructor = _CONSTRUCTORS.get(tag)
        if constructor is None or tag is None:
            raise self.error(f"YAML error: unknown tag {event.tag!r}", pos)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return constructor(loader, node)
        except Exception as exc:  # e.g. ``!!int abc``, an integer of 5000 digits
            shown = event.value if len(event.value) <= 40 else event.value[:37] + "..."
            reason = str(exc).splitlines()[0].split(";")[0] if str(exc) else type(exc).__name__
            raise self.error(f"YAML error: cannot read {shown!r} as {tag.rsplit(':', 1)[-1]}: "
                             f"{reason}", pos) from None

    def _alias(self, event: Any, path: Path, pos: Pos) -> None:
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            inside = any(frame.anchor == event.anchor for frame in self.stack)
            what = "the value that contains it" if inside else "no anchor defined before it"
            raise self.error(f"alias *{event.anchor} refers to {what}", pos)
        if len(path) + anchor.depth > self.limits.depth:
            raise self.error(f"alias *{event.anchor} nests the document more than "
                             f"{self.limits.depth} levels deep ({ENV['depth']})", pos)
        self._count(anchor.count, pos, event.anchor)
        self.positions.values[path] = pos
        self.positions.aliases[path] = anchor.path
        self._place(_copy(anchor.value), path, pos, anchor.depth)

    def _remember(self, name: str | None, value: Any, path: Path, count: int, depth: int) -> None:
        if name is not None:
            self.anchors[name] = _Anchor(value, path, count, depth)

    def _child_path(self, top: _Open | None) -> Path:
        if top is None:
            return ()
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return (*top.path, _MERGE_KEY if top.merging else str(top.key))

    def _place(self, value: Any, path: Path, pos: Pos, depth: int) -> None:
        """Put a finished value where it belongs: in its parent, or as the document."""
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if top.merging:  # the merged mappings' entries become this mapping's own
            depth -= 2 if isinstance(value, list) else 1
        top.depth = max(top.depth, depth + 1)
        if isinstance(top.value, list):
            top.value.append(value)
        elif top.merging:
            top.merging = False
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                raise self.error("a merge key (<<) takes a mapping or a list of mappings", pos)
            top.merges.extend((source, (*path, i) if isinstance(value, list) else path)
                              for i, source in enumerate(sources))
        else:
            top.value[str(top.key)] = value
            top.key = None

    def _key(self, top: _Open, event: Any, pos: Pos) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            raise self.error("a mapping key must be a plain string", pos)
        assert isinstance(top.value, dict)
        key = str(event.value)
        if key == _MERGE_KEY and event.implicit[0] and event.tag is None:
            if top.merges or top.merging:
                raise self.error("duplicate merge key '<<'", pos)
            top.merging = True
            return
        if key in top.value:
            raise self.error(f"duplicate key {key!r}", pos)
        self._count(1, pos)
        self.positions.keys[(*top.path, key)] = pos
        top.key = key

    def _close(self) -> None:
        done = self.stack.pop()
        if done.merges:
            self._merge(done)
        count = self.count - done.count_at_start + 1
        self._remember(done.anchor, done.value, done.path, count, done.depth)
        self._place(done.value, done.path, done.pos, done.depth)

    def _merge(self, done: _Open) -> None:
        """Apply ``<<`` merges: the mapping's own keys win, then earlier merged mappings."""
        assert isinstance(done.value, dict)
        merged: dict[str, Any] = {}
        for source, source_path in done.merges:
            for key, value in source.items():
                if key not in merged and key not in done.value:
                    merged[key] = value
                    self.positions.aliases[(*done.path, key)] = (*source_path, key)
        own = dict(done.value)
        done.value.clear()
        done.value.update(merged)
        done.value.update(own)

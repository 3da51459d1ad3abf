"""The limits that keep loading, checking and rendering a runbook bounded, whatever it holds.

Each has a default fit for any real runbook (the largest example is 4 KB with a few hundred
values) and an environment variable to change it. A limit that is hit is an error with the
place of the value, alias or template that crossed it, never a crash: an alias bomb, a 10 MB
file of tiny values or ``{{ ' ' * 10**9 }}`` end in one clear message, in bounded time and memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from kdiag.errors import UsageError

_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class Limits:
    """Every limit, with the environment variable that sets it (``metadata["env"]``)."""

    file_bytes: int = 5 << 20
    """A runbook or values file larger than this is refused before it is parsed."""
    values: int = 50_000
    """YAML values (mappings, lists, scalars, mapping keys) in one file, each alias counting
    as much as the value it stands for."""
    depth: int = 64
    """How deeply values may nest (aliases expanded)."""
    template_tokens: int = 60_000
    """Template tokens (names, operators, literals) in one file's templates and expressions."""
    output: int = 4 << 20
    """Characters one template renders to, and the longest string an operation inside a
    template may build (``' ' * n``, ``'x' | center(n)``, ``'-' | join`` of a long list...)."""
    iterations: int = 1_000_000
    """Loop turns and calls one template (or expression) may make while rendering."""
    seconds: float = 5.0
    """Time one template (or expression) may take to render."""


ENV = {
    "file_bytes": "KDIAG_MAX_FILE_SIZE",
    "values": "KDIAG_MAX_YAML_VALUES",
    "depth": "KDIAG_MAX_YAML_DEPTH",
    "template_tokens": "KDIAG_MAX_TEMPLATE_TOKENS",
    "output": "KDIAG_MAX_TEMPLATE_OUTPUT",
    "iterations": "KDIAG_MAX_TEMPLATE_ITERATIONS",
    "seconds": "KDIAG_MAX_TEMPLATE_SECONDS",
}
"""The environment variable of each limit."""


@dataclass(frozen=True)
class TemplateNesting:
    """How deeply one template (or expression) may nest. Jinja compiles a template to Python
    source, and CPython refuses source that nests too deeply (200 open brackets, 100
    indentation levels, 20 nested loops) or runs out of stack compiling it, and the stack
    left depends on how deep the caller already is. Checking parses only, so these bounds
    sit well under what compiles (measured in ``tests/unit/test_template_nesting.py``) and
    are fixed: raising them would only move the failure from ``validate`` to the run."""

    expression: int = 60
    """Nodes on the longest path down one expression: each term of a chain (``a + b + c``,
    ``a.b.c``, ``x | f | g``) and each nested call, literal or operator is a level."""
    brackets: int = 25
    """Open ``(``, ``[`` and ``{`` inside one another (parsing one costs the most stack)."""
    loops: int = 15
    """``{% for %}`` loops inside one another (CPython: 20 nested blocks)."""
    blocks: int = 40
    """Tags with a body (``if``, ``for``, ``macro``, ``call``, ``with``, ``filter``, a
    ``set`` block...) inside one another (CPython: 100 indentation levels)."""


NESTING = TemplateNesting()
"""The nesting bounds in force (fixed: see :class:`TemplateNesting`)."""


def _number(name: str, text: str, kind: type) -> int | float:
    raw = text.strip().lower()
    scale = 1
    if raw and raw[-1] in _SUFFIXES and kind is int:
        raw, scale = raw[:-1], _SUFFIXES[raw[-1]]
    try:
        value = kind(raw) * scale
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected a positive number") from None
    if value <= 0:
        raise UsageError(f"{name}={text!r}: expected a positive number")
    return value


def current() -> Limits:
    """The limits in force: the defaults, changed by the environment variables in :data:`ENV`
    (sizes take a ``k``, ``m`` or ``g`` suffix). A malformed value is a usage error."""
    changes: dict[str, int | float] = {}
    for spec in fields(Limits):
        text = os.environ.get(ENV[spec.name])
        if text:
            kind = float if spec.name == "seconds" else int
            changes[spec.name] = _number(ENV[spec.name], text, kind)
    return Limits(**changes)  # type: ignore[arg-type]


def size_text(count: int) -> str:
    """``5 MiB``, ``64 KiB`` or ``123 bytes``, for messages."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


MAX_MESSAGE = 400
"""Characters of a problem's message: one that quotes a long value is cut in its middle."""


def clip(message: str) -> str:
    """``message`` cut to :data:`MAX_MESSAGE` characters (a value it quotes may be huge)."""
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2 - 10
    return f"{message[:half]} ... ({len(message) - 2 * half} characters) ... {message[-half:]}"

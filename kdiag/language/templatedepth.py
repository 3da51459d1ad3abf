"""How deeply a template nests, held to :data:`~kdiag.language.limits.NESTING` while it is
checked, so that a template ``validate`` accepts also compiles when it runs.

Jinja turns a template into Python source: a chain ``a + b + c`` becomes calls inside calls,
each ``{% for %}`` a Python loop, each tag with a body an indented block, and CPython refuses
source nested past its own limits. Compiling each template while checking would settle it
but costs too much (a third of a second for one long chain); counting is linear in the
template. Brackets are counted on the tokens, as the parser reads them (a bracket costs the
parser the most stack, and ``((a))`` leaves no trace in the tree); the rest on the tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jinja2.nodes as nodes

from kdiag.language.limits import NESTING, TemplateNesting

_OPENING = frozenset({"lparen", "lbracket", "lbrace"})
_CLOSING = frozenset({"rparen", "rbracket", "rbrace"})
_WHY = "split it with {% set %}"


class TooDeep(Exception):
    """A template nests deeper than a bound (``args``: the message, the line in the
    template)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message, line)
        self.message = message
        self.line = line


def bracketed(stream: Iterator[Any], bounds: TemplateNesting = NESTING) -> Iterator[Any]:
    """The tokens of ``stream``; raises :class:`TooDeep` at the first bracket that opens
    more than ``bounds.brackets`` deep (before the parser goes deeper)."""
    depth = 0
    for token in stream:
        if token.type in _OPENING:
            depth += 1
            if depth > bounds.brackets:
                raise TooDeep(f"brackets ( [ {{ nest more than {bounds.brackets} deep; {_WHY}",
                              token.lineno)
        elif token.type in _CLOSING:
            depth -= 1
        yield token


@dataclass
class _Deepest:
    """The crossing found on the earliest line so far."""

    found: TooDeep | None = None

    def offer(self, message: str, line: int) -> None:
        if self.found is None or line < self.found.line:
            self.found = TooDeep(message, line)


def _crossing(node: nodes.Node, expression: int, blocks: int, loops: int,
              bounds: TemplateNesting) -> str | None:
    """Why ``node``, at these depths, nests too deeply (None: it does not)."""
    if expression > bounds.expression:
        return (f"an expression nests more than {bounds.expression} levels deep (each term of "
                f"a chain such as a + b + c, a.b.c or x | f | g is a level); {_WHY}")
    if loops > bounds.loops:
        return f"more than {bounds.loops} {{% for %}} loops inside one another"
    if blocks > bounds.blocks:
        return (f"more than {bounds.blocks} tags with a body ({{% if %}}, {{% for %}}, "
                f"{{% macro %}}, {{% call %}}, {{% with %}}...) inside one another")
    return None


def _has_body(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Stmt) and "body" in node.fields


def too_deep(tree: nodes.Node, bounds: TemplateNesting = NESTING) -> TooDeep | None:
    """The first place (by line) where a parsed template nests deeper than ``bounds``."""
    deepest = _Deepest()
    # Each entry: a node and the depths around it (expression, blocks, loops).
    stack: list[tuple[nodes.Node, int, int, int]] = [(tree, 0, 0, 0)]
    while stack:
        node, expression, blocks, loops = stack.pop()
        outside = blocks
        expression = 0 if isinstance(node, nodes.Stmt | nodes.Template) else expression + 1
        blocks += _has_body(node)
        loops += isinstance(node, nodes.For)
        why = _crossing(node, expression, blocks, loops, bounds)
        if why is not None:
            deepest.offer(why, node.lineno or 1)
        for name in node.fields:
            # An {% elif %} is an If kept beside its {% if %}: Python writes it as elif.
            around = outside if isinstance(node, nodes.If) and name == "elif_" else blocks
            child = getattr(node, name, None)
            for item in child if isinstance(child, list) else [child]:
                if isinstance(item, nodes.Node):
                    stack.append((item, expression, around, loops))
    return deepest.found

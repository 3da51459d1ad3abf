"""Jinja2 templates and expressions, rendered in a sandbox at execution time.

Strings in a step's body that contain ``{{`` or ``{%`` are templates. A string that is exactly one
``{{ expression }}`` yields the expression's native value (so ``port: "{{ params.port }}"`` stays
an integer). ``when``, ``until`` and ``assert`` hold bare expressions. Undefined variables are
errors, never empty strings. Syntax checking uses a plain (non-sandboxed) environment so that
``kdiag validate`` does not pay for importing the sandbox.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%")


def is_template(value: object) -> bool:
    """Whether a value is a string holding template syntax."""
    return isinstance(value, str) and any(m in value for m in _MARKERS)


def _single_expression(text: str) -> str | None:
    match = _SINGLE.match(text)
    if match is None:
        return None
    inner = match.group("expr")
    return None if ("{{" in inner or "}}" in inner or "{%" in inner) else inner


def quote(value: object) -> str:
    """Quote a value as one shell word (the ``quote`` filter)."""
    return shlex.quote(value if isinstance(value, str) else str(value))


def _to_json(value: object, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, default=str)


def _regex_search(value: object, pattern: str, group: int = 0) -> str | None:
    match = re.search(pattern, str(value))
    return match.group(group) if match else None


FILTERS: dict[str, Callable[..., Any]] = {
    "quote": quote,
    "to_json": _to_json,
    "from_json": json.loads,
    "regex_search": _regex_search,
}
TESTS: dict[str, Callable[..., Any]] = {
    "match": lambda value, pattern: re.match(pattern, str(value)) is not None,
    "search": lambda value, pattern: re.search(pattern, str(value)) is not None,
}


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    return env


_parser_env: jinja2.Environment | None = None


def parser_env() -> jinja2.Environment:
    """A non-executing environment for syntax checks and variable discovery."""
    global _parser_env
    if _parser_env is None:
        _parser_env = _configure(jinja2.Environment(undefined=jinja2.StrictUndefined))
    return _parser_env


@dataclass(frozen=True)
class TemplateSyntaxProblem:
    """A syntax error in a template: the message and the line within the template (1-based)."""

    message: str
    line: int


def parse(text: str, *, expression: bool = False) -> jinja2.nodes.Node:
    """Parse a template, or a bare expression, without compiling it (TemplateSyntaxError)."""
    env = parser_env()
    if not expression:
        return env.parse(text)
    from jinja2.parser import Parser

    parser = Parser(env, text, state="variable")
    node = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise jinja2.TemplateSyntaxError(f"unexpected {token.value!r} after the expression",
                                         token.lineno)
    return node


def check_template(text: str, *, expression: bool = False) -> TemplateSyntaxProblem | None:
    """Parse a template (or a bare expression); return its syntax error, if any."""
    return analyse(text, expression=expression).problem


@dataclass(frozen=True)
class Analysis:
    """What static checks learn from one parse: a syntax error, or the tree and its names."""

    problem: TemplateSyntaxProblem | None
    tree: jinja2.nodes.Node | None = None
    names: frozenset[str] = frozenset()


def analyse(text: str, *, expression: bool = False) -> Analysis:
    """Parse once for every static check (unknown filters and tests count as syntax errors)."""
    if expression and text.lstrip().startswith("{{"):
        return Analysis(TemplateSyntaxProblem("write expressions without {{ }}", 1))
    try:
        tree = parse(text, expression=expression)
        return Analysis(None, tree, frozenset(variables_of(tree)))
    except jinja2.TemplateSyntaxError as exc:  # includes TemplateAssertionError
        return Analysis(TemplateSyntaxProblem(exc.message or "template syntax error",
                                              exc.lineno or 1))


def variables_of(tree: jinja2.nodes.Node) -> set[str]:
    """The top-level names a parsed template or expression reads."""
    if not isinstance(tree, jinja2.nodes.Template):
        tree = jinja2.nodes.Template([jinja2.nodes.Output([tree])], lineno=1)
        tree.set_environment(parser_env())
    return set(jinja2.meta.find_undeclared_variables(tree))


def variables(text: str, *, expression: bool = False) -> set[str]:
    """The top-level names a template or expression reads (assumes valid syntax)."""
    return variables_of(parse(text, expression=expression))


def attribute_chains(expression: str) -> list[str]:
    """The variable references in an expression (``resp.status``, ``x['a']``), outermost
    first, for showing their values when an assertion fails."""
    env = parser_env()
    node = env.parse(f"{{{{ {expression} }}}}")
    found: list[str] = []
    for ref in node.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Name)):
        text = _chain_text(ref)
        if text and not any(other.startswith(text) for other in found):
            found.append(text)
    return found


def _chain_text(node: jinja2.nodes.Node) -> str | None:
    if isinstance(node, jinja2.nodes.Name):
        return str(node.name)
    if isinstance(node, jinja2.nodes.Getattr):
        base = _chain_text(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const):
        base = _chain_text(node.node)
        return f"{base}[{node.arg.value!r}]" if base else None
    return None


class TemplateError(Exception):
    """A template failed at execution time (undefined variable, bad filter argument, ...)."""


class Renderer:
    """Renders templates and evaluates expressions in a sandbox, caching compiled code."""

    def __init__(self, undefined: type[jinja2.Undefined] = jinja2.StrictUndefined) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.env = _configure(ImmutableSandboxedEnvironment(
            undefined=undefined, keep_trailing_newline=True))
        self._templates: dict[str, jinja2.Template] = {}
        self._expressions: dict[str, Any] = {}

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any:
        """The value of a bare expression."""
        compiled = self._expressions.get(expression)
        if compiled is None:
            compiled = self._expressions[expression] = self._compile_expression(expression)
        try:
            value = compiled(**scope)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"in {expression!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"in {expression!r}: {exc}") from None
        except Exception as exc:  # filters and operators raise ordinary errors
            raise TemplateError(f"in {expression!r}: {type(exc).__name__}: {exc}") from None

    def _compile_expression(self, expression: str) -> Any:
        try:
            return self.env.compile_expression(expression, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"in {expression!r}: {exc.message}") from None

    def render_text(self, text: str, scope: Mapping[str, Any]) -> Any:
        """Render one string; a lone ``{{ expr }}`` keeps the expression's native type."""
        if not is_template(text):
            return text
        single = _single_expression(text)
        if single is not None:
            return self.evaluate(single, scope)
        template = self._templates.get(text)
        try:
            if template is None:
                template = self._templates[text] = self.env.from_string(text)
            return template.render(scope)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"in {text!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"in {text!r}: {exc}") from None
        except Exception as exc:
            raise TemplateError(f"in {text!r}: {type(exc).__name__}: {exc}") from None

    def render(self, value: Any, scope: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> Any:
        """Render every template inside a value (mappings and lists recursively).

        ``skip`` names top-level mapping keys to leave as they are (expression fields).
        """
        if isinstance(value, str):
            return self.render_text(value, scope)
        if isinstance(value, dict):
            return {k: (v if k in skip else self.render(v, scope)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, scope) for v in value]
        return value

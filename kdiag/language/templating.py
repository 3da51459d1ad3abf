"""Jinja2 templates and expressions, rendered in a bounded sandbox at execution time.

Strings in a step's body that contain ``{{`` or ``{%`` are templates. A string that is exactly one
``{{ expression }}`` yields the expression's native value (so ``port: "{{ params.port }}"`` stays
an integer). ``when``, ``until`` and ``assert`` hold bare expressions. Undefined variables are
errors, never empty strings. Rendering runs in :mod:`~kdiag.language.sandbox` (bounded in size
and time); static checks parse with :mod:`~kdiag.language.templateparse`, which never runs
anything and does not import the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jinja2

from kdiag.language.filters import quote
from kdiag.language.limits import Limits, current
from kdiag.language.templateparse import (
    Analysis,
    TemplateSyntaxProblem,
    analyse,
    attribute_chains,
    is_template,
    parse,
    variables,
    variables_of,
)

__all__ = ["Analysis", "Renderer", "TemplateError", "TemplateSyntaxProblem", "analyse",
           "attribute_chains", "check_template", "is_template", "parse", "quote", "variables",
           "variables_of"]

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_SHOWN = 80


def _single_expression(text: str) -> str | None:
    match = _SINGLE.match(text)
    if match is None:
        return None
    inner = match.group("expr")
    return None if ("{{" in inner or "}}" in inner or "{%" in inner) else inner


def check_template(text: str, *, expression: bool = False) -> TemplateSyntaxProblem | None:
    """Parse a template (or a bare expression); return its syntax error, if any."""
    return analyse(text, expression=expression).problem


def _shown(text: str) -> str:
    """A template as messages quote it (long ones shortened)."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "...")


class TemplateError(Exception):
    """A template failed at execution time (undefined variable, bad filter argument, a limit
    of the sandbox, ...)."""


def _failure(text: str, exc: Exception) -> TemplateError:
    from kdiag.language.sandbox import LimitExceeded

    if isinstance(exc, jinja2.UndefinedError):
        detail = exc.message or "undefined"
    elif isinstance(exc, jinja2.TemplateError | LimitExceeded):
        detail = str(exc)
    elif isinstance(exc, RecursionError):
        detail = "nested too deeply"
    else:  # filters and operators raise ordinary errors
        detail = f"{type(exc).__name__}: {exc}"
    return TemplateError(f"in {_shown(text)}: {detail}")


class Renderer:
    """Renders templates and evaluates expressions in a sandbox, caching compiled code."""

    def __init__(self, undefined: type[jinja2.Undefined] = jinja2.StrictUndefined,
                 limits: Limits | None = None) -> None:
        from kdiag.language.sandbox import BoundedSandbox

        self.limits = limits or current()
        self.env = BoundedSandbox(self.limits, undefined=undefined, keep_trailing_newline=True)
        self._templates: dict[str, jinja2.Template] = {}
        self._expressions: dict[str, Any] = {}

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any:
        """The value of a bare expression."""
        from kdiag.language.sandbox import bounded

        try:
            with bounded(self.limits):
                compiled = self._expressions.get(expression)
                if compiled is None:
                    compiled = self._expressions[expression] = self.env.compile_expression(
                        expression, undefined_to_none=False)
                value = compiled(**scope)
                if isinstance(value, jinja2.Undefined):
                    value._fail_with_undefined_error()
                return value
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"in {_shown(expression)}: {exc.message}") from None
        except Exception as exc:
            raise _failure(expression, exc) from None

    def render_text(self, text: str, scope: Mapping[str, Any]) -> Any:
        """Render one string; a lone ``{{ expr }}`` keeps the expression's native type."""
        if not is_template(text):
            return text
        single = _single_expression(text)
        if single is not None:
            return self.evaluate(single, scope)
        from kdiag.language.sandbox import bounded

        try:
            with bounded(self.limits):
                template = self._templates.get(text)
                if template is None:
                    template = self._templates[text] = self.env.from_string(text)
                return template.render(scope)
        except Exception as exc:
            raise _failure(text, exc) from None

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

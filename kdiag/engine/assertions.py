"""Evaluating assertions and explaining failed ones with the values they referred to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kdiag.engine.events import AssertionResult, StepRef
from kdiag.language.templating import Renderer, TemplateError, attribute_chains

MAX_VALUE = 2000


def show(value: Any) -> str:
    """A value as the report shows it (JSON-like, shortened)."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + f"... ({len(text)} chars)"


def evaluate_assertion(renderer: Renderer, step: StepRef, expression: str,
                       scope: Mapping[str, Any]) -> AssertionResult:
    """Evaluate one assertion; a failed (or erroring) one carries the values it used."""
    try:
        passed = bool(renderer.evaluate(expression, scope))
        message = "" if passed else "assertion failed"
    except TemplateError as exc:
        passed, message = False, str(exc)
    values: dict[str, str] = {}
    if not passed:
        for chain in attribute_chains(expression):
            try:
                values[chain] = show(renderer.evaluate(chain, scope))
            except TemplateError:
                values[chain] = "(undefined)"
    return AssertionResult(step=step, expression=expression, passed=passed, values=values,
                           message=message)

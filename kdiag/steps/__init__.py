"""Step types, one module each; this package finds them.

A module here that defines ``STEP`` (an instance of :class:`~kdiag.steps.base.StepType`) is a
step type. Adding one touches only its own module (and its test).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from kdiag.language.catalog import StepCatalog
from kdiag.steps.base import StepType

_NOT_STEPS = frozenset({"base"})


@cache
def step_types() -> dict[str, StepType]:
    """All step types by their ``kind``, in a stable (alphabetical) order."""
    found: dict[str, StepType] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name in _NOT_STEPS:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        step = getattr(module, "STEP", None)
        if isinstance(step, StepType):
            if step.kind in found:
                raise RuntimeError(f"step kind {step.kind!r} is defined twice")
            found[step.kind] = step
    return dict(sorted(found.items()))


@cache
def catalog() -> StepCatalog:
    """The step types as the runbook language sees them (for the loader and the schema)."""
    return StepCatalog(step_types())

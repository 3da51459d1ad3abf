"""The step types a runbook may use, as the language sees them, and the schema they make.

The language checks runbooks against a :class:`StepCatalog` it is handed: the kind of each step
type, its body's schema and how it nests. It never imports the step types themselves (they are
execution code, a layer above); ``kdiag.steps.catalog()`` builds the real catalog from them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Protocol

from kdiag.language.schema import (
    DURATION_DEF,
    IDENTIFIER,
    KUBERNETES_TARGET,
    NODE_TARGET,
    PARAM_DEF,
    SCHEMA_ID,
    TEMPLATE_DEF,
    step_def,
    steps_list,
)
from kdiag.language.schemacheck import Schema


class StepSyntax(Protocol):
    """What the language needs of a step type (``kdiag.steps.base.StepType`` has it)."""

    @property
    def kind(self) -> str:
        """The key that selects the step type in a step."""

    @property
    def summary(self) -> str:
        """One line, for the schema's description."""

    @property
    def schema(self) -> Schema:
        """The schema of the step's body."""

    @property
    def children_field(self) -> str | None:
        """A body field holding nested steps, if any."""

    @property
    def expression_fields(self) -> frozenset[str]:
        """Body fields holding expressions (checked as such, not as templates)."""

    @property
    def can_background(self) -> bool:
        """Whether ``background: true`` is allowed."""


class StepCatalog:
    """The step types by kind (in a stable order) and the runbook schema composed from them."""

    def __init__(self, types: Mapping[str, StepSyntax]) -> None:
        self.types = dict(types)

    def __getitem__(self, kind: str) -> StepSyntax:
        return self.types[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    @cached_property
    def schema(self) -> Schema:
        """The complete runbook schema, built once: for read-only use (validation)."""
        defs: dict[str, Schema] = {
            "template": TEMPLATE_DEF,
            "duration": DURATION_DEF,
            "param": PARAM_DEF,
            "step": {"title": "a step",
                     "anyOf": [{"$ref": f"#/$defs/step_{k}"} for k in self.types]},
            "steps": steps_list("Steps run inside this step."),
        }
        for kind, step in self.types.items():
            defs[f"step_{kind}"] = step_def(kind, step.schema, step.summary)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "kdiag runbook",
            "type": "object",
            "additionalProperties": False,
            "required": ["steps"],
            "properties": {
                "name": {"type": "string",
                         "description": "The runbook's name (default: file name)."},
                "description": {"type": "string"},
                "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/param"},
                           "propertyNames": {"pattern": IDENTIFIER, "title": "an identifier"},
                           "description": "Inputs, set with --set name=value or --values file."},
                "env": {"type": "array", "items": {"type": "string", "pattern": IDENTIFIER,
                                                   "title": "an identifier"},
                        "description": "Environment variables templates may read as env.NAME."},
                "target": {
                    "type": "object", "additionalProperties": False,
                    "minProperties": 1, "maxProperties": 1,
                    "properties": {"node": NODE_TARGET, "kubernetes": KUBERNETES_TARGET},
                    "description": "What the manager steps act on: node (a host PID) or "
                                   "kubernetes.",
                },
                "steps": steps_list("The steps, run in order."),
                "finally": steps_list("Steps that always run at the end, also after a failure."),
                "outputs": {"type": "object", "propertyNames": {"pattern": IDENTIFIER},
                            "description": "Values (templates) a calling runbook gets back."},
            },
            "$defs": defs,
        }

    def runbook_schema(self) -> Schema:
        """The complete runbook schema (a fresh copy the caller may change)."""
        return copy.deepcopy(self.schema)

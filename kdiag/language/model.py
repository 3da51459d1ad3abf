"""The runbook as data: what the loader and validator produce and the engine executes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kdiag.errors import Location
from kdiag.language.yamlsource import Path as DocPath
from kdiag.language.yamlsource import SourceMap

ParamType = Literal["string", "integer", "number", "boolean", "list", "object"]
Phase = Literal["steps", "finally"]


@dataclass(frozen=True)
class ParamSpec:
    """A declared input of a runbook."""

    name: str
    type: ParamType = "string"
    default: Any = None
    has_default: bool = False
    description: str = ""
    secret: bool = False
    choices: tuple[Any, ...] = ()
    location: Location | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step as written: its controls, its type (``kind``) and its unrendered body."""

    index: int
    name: str
    kind: str
    body: Any
    phase: Phase
    doc_path: DocPath
    location: Location
    when: str | bool | None = None
    register: str | None = None
    timeout: float | str | None = None
    retries: int | str = 0
    until: str | None = None
    delay: float | str | None = None
    continue_on_error: bool = False
    background: bool = False
    parallel: int | str | None = None
    """With a ``pick: all`` target: on how many pods at once a manager step runs."""
    asserts: tuple[str, ...] = ()
    secret: bool | tuple[str, ...] = False
    """What the step reads is secret: its output is withheld, its values masked (``True``:
    its whole result; expressions: their values)."""
    description: str = ""
    children: tuple[StepSpec, ...] = ()
    """Steps nested in this one (a step type's ``children_field``), run by the step itself."""


@dataclass
class Runbook:
    """A validated runbook."""

    name: str
    file: str
    description: str = ""
    params: dict[str, ParamSpec] = field(default_factory=dict)
    env: tuple[str, ...] = ()
    target: dict[str, Any] | None = None
    steps: list[StepSpec] = field(default_factory=list)
    finally_steps: list[StepSpec] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    source: SourceMap | None = None

    @property
    def directory(self) -> Path:
        """The folder the runbook file is in (relative includes start here)."""
        return Path(self.file).resolve().parent

    def all_steps(self) -> list[StepSpec]:
        """The main steps followed by the ``finally`` steps."""
        return [*self.steps, *self.finally_steps]

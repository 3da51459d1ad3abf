"""One runbook being executed (the top one, or an included one): its params and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdiag.language.model import Runbook, StepSpec


@dataclass
class Frame:
    """One runbook being executed (the top one, or an included one)."""

    runbook: Runbook
    params: dict[str, Any]
    path: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    registered: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def scope(self, **extra: Any) -> dict[str, Any]:
        """What templates see: registered results, then the fixed names."""
        return {**self.registered, "params": self.params, "env": self.env,
                "target": self.target, "run": self.run_info, "steps": self.results, **extra}

    def register(self, spec: StepSpec, result: dict[str, Any]) -> None:
        """Keep a step's result under its name (and its ``register`` name)."""
        self.results[spec.name] = result
        if spec.register:
            self.registered[spec.register] = result

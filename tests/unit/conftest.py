"""Helpers for running runbooks in unit tests: write YAML to a temp dir, run it, keep events."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kdiag.engine.bus import EventBus
from kdiag.engine.events import Event, StepFinished, StepOutput
from kdiag.engine.masking import Masker
from kdiag.engine.runner import Run, RunOptions
from kdiag.language.params import resolve_params
from kdiag.language.runbook import Loader
from kdiag.steps import catalog


@dataclass
class Recorder:
    """An event sink that keeps every event."""

    events: list[Event] = field(default_factory=list)

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def finished(self) -> dict[str, StepFinished]:
        return {e.step.qualified_name: e for e in self.events if isinstance(e, StepFinished)}

    def status(self) -> dict[str, str]:
        return {name: e.status for name, e in self.finished().items()}

    def output(self, name: str) -> str:
        return "".join(e.text for e in self.events
                       if isinstance(e, StepOutput) and e.step.qualified_name == name)


@dataclass
class Outcome:
    exit_code: int
    recorder: Recorder

    @property
    def status(self) -> dict[str, str]:
        return self.recorder.status()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a runbook (dedented YAML) into the test's temp folder and return its path."""

    def _write(text: str, name: str = "runbook.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def run_runbook(write: Callable[..., Path]) -> Callable[..., Outcome]:
    """Run a runbook given as YAML text through the real engine; returns exit code and events."""

    def _run(text: str, sets: dict[str, str] | None = None, options: RunOptions | None = None,
             interaction: Any = None, open_target: Any = None) -> Outcome:
        path = write(text)
        loader = Loader(catalog())
        runbook = loader.load(str(path))
        values = resolve_params(runbook, sets)
        recorder = Recorder()
        run = Run(EventBus([recorder], Masker(values.secrets)), loader, options, interaction,
                  open_target)
        return Outcome(run.execute(runbook, values.values), recorder)

    return _run

"""``--artifacts DIR``: every step's output in its own file, plus the run record.

Layout::

    DIR/run.json                   the JSON report document (all runs, all steps)
    DIR/NN-<slug>/output.log       the step's output, complete, as it streamed (or, for a step
                                   that streamed nothing, the output its StepFinished carries)
    DIR/NN-<slug>/result.json      the step's record without output: status, message,
                                   result, assertions with values, notes, artifacts

``NN-<slug>`` is :func:`~kdiag.engine.artifacts.step_folder_name`: the step's run-wide number and a
file-name-safe slug of its qualified name, the folder where the engine also writes the step's
own files (captures). A name already taken in this directory gets ``-2``, ``-3``...
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kdiag.engine.artifacts import step_folder_name
from kdiag.engine.events import Event, RunStarted, StepFinished, StepOutput
from kdiag.errors import EnvironmentProblem
from kdiag.reports.record import RunLog
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import write_atomic


class ArtifactsReporter:
    """Keeps every step's output (and result) in files under ``directory``.

    Write failures during the run do not disturb it: the first one is kept and raised from
    :meth:`close` as an :class:`~kdiag.errors.EnvironmentProblem`.
    """

    def __init__(self, directory: str, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(clock=clock)
        self._dirs: dict[int, Path] = {}  # id(StepRecord) -> its directory
        self._records: list[StepRecord] = []
        self._open: dict[int, TextIO] = {}
        self._streamed: set[int] = set()
        self._names: set[str] = set()
        self._error: OSError | None = None
        self._closed = False

    def handle(self, event: Event) -> None:
        """Record ``event`` and write what it adds to the step's files."""
        _run, step = self.log.handle(event)
        if step is None or isinstance(event, RunStarted):
            return
        try:
            step_dir = self._step_dir(step)
            if isinstance(event, StepOutput):
                self._append(step, step_dir, event.text)
            elif isinstance(event, StepFinished):
                self._close_file(step)
                if event.output and id(step) not in self._streamed:
                    # Nothing streamed: the engine's captured output is all there is.
                    write_atomic(step_dir / "output.log", event.output)
                self._write_result(step, step_dir)
        except OSError as exc:
            self._error = self._error or exc

    def close(self) -> None:
        """Write results of unfinished steps and ``run.json``; close files (once)."""
        if self._closed:
            return
        self._closed = True
        self.log.close()
        try:
            for rec in self._records:
                self._close_file(rec)
                if not rec.finished:
                    self._write_result(rec, self._dirs[id(rec)])
            write_atomic(self.directory / "run.json", _dump(self.log.to_dict()))
        except OSError as exc:
            self._error = self._error or exc
        if self._error is not None:
            reason = self._error.strerror or str(self._error)
            name = self._error.filename or self.directory
            raise EnvironmentProblem(f"cannot write artifacts to {name}: {reason}") from self._error

    def step_directory(self, step: StepRecord) -> Path | None:
        """The directory holding ``step``'s files, if it has one yet."""
        return self._dirs.get(id(step))

    def _step_dir(self, step: StepRecord) -> Path:
        path = self._dirs.get(id(step))
        if path is None:
            ref = step.ref
            # The engine puts a step's own files (captures) in the folder of the same name.
            name = base = step_folder_name(ref.seq, ref.qualified_name)
            n = 1
            while name in self._names:  # same index and name in another phase, runbook or run
                n += 1
                name = f"{base}-{n}"
            self._names.add(name)
            path = self.directory / name
            path.mkdir(parents=True, exist_ok=True)
            (path / "output.log").touch()
            self._dirs[id(step)] = path
            self._records.append(step)
        return path

    def _append(self, step: StepRecord, step_dir: Path, text: str) -> None:
        self._streamed.add(id(step))
        f = self._open.get(id(step))
        if f is None:
            f = open(  # noqa: SIM115 - kept open while the step streams, closed at finish
                step_dir / "output.log", "a", encoding="utf-8", errors="backslashreplace"
            )
            self._open[id(step)] = f
        f.write(text)
        if step.finished:
            # Output after the step finished (a background step): nothing else will close it.
            self._close_file(step)

    def _close_file(self, step: StepRecord) -> None:
        f = self._open.pop(id(step), None)
        if f is not None:
            f.close()

    def _write_result(self, step: StepRecord, step_dir: Path) -> None:
        data: dict[str, Any] = step.to_dict()
        data.pop("output", None)
        data["output_file"] = "output.log"
        write_atomic(step_dir / "result.json", _dump(data))


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

"""``make bench``: run every ``tests/bench/bench_*.py`` and print figures side by side.

Each bench module has ``run(record)`` and ``FIGURES``, the names of the figures it measures.
``record(name, value, unit, target, baseline, sides=...)`` stores one figure: ``target`` is a
comparison such as ``"<= 3"`` (``""`` for a figure shown for context), ``sides`` says what each
side of a ratio does (printed on its line, so a reader can judge the comparison). A module that
cannot measure on this machine (not root, no cluster) raises :class:`Unmeasurable` with the
reason.

Each run writes a fresh ``.bench/results.json``: the commit, the time, the load average (at the
start and the end) and the CPU count; ``figures`` (``{name: {value, unit, target, baseline,
sides, met}}``); ``not_measured`` (``{name: reason}``: unmeasurable here, or not selected).
Nothing of an earlier run is kept. The exit status is 1 when a figure misses its target, or
when a figure this machine can measure was not measured (its module failed or did not record
it). ``python -m tests.bench.run engine`` runs only the modules whose name contains ``engine``.
"""

from __future__ import annotations

import importlib
import json
import operator
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.bench.figures import Unmeasurable

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".bench" / "results.json"
_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}

__all__ = ["Figure", "Session", "Unmeasurable", "main"]


@dataclass
class Figure:
    value: float
    unit: str
    target: str
    baseline: float | None
    sides: str = ""

    def met(self) -> bool | None:
        """Whether the target holds (None: no target)."""
        if not self.target:
            return None
        sign, _, bound = self.target.partition(" ")
        return bool(_COMPARE[sign](self.value, float(bound)))


@dataclass
class Session:
    """One ``make bench`` run: what was measured, what was not and why."""

    figures: dict[str, Figure] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    failed_modules: dict[str, str] = field(default_factory=dict)

    def record(self, name: str, value: float, unit: str, target: str = "",
               baseline: float | None = None, *, sides: str = "") -> None:
        """Store one figure and print it."""
        self.figures[name] = Figure(round(value, 6), unit, target, baseline, sides)
        _print(name, self.figures[name])

    def run_module(self, name: str, module: ModuleType) -> None:
        """Run one bench module; account for each figure it declares."""
        declared = list(getattr(module, "FIGURES", ()))
        try:
            module.run(self.record)
        except Unmeasurable as exc:
            reason = str(exc)
            print(f"  not measured here: {reason}", flush=True)
            for figure in declared:
                if figure not in self.figures:
                    self.not_measured[figure] = reason
            return
        except Exception as exc:
            traceback.print_exc()
            self.failed_modules[name] = f"{type(exc).__name__}: {exc}"
        why = self.failed_modules.get(name, "the module did not record it")
        for figure in declared:
            if figure not in self.figures:
                self.missing[figure] = why
                print(f"  MISSING {figure}: {why}", flush=True)
        if not declared:
            print(f"  note: {name} declares no FIGURES; a figure it fails to record goes "
                  "unnoticed", flush=True)

    def skip_module(self, module: ModuleType, reason: str) -> None:
        """A module not selected in this run: its figures are not measured, for ``reason``."""
        for figure in getattr(module, "FIGURES", ()):
            self.not_measured[figure] = reason

    def missed_targets(self) -> list[str]:
        """The figures that miss their target."""
        return [name for name, figure in self.figures.items() if figure.met() is False]

    def results(self, started: dict[str, Any]) -> dict[str, Any]:
        """The results file's content."""
        return {**started, "finished": _now(), "load_average_end": list(os.getloadavg()),
                "figures": {name: {**asdict(f), "met": f.met()} for name, f in self.figures.items()},
                "not_measured": dict(sorted(self.not_measured.items())),
                "missing": dict(sorted(self.missing.items())),
                "failed_modules": self.failed_modules}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def header() -> dict[str, Any]:
    """What the figures depend on: the code, the time, the machine and its load."""
    return {**_commit(), "time": _now(), "load_average": list(os.getloadavg()),
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "argv": sys.argv[1:]}


def bench_modules() -> list[tuple[str, ModuleType]]:
    """Every ``tests/bench/bench_*.py``, by name."""
    return [(path.stem, importlib.import_module(f"tests.bench.{path.stem}"))
            for path in sorted(Path(__file__).parent.glob("bench_*.py"))]


def main(argv: list[str], modules: list[tuple[str, ModuleType]] | None = None,
         results: Path = RESULTS) -> int:
    """Run the benchmarks matching ``argv`` (all by default); print and save the figures to a
    fresh ``results`` file."""
    started = header()
    print(f"commit {started['commit'][:12]}{' (dirty)' if started['dirty'] else ''}, "
          f"{started['cpu_count']} CPUs, load average "
          + " ".join(f"{x:.2f}" for x in started["load_average"]), flush=True)
    session = Session()
    for name, module in bench_modules() if modules is None else modules:
        if argv and not any(word in name for word in argv):
            session.skip_module(module, f"not selected (python -m tests.bench.run "
                                        f"{' '.join(argv)})")
            continue
        print(f"== {name}", flush=True)
        session.run_module(name, module)
    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = results.with_suffix(".tmp")
    tmp.write_text(json.dumps(session.results(started), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(results)  # a fresh file: nothing of an earlier run survives
    missed = session.missed_targets()
    print(f"\n{len(session.figures)} figures, {len(missed)} missed their target"
          + (f": {', '.join(missed)}" if missed else "")
          + (f"; {len(session.missing)} not measured although measurable: "
             f"{', '.join(session.missing)}" if session.missing else "")
          + (f"; {len(session.not_measured)} not measured (listed below)"
             if session.not_measured else ""))
    for name, reason in session.not_measured.items():
        print(f"  not measured: {name}: {reason}")
    print(f"written to {results}")
    return 1 if missed or session.missing or session.failed_modules else 0


def _print(name: str, figure: Figure) -> None:
    verdict = {True: "ok", False: "MISSED", None: ""}[figure.met()]
    baseline = f"  (baseline {figure.baseline:g})" if figure.baseline is not None else ""
    target = f"  target {figure.target}" if figure.target else ""
    print(f"  {name:<44} {figure.value:>12.4g} {figure.unit:<8}{target}{baseline}  {verdict}",
          flush=True)
    if figure.sides:
        print(f"      {figure.sides}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

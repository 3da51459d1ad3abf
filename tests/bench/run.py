"""``make bench``: run every ``tests/bench/bench_*.py`` and print figures side by side.

Each bench module has ``run(record)``; ``record(name, value, unit, target, baseline)`` stores one
figure. ``target`` is a comparison such as ``"<= 3"`` (or ``""`` for a figure shown for context).
The figures go to ``.bench/results.json`` as ``{name: {value, unit, target, baseline}}``; the exit
status is 1 when a figure misses its target. ``python -m tests.bench.run engine`` runs only the
modules whose name contains ``engine``.
"""

from __future__ import annotations

import importlib
import json
import operator
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".bench" / "results.json"
_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass
class Figure:
    value: float
    unit: str
    target: str
    baseline: float | None

    def met(self) -> bool | None:
        """Whether the target holds (None: no target)."""
        if not self.target:
            return None
        sign, _, bound = self.target.partition(" ")
        return bool(_COMPARE[sign](self.value, float(bound)))


def main(argv: list[str]) -> int:
    """Run the benchmarks matching ``argv`` (all by default); print and save the figures."""
    figures: dict[str, Figure] = {}

    def record(name: str, value: float, unit: str, target: str = "",
               baseline: float | None = None) -> None:
        figures[name] = Figure(round(value, 6), unit, target, baseline)
        _print(name, figures[name])

    failed_modules = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if argv and not any(word in path.stem for word in argv):
            continue
        print(f"== {path.stem}", flush=True)
        try:
            importlib.import_module(f"tests.bench.{path.stem}").run(record)
        except Exception:
            traceback.print_exc()
            failed_modules.append(path.stem)
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update({name: asdict(figure) for name, figure in figures.items()})
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    missed = [name for name, figure in figures.items() if figure.met() is False]
    print(f"\n{len(figures)} figures, {len(missed)} missed their target"
          + (f": {', '.join(missed)}" if missed else "")
          + (f"; failed: {', '.join(failed_modules)}" if failed_modules else ""))
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 1 if missed or failed_modules else 0


def _print(name: str, figure: Figure) -> None:
    verdict = {True: "ok", False: "MISSED", None: ""}[figure.met()]
    baseline = f"  (baseline {figure.baseline:g})" if figure.baseline is not None else ""
    target = f"  target {figure.target}" if figure.target else ""
    print(f"  {name:<44} {figure.value:>12.4g} {figure.unit:<8}{target}{baseline}  {verdict}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Engine benchmarks: CLI start-up against a bare interpreter, and per-step engine overhead.

- ``kdiag --help`` and ``kdiag validate`` on one runbook, each as a ratio to ``python3 -c pass``
  (medians of interleaved runs, so machine noise hits all three alike), with kdiag's bytecode
  compiled first, as an installed tool has it (an editable install writes it on first use,
  except where ``PYTHONDONTWRITEBYTECODE`` is set: then every start compiles ~25 ms of source);
- the engine's overhead per no-op step, the median gap between consecutive steps of a
  1000-step runbook run through the real engine with the plain console reporter.
"""

from __future__ import annotations

import io
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Record = Callable[..., None]
ROOT = Path(__file__).resolve().parents[2]
KDIAG = [sys.executable, "-m", "kdiag"]
RUNS = 25
STEPS = 1000
FIGURES = ("startup.python_ms", "startup.help_ratio", "startup.validate_ratio",
           "engine.step_overhead_median_ms", "engine.step_overhead_p99_ms")


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _startup(record: Record) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kdiag"),
                    str(ROOT / "manager" / "kdiag_manager")], check=True)
    runbook = str(ROOT / "runbooks" / "local-http-check.yaml")
    commands = {"python": [sys.executable, "-c", "pass"], "help": [*KDIAG, "--help"],
                "validate": [*KDIAG, "validate", runbook]}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(3):  # warm the page cache
        for argv in commands.values():
            _time(argv)
    for _ in range(RUNS):
        for name, argv in commands.items():
            samples[name].append(_time(argv))
    base = statistics.median(samples["python"])
    record("startup.python_ms", base * 1000, "ms")
    each = f"median of {RUNS} runs each, taking turns"
    record("startup.help_ratio", statistics.median(samples["help"]) / base, "x", "<= 3", base * 1000,
           sides=f"`kdiag --help` (a new process: interpreter, kdiag's imports, the help text) "
                 f"÷ `python3 -c pass` (a new bare interpreter); {each}")
    record("startup.validate_ratio", statistics.median(samples["validate"]) / base, "x", "<= 6",
           base * 1000, sides=f"`kdiag validate runbooks/local-http-check.yaml` (a new process: "
                              f"load, schema and template checks) ÷ `python3 -c pass`; {each}")


def _engine_overhead(record: Record) -> None:
    from kdiag.engine.bus import EventBus
    from kdiag.engine.events import Event, StepFinished
    from kdiag.engine.runner import Run
    from kdiag.language.runbook import Loader
    from kdiag.reports.console import ConsoleReporter
    from kdiag.steps import catalog

    stamps: list[float] = []

    class Stamp:
        def handle(self, event: Event) -> None:
            if isinstance(event, StepFinished):
                stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "many.yaml"
        steps = "".join(f"  - {{name: s{i}, wait: 0, register: r{i % 10}}}\n" for i in range(STEPS))
        path.write_text("steps:\n" + steps)
        loader = Loader(catalog())
        runbook = loader.load(str(path))
        console = ConsoleReporter(io.StringIO())
        Run(EventBus([console, Stamp()]), loader).execute(runbook, {})
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    record("engine.step_overhead_median_ms", statistics.median(gaps) * 1000, "ms", "<= 1")
    record("engine.step_overhead_p99_ms", sorted(gaps)[int(len(gaps) * 0.99)] * 1000, "ms")


def run(record: Record) -> None:
    """Measure and record the engine figures."""
    _startup(record)
    _engine_overhead(record)

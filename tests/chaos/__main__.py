"""``python -m tests.chaos`` (``make chaos``): repeat each fault, print per fault the worst
recovery and the rules left, exit 1 when a figure misses its target.

Targets: recovery (from the fault until a fresh connection reaches the app) ≤ 2 s in every
round, no kdiag rule (nftables or iptables) left 5 s after a fault, no other problem (corrupted
data, a session folder left...). Options: ``--suite node`` (default; ``all``, or another suite
once a module registers faults for it), ``--only TEXT`` (faults whose name contains it),
``--rounds N`` (instead of each fault's own count; fewer than 20 is for trying things out).
Adding faults: a module ``tests/chaos/<name>_faults.py`` that calls ``registry.register``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from .registry import FAULTS, MAX_RECOVERY, RULES_DEADLINE, RoundResult, Summary


def _load_faults() -> None:
    """Import every module of this package named ``*_faults``: each registers its faults
    (``node_faults`` here; a ``cluster_faults`` module joins the same way)."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.endswith("_faults"):
            importlib.import_module(f"{__package__}.{module.name}")


def _round(fault_name: str, run: object, setup: object, index: int) -> RoundResult:
    try:
        return run(setup, index)  # type: ignore[operator]
    except Exception as exc:  # a round that crashed is a failed round, not a crashed suite
        return RoundResult(None, 0, [f"{type(exc).__name__}: {exc}"])


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def _print_table(summaries: list[Summary]) -> None:
    header = ("fault", "rounds", "worst recovery", "median", "rules left", "verdict")
    rows = [(s.fault.name + (f" ({s.fault.note})" if s.fault.note else ""),
             str(len(s.results)), _seconds(s.worst_recovery), _seconds(s.median_recovery),
             str(s.rules_left), "ok" if s.ok else "MISS") for s in summaries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(f"targets: recovery ≤ {MAX_RECOVERY:g} s in every round, 0 rules left "
          f"{RULES_DEADLINE:g} s after each fault, no problems")
    for summary in summaries:
        for problem in summary.problems:
            print(f"  {summary.fault.name}: {problem}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected faults; 0 when every figure met its target."""
    _load_faults()
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    suites = sorted({f.suite for f in FAULTS})
    parser.add_argument("--suite", default="node", choices=[*suites, "all"])
    parser.add_argument("--only", default="")
    parser.add_argument("--rounds", type=int, default=0)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("chaos: needs root (network namespaces, nftables, iptables)", file=sys.stderr)
        return 3
    faults = [f for f in FAULTS if (args.suite == "all" or f.suite == args.suite)
              and args.only in f.name]
    if args.rounds:
        faults = [replace(f, rounds=args.rounds) for f in faults]
    summaries = []
    started = time.monotonic()
    for fault in faults:
        t0 = time.monotonic()
        results: list[RoundResult] = []
        try:
            with fault.setup() as setup:
                for index in range(fault.rounds):
                    results.append(_round(fault.name, fault.run_round, setup, index))
        except Exception as exc:
            results.append(RoundResult(None, 0, [f"setup: {type(exc).__name__}: {exc}"]))
        summary = Summary(fault, results)
        summaries.append(summary)
        print(f"chaos: {fault.name}: {len(results)} rounds in {time.monotonic() - t0:.0f} s, "
              f"worst recovery {_seconds(summary.worst_recovery)}, rules left "
              f"{summary.rules_left}{'' if summary.ok else ' — MISS'}", flush=True)
    print(f"\nchaos ({args.suite}): {len(faults)} faults in {time.monotonic() - started:.0f} s\n")
    _print_table(summaries)
    return 0 if summaries and all(s.ok for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())

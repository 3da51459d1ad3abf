"""``make coverage``'s table: line and branch coverage per package, and the total.

Reads the combined coverage data (``COVERAGE_FILE``), groups files by package (``kdiag/engine``,
``kdiag/steps``, ..., ``manager``, ``manager/wire``) and prints one line each, then the total
with the targets of the non-cluster suite (issue 22: ≥ 90 % of lines, ≥ 85 % of branches,
``kdiag/steps`` ≥ 85 % of lines). ``--json PATH`` also writes the table; ``--strict`` exits 1
when a target is missed (CI prints the table without failing on it).

    python -m tests.quality.coverage_table [--json PATH] [--strict]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOTAL_LINES, TOTAL_BRANCHES = 90.0, 85.0
PACKAGE_LINES = {"kdiag/steps": 85.0}


@dataclass
class Counts:
    """Statements and branches of a group of files, and how many of each ran."""

    statements: int = 0
    covered: int = 0
    branches: int = 0
    covered_branches: int = 0

    def add(self, summary: dict[str, int]) -> None:
        """Add one file's summary (coverage's JSON report)."""
        self.statements += summary["num_statements"]
        self.covered += summary["covered_lines"]
        self.branches += summary.get("num_branches", 0)
        self.covered_branches += summary.get("covered_branches", 0)

    @property
    def lines_pct(self) -> float:
        """Percent of statements run (100 for none)."""
        return 100.0 * self.covered / self.statements if self.statements else 100.0

    @property
    def branches_pct(self) -> float:
        """Percent of branch destinations taken (100 for none)."""
        return 100.0 * self.covered_branches / self.branches if self.branches else 100.0


def package_of(path: str) -> str:
    """The group a measured file counts in: ``kdiag/<subpackage>``, ``kdiag`` for the top-level
    modules, ``manager/wire`` or ``manager``."""
    parts = Path(path).resolve().relative_to(ROOT).parts
    if parts[0] == "manager":
        return "manager/wire" if "wire" in parts else "manager"
    return f"kdiag/{parts[1]}" if len(parts) > 2 else "kdiag"


def table(report: dict) -> tuple[dict[str, Counts], Counts]:
    """Per-package counts and the total from coverage's JSON report."""
    packages: dict[str, Counts] = {}
    total = Counts()
    for path, data in report["files"].items():
        packages.setdefault(package_of(path), Counts()).add(data["summary"])
        total.add(data["summary"])
    return dict(sorted(packages.items())), total


def missed_targets(packages: dict[str, Counts], total: Counts) -> list[str]:
    """The targets the figures miss, each as a sentence."""
    missed = []
    if total.lines_pct < TOTAL_LINES:
        missed.append(f"total lines {total.lines_pct:.1f}% < {TOTAL_LINES:g}%")
    if total.branches_pct < TOTAL_BRANCHES:
        missed.append(f"total branches {total.branches_pct:.1f}% < {TOTAL_BRANCHES:g}%")
    for name, bound in PACKAGE_LINES.items():
        if name in packages and packages[name].lines_pct < bound:
            missed.append(f"{name} lines {packages[name].lines_pct:.1f}% < {bound:g}%")
    return missed


def _json_report() -> dict:
    import coverage

    cov = coverage.Coverage()
    cov.load()
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cov.json_report(outfile=out.name)
        return json.loads(Path(out.name).read_text())


def main(argv: list[str]) -> int:
    """Print the table (and write it with ``--json``); with ``--strict`` exit 1 on a miss."""
    parser = argparse.ArgumentParser(prog="coverage_table")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    packages, total = table(_json_report())
    print(f"{'package':<18} {'lines':>7} {'of':>6} {'branches':>9} {'of':>6}")
    for name, counts in [*packages.items(), ("TOTAL", total)]:
        print(f"{name:<18} {counts.lines_pct:>6.1f}% {counts.statements:>6} "
              f"{counts.branches_pct:>8.1f}% {counts.branches:>6}")
    missed = missed_targets(packages, total)
    print(f"targets (lines ≥ {TOTAL_LINES:g}%, branches ≥ {TOTAL_BRANCHES:g}%, kdiag/steps lines "
          f"≥ {PACKAGE_LINES['kdiag/steps']:g}%): " + ("met" if not missed else "; ".join(missed)))
    if args.json:
        args.json.write_text(json.dumps(
            {"packages": {k: asdict(v) | {"lines_pct": round(v.lines_pct, 1),
                                          "branches_pct": round(v.branches_pct, 1)}
                          for k, v in [*packages.items(), ("TOTAL", total)]},
             "missed": missed}, indent=2) + "\n")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

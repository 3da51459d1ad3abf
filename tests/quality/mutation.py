"""``make mutation``: mutmut over the core packages, a score per package.

mutmut (3.x) mutates a copy of the code and runs, for each mutant, the tests that call the
mutated function; a mutant no test fails has *survived*. The packages (issue 22): the engine,
the runbook language, the reports, the step types, and the manager's redirect and tunnel code.
Their fast suites run in-process (``tests/unit``, ``tests/manager``): mutmut links tests to
functions by what runs in its own process, so code reached only through a subprocess (the CLI
and the node manager in the node tests) has no test for it here and counts as survived.

mutmut expects each package at the top of the tree, but ``kdiag_manager`` lives in
``manager/``: the run happens in a copy of the repository (``.mutation/``) with the manager
package also copied to the top. Each run starts from a fresh copy.

A full run is thousands of mutants (hours on two shared cores): ``--sample N`` tests N mutants
per package, drawn with a fixed seed (the same ones each time for the same code), and says so.
The score is killed ÷ tested (a mutant with no test counts as tested and survived; a timeout
counts as killed). ``tests/MUTATION-SURVIVORS.md`` lists the survivors judged equivalent (no
test can tell them apart from the original), with why; ``--report PATH`` writes the per-mutant
results as JSON.

    python -m tests.quality.mutation [--sample N] [--package NAME]... [--report PATH]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")

PACKAGES: dict[str, list[str]] = {
    "engine": ["kdiag/engine/*.py"],
    "language": ["kdiag/language/*.py"],
    "reports": ["kdiag/reports/*.py"],
    "steps": ["kdiag/steps/*.py"],
    "manager-redirect": ["kdiag_manager/redirect.py", "kdiag_manager/tunnel.py",
                         "kdiag_manager/tunnelpool.py"],
}
TESTS = ["tests/unit", "tests/manager"]
# Slow, and in worker processes: nothing mutmut can link to a function.
IGNORE = ["tests/unit/test_fuzz_validate.py", "tests/unit/test_hostile_input.py"]
TARGET = 0.85



@dataclass
class Score:
    """The mutants of one package and what became of them."""

    results: dict[str, str] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.results.values() if s in statuses)

    @property
    def score(self) -> float:
        tested = len(self.results)
        return (self.count("killed", "timeout", "segfault") / tested) if tested else 1.0


def prepare() -> None:
    """A fresh copy of the tracked tree in WORK, the manager package at its top, and mutmut's
    configuration."""
    if WORK.exists():
        shutil.rmtree(WORK)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (WORK / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, WORK / name)
    shutil.copytree(WORK / "manager" / "kdiag_manager", WORK / "kdiag_manager")
    config = {
        "source_paths": ["kdiag", "kdiag_manager"],
        "only_mutate": [glob for globs in PACKAGES.values() for glob in globs],
        "also_copy": sorted(p.name for p in WORK.iterdir()
                            if p.name not in ("kdiag", "kdiag_manager", "tests", "mutants")),
        "pytest_add_cli_args_test_selection": TESTS,
        # Tests that start kdiag in a child process are skipped (tests/quality/mutation_plugin.py).
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-p",
                                "tests.quality.mutation_plugin",
                                *[f"--ignore={path}" for path in IGNORE]],
        "use_git_change_detection": False,
    }
    with (WORK / "pyproject.toml").open("a") as out:
        out.write("\n[tool.mutmut]\n")
        for key, value in config.items():
            out.write(f"{key} = {json.dumps(value)}\n")


def _mutmut(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MUTMUT), *args], cwd=WORK, text=True, check=check)


def all_mutants() -> dict[str, str]:
    """Every generated mutant's name and its package (from mutmut's per-file records)."""
    names: dict[str, str] = {}
    for meta in (WORK / "mutants").rglob("*.meta"):
        source = str(meta.relative_to(WORK / "mutants")).removesuffix(".meta")
        package = next((p for p, globs in PACKAGES.items()
                        if any(fnmatch.fnmatch(source, g) for g in globs)), None)
        if package is None:
            continue
        for key in json.loads(meta.read_text())["exit_code_by_key"]:
            names[key] = package
    return names


def results() -> dict[str, int | None]:
    """Each mutant's exit code after a run (None: not run)."""
    codes: dict[str, int | None] = {}
    for meta in (WORK / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def sample(names: dict[str, str], per_package: int | None, seed: int = 22) -> list[str]:
    """Up to ``per_package`` mutants of each package, drawn with a fixed seed (all: None)."""
    chosen = []
    for package in PACKAGES:
        mine = sorted(n for n, p in names.items() if p == package)
        if per_package is not None and len(mine) > per_package:
            mine = sorted(random.Random(f"{seed}:{package}").sample(mine, per_package))
        chosen += mine
    return chosen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mutation")
    parser.add_argument("--sample", type=int, default=None,
                        help="mutants tested per package (default: all)")
    parser.add_argument("--package", action="append", choices=sorted(PACKAGES))
    parser.add_argument("--report", type=Path)
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    from mutmut.stats import status_by_exit_code  # the exit code of a mutant's tests → verdict

    prepare()
    # Generating the mutants and linking tests to functions (one run of the suites): mutmut
    # then stops at a filter that names no mutant.
    _mutmut("run", "--max-children", str(args.max_children), "no-such-mutant", check=False)
    names = all_mutants()
    if args.package:
        names = {n: p for n, p in names.items() if p in args.package}
    chosen = sample(names, args.sample)
    print(f"mutation: {len(names)} mutants generated; testing {len(chosen)}"
          + (f" ({args.sample} per package, fixed seed)" if args.sample else ""), flush=True)
    _mutmut("run", "--max-children", str(args.max_children), *chosen, check=False)
    codes = results()
    scores: dict[str, Score] = {p: Score() for p in PACKAGES if not args.package
                                or p in args.package}
    for name in chosen:
        code = codes.get(name)
        scores[names[name]].results[name] = status_by_exit_code[code]
    print(f"\n{'package':<18} {'score':>6} {'killed':>7} {'survived':>9} {'no tests':>9} "
          f"{'timeout':>8} {'of':>5} {'generated':>10}")
    for package, score in scores.items():
        generated = sum(1 for p in names.values() if p == package)
        print(f"{package:<18} {score.score:>6.2f} {score.count('killed'):>7} "
              f"{score.count('survived'):>9} {score.count('no tests'):>9} "
              f"{score.count('timeout'):>8} {len(score.results):>5} {generated:>10}")
    survivors = sorted(n for s in scores.values() for n, r in s.results.items()
                       if r not in ("killed", "timeout", "segfault"))
    excluded_file = WORK / "mutants" / "mutation-excluded.txt"
    excluded = sorted(set(excluded_file.read_text().splitlines())) if excluded_file.exists() else []
    if excluded:
        print(f"\n{len(excluded)} test(s) failed on the unmutated code (timing-bound under load) "
              "and were left out of this run:")
        for test in excluded:
            print(f"  {test}")
    print(f"\n{len(survivors)} not killed (see `cd .mutation && mutmut show NAME`):")
    for name in survivors:
        print(f"  {name}: {scores[names[name]].results[name]}")
    if args.report:
        args.report.write_text(json.dumps(
            {"sample_per_package": args.sample, "excluded_tests": excluded,
             "packages": {p: {"score": round(s.score, 3), "results": s.results}
                          for p, s in scores.items()}}, indent=2) + "\n")
    return 0 if all(s.score >= TARGET for s in scores.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

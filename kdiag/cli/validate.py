"""``kdiag validate``: check runbooks without running anything.

Without ``--set``/``--values`` a runbook is checked as a library one is: its required params
are not asked for. With them, the params (required ones included) and the target rendered with
them are checked exactly as ``kdiag run`` checks them before its first step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sized

from kdiag.errors import EXIT_INVALID, EXIT_OK, Problem, RunbookError
from kdiag.language.params import load_values, parse_set_args
from kdiag.language.prerun import resolve_for_run
from kdiag.language.runbook import Loader, search_path
from kdiag.steps import catalog

MAX_SHOWN = 100
"""Problems printed per run of ``validate``; the rest are counted on one more line."""


def counted(steps: Sized, finally_steps: Sized) -> str:
    """``1 step``, ``5 steps, 1 finally step``."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    text = n(len(steps), "step")
    return text + (f", {n(len(finally_steps), 'finally step')}" if len(finally_steps) else "")


def command(args: argparse.Namespace) -> int:
    """Validate each file; print every problem; exit 2 if any file has one."""
    loader = Loader(catalog(), search_path(args.path))
    check_params = bool(args.set or args.values)
    sets = parse_set_args(args.set)
    problems: list[Problem] = []
    for file in args.files:
        try:
            runbook = loader.load(file)
            if check_params:
                resolve_for_run(runbook, sets,
                                [load_values(v, loader.limits) for v in args.values])
        except RunbookError as exc:
            problems.extend(exc.problems)
            continue
        print(f"{file}: ok ({counted(runbook.steps, runbook.finally_steps)})")
    for problem in problems[:MAX_SHOWN]:
        print(f"error: {problem}", file=sys.stderr)
    if len(problems) > MAX_SHOWN:
        rest = problems[MAX_SHOWN]
        where = f"{rest.location}: " if rest.location else ""
        print(f"error: {where}... and {len(problems) - MAX_SHOWN} more problems from here on",
              file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK

"""``kdiag validate``: check runbooks without running anything."""

from __future__ import annotations

import argparse
import sys

from kdiag.errors import EXIT_INVALID, EXIT_OK, Problem, RunbookError
from kdiag.language.params import load_values, parse_set_args, resolve_params
from kdiag.language.runbook import Loader, search_path
from kdiag.steps import catalog


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
                resolve_params(runbook, sets, values_files=[load_values(v) for v in args.values])
        except RunbookError as exc:
            problems.extend(exc.problems)
            continue
        print(f"{file}: ok ({len(runbook.steps)} steps, {len(runbook.finally_steps)} finally)")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


"""``kdiag doctor [TARGET] [-f RUNBOOK]``: check, before anything is changed, everything a run
will need, and print what to do about what is missing (exit 0: nothing stops a run, 3: something
does). With a runbook: what its steps need, for its target (flags override parts of it);
without: everything kdiag may use against the target or namespace the flags name.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kdiag.preflight.checks import exit_code
from kdiag.preflight.demand import Demand

TARGET_FLAGS = ("namespace", "pod", "selector", "container", "kubeconfig", "context", "image",
                "image_pull_policy", "privileged", "via")


def _flag_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in TARGET_FLAGS if getattr(args, k, None) not in (None, False)}


def demand_of(args: argparse.Namespace) -> Demand:
    """What to check: the runbook's target and steps (if any), the flags over it."""
    flags = _flag_options(args)
    if args.pid is not None and (args.pod or args.selector):
        from kdiag.errors import UsageError

        raise UsageError("--pid cannot be combined with --pod or --selector")
    if not args.file:
        target = {"node": {"pid": args.pid}} if args.pid is not None else {"kubernetes": flags}
        return Demand(target=target, steps=None)
    from kdiag.language.params import load_values, parse_set_args, resolve_params
    from kdiag.language.runbook import Loader, search_path
    from kdiag.preflight.demand import from_runbook
    from kdiag.steps import catalog

    loader = Loader(catalog(), search_path(args.path))
    runbook = loader.load(args.file)
    values = resolve_params(runbook, parse_set_args(args.set),
                            values_files=[load_values(v) for v in args.values])
    demand = from_runbook(runbook, values.values, loader)
    if args.pid is not None:
        demand.target = {"node": {"pid": args.pid}}
    elif flags or demand.kind in ("", "kubernetes"):
        base = demand.options if demand.kind == "kubernetes" else {}
        if "pod" in flags or "selector" in flags:
            base = {k: v for k, v in base.items() if k not in ("pod", "selector", "container")}
        demand.target = {"kubernetes": {**base, **flags}}
    return demand


def command(args: argparse.Namespace) -> int:
    """Run every check and print them (a table, or JSON with --json)."""
    from kdiag.preflight.examine import examine
    from kdiag.preflight.table import print_table, report

    demand = demand_of(args)
    checks = examine(demand, full=True)
    if args.json:
        print(report(checks, demand.target, demand.runbook))
    else:
        print_table(checks, sys.stdout)
    return exit_code(checks)

"""``kdiag run``: execute a runbook and report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.engine.bus import EventBus
from kdiag.engine.interaction import TerminalInteraction
from kdiag.engine.masking import MIN_LENGTH, Masker
from kdiag.engine.plan import render_plan
from kdiag.engine.runner import Run, RunOptions
from kdiag.errors import EXIT_OK, UsageError
from kdiag.language.durations import parse_duration
from kdiag.language.model import Runbook
from kdiag.language.params import load_values, parse_set_args
from kdiag.language.prerun import resolve_for_run
from kdiag.language.runbook import Loader, search_path
from kdiag.session.output import DEFAULT_MAX_OUTPUT, parse_size
from kdiag.steps import catalog


def _check_start_at(runbook: Runbook, name: str | None) -> None:
    if name is not None and name not in {s.name for s in runbook.steps}:
        names = ", ".join(repr(s.name) for s in runbook.steps)
        raise UsageError(f"--start-at {name!r}: no such step; steps: {names}")


def _warn_short_secrets(runbook: Runbook, params: dict[str, Any]) -> None:
    for name, spec in runbook.params.items():
        value = params.get(name)
        if spec.secret and value not in (None, "") and Masker.too_short(str(value)):
            print(f"kdiag: warning: secret param {name!r} is shorter than {MIN_LENGTH} "
                  "characters: it is masked only where a whole value equals it, not inside "
                  "text", file=sys.stderr)


def _option(value: str | None, parse: Callable[[str], Any], flag: str, default: Any) -> Any:
    """A flag's value parsed (UsageError naming the flag), else ``default``."""
    if not value:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _open_target(spec: dict[str, Any]) -> Any:
    from kdiag.targets.factory import open_target

    return open_target(spec)


def command(args: argparse.Namespace) -> int:
    """Run the runbook named on the command line."""
    if args.step and not sys.stdin.isatty():
        raise UsageError("--step needs a terminal on standard input")
    loader = Loader(catalog(), search_path(args.path))
    runbook = loader.load(args.file)
    sets = parse_set_args(args.set)
    files = [load_values(v, loader.limits) for v in args.values]
    values = resolve_for_run(runbook, sets, files, missing_ok=args.dry_run)
    _check_start_at(runbook, args.start_at)
    if args.pid is not None:
        runbook.target = {"node": {"pid": args.pid}}
    elif args.via is not None or args.node_namespace is not None:
        if not isinstance(runbook.target, dict) or "kubernetes" not in runbook.target:
            raise UsageError("--via and --node-namespace need a runbook with a kubernetes "
                             "target")
        overrides = {"via": args.via, "node_namespace": args.node_namespace}
        runbook.target = {"kubernetes": {**(runbook.target["kubernetes"] or {}),
                                         **{k: v for k, v in overrides.items() if v}}}
    masker = Masker(values.secrets)
    _warn_short_secrets(runbook, values.values)
    if args.dry_run:
        print(render_plan(runbook, values.values, dict(os.environ), masker.text,
                          values.missing), end="", flush=True)
        if values.missing:  # shown as templates; the run itself would refuse (exit 2)
            resolve_for_run(runbook, sets, files)
        return EXIT_OK
    timeout = _option(args.timeout, parse_duration, "--timeout", None)
    max_output = _option(args.max_output, parse_size, "--max-output", DEFAULT_MAX_OUTPUT)

    from kdiag.reports import close_all, make_reporters

    reporters = make_reporters(console=not args.quiet, report_specs=args.report,
                               artifacts_dir=args.artifacts, interactive=args.step)
    bus = EventBus(reporters, masker)
    interaction = TerminalInteraction(sys.stdin, sys.stdout) if args.step else None
    options = RunOptions(start_at=args.start_at, default_timeout=timeout,
                         artifacts_dir=Path(args.artifacts) if args.artifacts else None,
                         max_output=max_output)
    from kdiag.preflight.gate import gated  # doctor's checks before the target is opened

    run = Run(bus, loader, options, interaction, gated(_open_target, runbook, loader))
    interrupt_on_sigterm()
    try:
        return run.execute(runbook, values.values)
    finally:
        close_all(reporters)


"""Doctor's output: a table for people (check / ok / what to do), JSON for CI."""

from __future__ import annotations

import io
import json
import os
import shutil
from typing import IO, Any

from kdiag.preflight.checks import Check, exit_code

MARKS = {"ok": "ok", "fail": "FAIL", "warn": "warn", "unknown": "?", "skipped": "-"}
STYLES = {"ok": "green", "fail": "bold red", "warn": "yellow", "unknown": "cyan",
          "skipped": "dim"}


def summary(checks: list[Check]) -> str:
    """``9 checks: 7 ok, 1 failed, 1 unknown — a run would stop here`` and the like."""
    counts: dict[str, int] = {}
    for check in checks:
        counts[check.status] = counts.get(check.status, 0) + 1
    words = {"ok": "ok", "fail": "failed", "warn": "warnings", "unknown": "unknown",
             "skipped": "skipped"}
    parts = [f"{counts[s]} {w}" for s, w in words.items() if counts.get(s)]
    verdict = ("a run would stop here: see the FAIL lines" if exit_code(checks)
               else "nothing stops a run")
    noun = "check" if len(checks) == 1 else "checks"
    return f"{len(checks)} {noun}: {', '.join(parts)} — {verdict}"


def print_table(checks: list[Check], out: IO[str], *, color: bool | None = None) -> None:
    """The checks as a table (rich; plain text when ``out`` is not a terminal or NO_COLOR)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    terminal = out.isatty()
    color = terminal and not os.environ.get("NO_COLOR") if color is None else color
    width = shutil.get_terminal_size((160, 24)).columns if terminal else 160
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=not color, highlight=False,
                      force_terminal=color, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
    table.add_column("check", overflow="fold")
    table.add_column("ok", no_wrap=True)
    table.add_column("details / what to do", overflow="fold")
    for check in checks:
        name = Text(check.name)
        if check.needed_by:
            name.append(f"\n  for {', '.join(check.needed_by)}", style="dim")
        said = Text(check.detail)
        if check.fix:
            said.append(("\n" if check.detail else "") + f"→ {check.fix}",
                        style="bold" if check.status == "fail" else "")
        table.add_row(name, Text(MARKS[check.status], style=STYLES[check.status]), said)
    console.print(table)
    console.print(summary(checks))
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
    out.flush()


def report(checks: list[Check], target: dict[str, Any] | None, runbook: str) -> str:
    """The JSON document of ``kdiag doctor --json``."""
    return json.dumps({"ok": exit_code(checks) == 0, "exit_code": exit_code(checks),
                       "target": target, "runbook": runbook or None,
                       "checks": [c.to_dict() for c in checks]}, indent=2)

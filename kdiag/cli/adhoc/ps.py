"""``kdiag ps``: the target's processes and the ports they listen on."""

from __future__ import annotations

import argparse

from kdiag.cli.adhoc.targeting import open_session
from kdiag.errors import EXIT_OK


def command(args: argparse.Namespace) -> int:
    """Print the target's processes (all the manager sees with --all)."""
    with open_session(args) as session:
        processes = session.manager.ps(all_processes=args.all)
    print(f"{'PID':>7} {'PPID':>7} {'USER':<10} {'LISTEN':<22} COMMAND")
    for proc in processes:
        listening = ",".join(f"{s.protocol}:{s.port}" for s in proc.listening) or "-"
        mark = "*" if proc.is_target else " "
        print(f"{proc.pid:>7} {proc.ppid:>7} {proc.user[:10]:<10} {listening:<22} "
              f"{mark}{proc.command[:120]}")
    return EXIT_OK

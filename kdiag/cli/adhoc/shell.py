"""``kdiag shell``: an interactive shell (busybox ash) inside the target, also when its image
has no shell at all; or one command (``kdiag shell api-0 -- ls /``). With ``--all``, the
command on every ready pod of the target at once, each output line prefixed ``[pod]``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kdiag.cli.adhoc.targeting import open_session
from kdiag.errors import EXIT_ENVIRONMENT, KdiagError, UsageError


def command(args: argparse.Namespace) -> int:
    """Run the shell (on a TTY) or the command; the exit code is the remote one."""
    argv = list(args.cmd or [])
    with open_session(args) as session:
        fleet = session.fleet()
        if fleet is not None:
            return _on_each(fleet, argv)
        manager = session.manager
        if os.isatty(sys.stdin.fileno()):
            return int(manager.shell_tty(argv or None))

        def forward(stream: str, data: bytes) -> None:
            out = sys.stdout if stream == "stdout" else sys.stderr
            out.buffer.write(data)
            out.flush()

        stdin = sys.stdin.buffer
        if argv:
            result = manager.exec(argv, stdin=stdin, on_output=forward, capture=False)
        else:  # a script on standard input, e.g. `echo 'ls /' | kdiag shell --pod x`
            result = manager.exec(script=stdin.read().decode(), on_output=forward, capture=False)
        return 128 + result.signal if result.signal else result.exit_code


def _on_each(fleet: Any, argv: list[str]) -> int:
    """The command (or the script on standard input) on every pod; the exit code is the first
    pod's (in the pods' order) that did not exit 0 — 3 for a pod kdiag could not reach."""
    from kdiag.cli.adhoc.fanout import Prefixed, each

    if not argv and os.isatty(sys.stdin.fileno()):
        raise UsageError("--all runs a command on every pod: kdiag shell TARGET --all -- "
                         "COMMAND (or a script on standard input)")
    data = sys.stdin.buffer.read() if not os.isatty(sys.stdin.fileno()) else b""
    if not argv and not data.strip():
        raise UsageError("nothing to run: give a command after -- (or a script on standard "
                         "input)")
    out = Prefixed()

    def run(replica: Any, session: Any) -> int:
        def forward(stream: str, chunk: bytes) -> None:
            out.write(replica.name, stream, chunk)

        if argv:
            result = session.manager.exec(argv, stdin=data or None, on_output=forward,
                                          capture=False)
        else:
            result = session.manager.exec(script=data.decode(), on_output=forward,
                                          capture=False)
        return 128 + result.signal if result.signal else int(result.exit_code)

    results = each(fleet, run)
    out.flush()
    codes = []
    for replica, outcome in results:
        if isinstance(outcome, Exception):
            code = getattr(outcome, "exit_code", 1) if isinstance(outcome, KdiagError) else 1
            out.line(replica.name, f"kdiag: error: {outcome}", "stderr")
            codes.append(code if code else EXIT_ENVIRONMENT)
        else:
            if outcome:
                out.line(replica.name, f"kdiag: exit code {outcome}", "stderr")
            codes.append(outcome)
    return next((code for code in codes if code), 0)

"""``kdiag shell``: an interactive shell (busybox ash) inside the target, also when its image
has no shell at all; or one command (``kdiag shell --pod x -- ls /``)."""

from __future__ import annotations

import argparse
import os
import sys

from kdiag.cli.adhoc.targeting import open_session


def command(args: argparse.Namespace) -> int:
    """Run the shell (on a TTY) or the command; the exit code is the remote one."""
    argv = [a for a in args.cmd if a != "--"] if args.cmd else []
    with open_session(args) as session:
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

"""``kdiag mirror``: the target's incoming connections on some ports keep reaching the app; a
copy of what each client sends comes to this machine (replies dropped), until Ctrl-C. Dropped
copies are printed (the first ones) and counted in the summary. Runs as ``kdiag redirect``
does (:mod:`kdiag.cli.adhoc.redirect`), with the mirror's spec."""

from __future__ import annotations

import argparse

from kdiag.cli.adhoc import redirect


def command(args: argparse.Namespace) -> int:
    """Set up the mirror, print dropped copies as they come, end cleanly on Ctrl-C."""
    args.mirror = True
    args.outgoing = False
    args.no_fail_open = False
    return redirect.command(args)

"""What bench modules share with the runner (tests/bench/run.py)."""

from __future__ import annotations


class Unmeasurable(Exception):
    """This machine cannot measure a module's figures (the message says why: not root, the
    cluster is not up, a tool missing). Its figures are listed as not measured, with the
    reason, and do not fail the run."""


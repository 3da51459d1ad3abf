"""SIGTERM handled like Ctrl-C, for commands that must clean up (a cancelled CI job sends it)."""

from __future__ import annotations

import signal
from types import FrameType


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so finally steps and cleanups still run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)

"""The exception that stops a run's main steps (its ``finally`` steps still run)."""

from __future__ import annotations

from kdiag.engine.events import RunStatus


class Abort(Exception):
    """Stops the main steps: an environment error, a background step or the target lost, or
    the user quitting. It passes through the steps that run others (group, include, logs)."""

    def __init__(self, status: RunStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

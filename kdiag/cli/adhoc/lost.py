"""Ad-hoc commands that run until Ctrl-C (redirect, forward, logs) end, with one line naming
what died, when the work they keep up or the target dies first."""

from __future__ import annotations

import threading

from kdiag.errors import EnvironmentProblem
from kdiag.lifeline import EXPLAIN_WAIT, Lifeline, Loss
from kdiag.waiting import wait_event


def wait_until_lost(*lifelines: Lifeline, target: Lifeline | None = None) -> Loss:
    """Block until one of ``lifelines`` or ``target`` dies (Ctrl-C raises KeyboardInterrupt);
    the loss, with the target's cause when it follows the work's within
    :data:`~kdiag.lifeline.EXPLAIN_WAIT`."""
    dead = threading.Event()
    watched = [*lifelines, *([target] if target is not None else [])]
    forget = [lifeline.listen(lambda _loss: dead.set()) for lifeline in watched]
    try:
        wait_event(dead)
    finally:
        for call in forget:
            call()
    if target is not None:
        found = target.wait(EXPLAIN_WAIT)
        if found is not None:
            return found
    return next(lifeline.loss for lifeline in watched if lifeline.loss is not None)


def lost(what: str, loss: Loss) -> EnvironmentProblem:
    """The error that ends the command: ``redirect ended: manager gone (...)``."""
    return EnvironmentProblem(f"{what} ended: {loss.cause}")

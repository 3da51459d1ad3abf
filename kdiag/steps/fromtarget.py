"""The ``from_target`` part of a ``run`` step: reading the target's context for the command,
and masking what was read before the command can print any of it (see :mod:`kdiag.context`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdiag.steps.base import StepContext, StepFailed, kubernetes_target

if TYPE_CHECKING:
    from kdiag.context.prepare import Prepared


def read_context(body: dict[str, Any], ctx: StepContext, base_env: dict[str, str]
                 ) -> Prepared | None:
    """The command's context from the target (None without ``from_target``); StepFailed for
    what cannot be done, EnvironmentProblem when the target cannot be reached."""
    wanted = body.get("from_target")
    if not wanted:
        return None
    from kdiag.context.files import Cancelled
    from kdiag.context.prepare import prepare
    from kdiag.context.spec import parse

    overrides = {str(k): "" if v is None else str(v) for k, v in (body.get("env") or {}).items()}
    try:
        spec = parse(wanted, overrides)
    except ValueError as exc:
        raise StepFailed(f"from_target: {exc}") from None
    if not spec.anything:
        return None
    _one_target(ctx)
    try:
        prepared = prepare(spec, ctx.target(), base_env, ctx.cancelled)
    except (ValueError, Cancelled) as exc:
        raise StepFailed(f"from_target: {exc}") from None
    ctx.add_secrets(prepared.secrets)
    for note in prepared.notes:
        ctx.note(note)
    return prepared


def read_connect(body: dict[str, Any], ctx: StepContext, env: dict[str, str]
                 ) -> Prepared | None:
    """The command's cluster names without a target (``connect:``; None without it)."""
    wanted = body.get("connect")
    if not wanted:
        return None
    from kdiag.connect.command import open_connection, wanted_from

    if body.get("from_target"):
        raise StepFailed("connect: and from_target: together: use from_target: {names: [...]} "
                         "(the target's cluster names) with the target's env and files")
    prepared = open_connection(wanted_from(wanted, kubernetes_target(ctx)), env)
    for note in prepared.notes:
        ctx.note(note)
    return prepared


def _one_target(ctx: StepContext) -> None:
    """Refuse a target that stands for several pods: whose context would it be?"""
    try:
        target = ctx.evaluate("target")
    except Exception:  # no target at all: opening it says so
        return
    if isinstance(target, dict) and target.get("pick") == "all":
        raise StepFailed("from_target: the target picks all pods (pick: all), and a command "
                         "runs with one pod's context: pick newest or oldest, or name the pod")

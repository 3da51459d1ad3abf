"""``mirror``: the app keeps serving every connection; a copy of what each client sends (or of
each HTTP request matching a header) goes to the operator's server, whose replies are dropped.

Nothing is put on the app's path (no rule, no proxy): the manager takes the copy from the
packets (a packet socket in the target's network namespace, TCP put back in order) and sends
it to kdiag on the mirror's one copy stream; kdiag sends each copy to the operator's server.
The app's answers never wait for the operator side: a copy that cannot keep up, has nowhere to
go or misses bytes is dropped and counted (``stats.dropped``, with each reason in the output).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from kdiag.steps.base import StepContext, StepOutcome, StepType, keep_up, require_background_or_duration
from kdiag.steps.redirect import (
    RedirectStep,
    RunningRedirect,
    header_of,
    kept_up,
    operator_mapping,
)

if TYPE_CHECKING:
    from kdiag.session.results import RedirectEventInfo

STAT_NAMES = ("connections", "mirrored", "dropped", "failed", "bytes_mirrored", "bytes_in",
              "bytes_out")
"""The result's ``stats``: ``connections`` the app served (``bytes_in`` from the clients,
``bytes_out`` back), ``mirrored`` copies delivered whole to the operator side
(``bytes_mirrored``), ``dropped`` copies (the operator side absent, refusing, too slow, or the
mirror ending first), ``failed`` connections the app itself could not take."""

SHOWN_DROPS = 10
"""Dropped copies whose reason is printed one by one; the rest are counted."""


def mirror_stats_line(stats: dict[str, int]) -> str:
    """``1000 connections served by the app; 998 copies to the operator (41 kB), 2 dropped``."""
    line = (f"{stats['connections']} connections served by the app; {stats['mirrored']} "
            f"copies to the operator ({stats['bytes_mirrored']} bytes)")
    if stats["dropped"]:
        line += f", {stats['dropped']} copies dropped"
    if stats["failed"]:
        line += f", {stats['failed']} the app could not take"
    return line


def mirror_tracker(output: Any, progress: Any, stats: dict[str, int]) -> Any:
    """Counts the mirror's closed events into ``stats`` (see STAT_NAMES); prints the reason
    of the first dropped copies, then says that the rest are only counted."""
    lock = threading.Lock()

    def on_event(info: RedirectEventInfo) -> None:
        if info.kind != "closed":
            return
        with lock:
            if info.route == "mirror":
                stats["mirrored"] += 1
                stats["bytes_mirrored"] += info.bytes_in
            elif info.route == "copy-dropped":
                stats["dropped"] += 1
                if stats["dropped"] <= SHOWN_DROPS:
                    output(f"copy of connection {info.connection_id} dropped: {info.error}\n")
                if stats["dropped"] == SHOWN_DROPS:
                    output("(further dropped copies are only counted: stats.dropped)\n")
            elif info.route == "dropped":
                stats["failed"] += 1
                output(f"connection {info.connection_id} failed: {info.error}\n")
            else:
                stats["connections"] += 1
                stats["bytes_in"] += info.bytes_in
                stats["bytes_out"] += info.bytes_out
            progress(stats)

    return on_event


_REDIRECT_FIELDS = RedirectStep.schema["properties"]


class MirrorStep(StepType):
    kind = "mirror"
    summary = ("Copy the target's incoming connections on some ports (or the HTTP requests "
               "with a header) to the operator's machine; the app still serves them all.")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ports"],
        "properties": {
            "ports": _REDIRECT_FIELDS["ports"],
            "to": {"type": ["string", "integer"], "description": "Operator-side address that "
                   "gets the copies (its replies are discarded): HOST:PORT, PORT or HOST "
                   "(default 127.0.0.1 and the same port)."},
            "header": {**_REDIRECT_FIELDS["header"],
                       "description": "Only HTTP/1.1 requests with this header are copied; "
                                      "every request reaches the app."},
            "probes": {"enum": ["app", "mirror"],
                       "description": "The node's connections (the kubelet's probes) are not "
                                      "copied (app, default) or are copied too."},
            "duration": _REDIRECT_FIELDS["duration"],
        },
    }
    example = "mirror:\n  ports: [8080]\n  to: 127.0.0.1:9000\nbackground: true\nregister: copies"
    needs_target = True
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.session.results import RedirectSpec

        require_background_or_duration(self.kind, body, ctx)
        session = ctx.target()
        mapping = operator_mapping(body, session)
        skip = session.node_sources() if body.get("probes", "app") == "app" else ()
        spec = RedirectSpec(direction="incoming", ports=list(mapping), header=header_of(body),
                            skip_sources=skip, mirror=True)
        stats = dict.fromkeys(STAT_NAMES, 0)

        def output(text: str) -> None:
            ctx.output(text, "mirror")

        handle = session.manager.redirect(spec, mapping,
                                          on_event=mirror_tracker(output, ctx.progress, stats))
        output(f"mirror of {', '.join(map(str, mapping))} -> "
               f"{', '.join(f'{h}:{p}' for h, p in mapping.values())} (the app serves every "
               "connection; copies taken from its packets)\n")
        result = kept_up(handle, mapping, skip, stats, output)
        running = RunningRedirect(handle, ctx, stats, mirror_stats_line, "mirror")
        return keep_up(running, body, ctx, result)

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        ports = ", ".join(str(p) for p in body.get("ports", []))
        return f"copy {ports} -> {body.get('to', '127.0.0.1')}"


STEP = MirrorStep()

"""``redirect``: send the target's incoming (or outgoing) connections to the operator's machine.

Connections travel as gRPC streams over the session's one connection to the manager. The
manager's rules are removed when the step's background work stops (or the session ends for any
reason); with ``fail_open`` a connection the operator side cannot take reaches its original
destination instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdiag.language.durations import parse_duration
from kdiag.language.ports import (
    NAMED_PORT_SCHEMA,
    PORT_MAPPING_SCHEMA,
    PORT_SCHEMA,
    parse_port_mapping,
)
from kdiag.steps.base import (
    StepContext,
    StepFailed,
    StepOutcome,
    StepType,
    keep_up,
    require_background_or_duration,
)

if TYPE_CHECKING:
    from kdiag.lifeline import Lifeline
    from kdiag.session.redirect import RedirectHandle
    from kdiag.session.results import RedirectEventInfo
    from kdiag.targets.base import TargetSession



def parse_ports(items: list[Any], host: str, default_port: int | None
                ) -> dict[int, tuple[str, int]]:
    """Map each target port to its operator-side address (``8080`` or ``"8080:9000"``)."""
    mapping: dict[int, tuple[str, int]] = {}
    for item in items:
        try:
            target_port, local_port = parse_port_mapping(str(item))
        except ValueError as exc:
            raise StepFailed(str(exc)) from None
        mapping[target_port] = (host, local_port or default_port or target_port)
    return mapping


def target_ports(items: list[Any], session: TargetSession) -> list[str]:
    """``PORT[:LOCALPORT]`` with PORT as the target knows it (a Service's port or a port's
    name becomes the pod's port number)."""
    mapped = []
    for item in items:
        remote, sep, local = str(item).partition(":")
        try:
            mapped.append(f"{session.map_port(remote)}{sep}{local}")
        except ValueError as exc:
            raise StepFailed(str(exc)) from None
    return mapped


def parse_address(text: str | None) -> tuple[str, int | None]:
    """``host:port``, ``port`` or ``host`` of the operator side (default 127.0.0.1)."""
    if not text:
        return "127.0.0.1", None
    host, sep, port = str(text).rpartition(":")
    if not sep:
        return (str(text), None) if not str(text).isdigit() else ("127.0.0.1", int(text))
    return host or "127.0.0.1", int(port)


def operator_mapping(body: dict[str, Any], session: TargetSession
                     ) -> dict[int, tuple[str, int]]:
    """The step's ``ports`` (as the target knows them) and ``to``: each target port's
    operator-side address."""
    host, port = parse_address(body.get("to"))
    return parse_ports(target_ports(body["ports"], session), host, port)


def header_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """The step's ``header`` filter as (name, value)."""
    header = body.get("header")
    return (header["name"], header["value"]) if header else None


def kept_up(handle: RedirectHandle, mapping: dict[int, tuple[str, int]], skip: tuple[str, ...],
            stats: dict[str, int], output: Callable[[str], None]) -> dict[str, Any]:
    """Print the redirect's warnings; its result (what a redirect and a mirror report)."""
    for warning in handle.warnings:
        output(f"warning: {warning}\n")
    return {"ports": list(mapping), "to": [f"{h}:{p}" for h, p in mapping.values()],
            "listen_port": handle.listen_port, "rules": handle.rules,
            "warnings": handle.warnings, "skip_sources": list(skip),
            "session": handle.session, "stats": stats}


STAT_NAMES = ("to_operator", "to_app", "rejected", "dropped", "reset", "open", "closed",
              "bytes_in", "bytes_out")
"""The result's ``stats``: where the target's connections went (see :func:`_tracker`)."""
SHOWN_RESETS = 20
"""Resets whose cause the output shows, one line each; later ones are only counted."""


def stats_line(stats: dict[str, int]) -> str:
    """``3 to the operator (1 open), 1020 to the app, 2 rejected`` (what went where)."""
    parts = [f"{stats['to_operator']} to the operator"
             + (f" ({stats['open']} open)" if stats["open"] else ""),
             f"{stats['to_app']} to the app"]
    parts += [f"{stats[k]} {k}" for k in ("rejected", "dropped", "reset") if stats[k]]
    return ", ".join(parts)


@dataclass
class RunningRedirect:
    """A redirect (or mirror) kept up in the background; stopping it removes the manager's
    rules and prints what went where (``summary`` of the stats)."""

    handle: RedirectHandle
    ctx: StepContext
    stats: dict[str, int]
    summary: Callable[[dict[str, int]], str] = stats_line
    stream: str = "redirect"

    @property
    def lifeline(self) -> Lifeline:
        """Fails when the redirect ends on its own (the manager or the connection is gone)."""
        return self.handle.lifeline

    def stop(self) -> None:
        self.handle.close()
        self.ctx.output(f"stopped: {self.summary(self.stats)}\n", self.stream)


def _say_reset(ctx: StepContext, cid: int, error: str, count: int) -> None:
    if count <= SHOWN_RESETS:
        ctx.output(f"connection {cid} reset: {error}\n", "redirect")
    if count == SHOWN_RESETS:
        ctx.output("(further resets are counted, not shown)\n", "redirect")


def _tracker(ctx: StepContext, stats: dict[str, int]) -> Any:
    """Counts what went where from the redirect's connection events, into ``stats``:
    ``to_operator`` (with a header filter, each matching request is one), ``to_app`` (not
    matching the filter, or failed open: the manager reports these when they close),
    ``rejected`` (the operator side could not take them: each then went to the app, or was
    ``dropped`` without fail_open), ``open`` (to the operator now), ``closed`` (all routes),
    ``reset`` (closed with a reset, its cause printed: a cut connection never passes for a
    clean one)."""
    lock = threading.Lock()
    taken: set[int] = set()  # to the operator and still open
    refused: set[int] = set()  # rejected before the connection's own event came

    def on_event(info: RedirectEventInfo) -> None:
        cid = info.connection_id
        with lock:
            if info.kind == "connection":
                if cid in refused:
                    refused.discard(cid)
                else:
                    taken.add(cid)
                    stats["to_operator"] += 1
                peer = f"{info.peer[0]}:{info.peer[1]}" if info.peer else "?"
                original = f"{info.original[0]}:{info.original[1]}" if info.original else "?"
                ctx.output(f"connection {cid}: {peer} -> {original}\n", "redirect")
            elif info.kind == "rejected":
                stats["rejected"] += 1
                if cid in taken:
                    taken.discard(cid)
                    stats["to_operator"] -= 1
                else:
                    refused.add(cid)
                ctx.output(f"connection {cid} failed open: {info.error}\n", "redirect")
            elif info.kind == "closed":
                stats["closed"] += 1
                stats["bytes_in"] += info.bytes_in
                stats["bytes_out"] += info.bytes_out
                if info.error and info.route != "dropped":  # (a drop says why as a drop)
                    stats["reset"] += 1
                    _say_reset(ctx, cid, info.error, stats["reset"])
                if info.route == "operator":
                    taken.discard(cid)
                else:  # offered to the operator side maybe, but it went elsewhere
                    if cid in taken:
                        taken.discard(cid)
                        stats["to_operator"] -= 1
                    refused.discard(cid)
                    stats["dropped" if info.route == "dropped" else "to_app"] += 1
            else:
                return
            stats["open"] = len(taken)
            ctx.progress(stats)

    return on_event


class RedirectStep(StepType):
    kind = "redirect"
    summary = ("Send the target's incoming (or outgoing) connections on some ports to the "
               "operator's machine, optionally only HTTP requests with a header.")
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ports"],
        "properties": {
            "direction": {"enum": ["incoming", "outgoing"],
                          "description": "incoming (default): connections to the target's "
                                         "ports; outgoing: the target's connections to them."},
            "ports": {"type": "array", "minItems": 1,
                      "items": {"anyOf": [PORT_SCHEMA, PORT_MAPPING_SCHEMA, NAMED_PORT_SCHEMA]},
                      "description": "Target ports, or PORT:LOCALPORT; a port of a Service "
                                     "target (number or name) means the pods' targetPort, a "
                                     "name a named container port."},
            "probes": {"enum": ["app", "redirect"],
                       "description": "Incoming: the node's connections (the kubelet's "
                                      "readiness and liveness probes) reach the app (app, "
                                      "default: the pod stays Ready) or are redirected too."},
            "to": {"type": ["string", "integer"], "description": "Operator-side address: "
                   "HOST:PORT, PORT or HOST (default 127.0.0.1 and the same port)."},
            "destination": {"type": "string", "description": "Outgoing only: only connections "
                            "to this address."},
            "fail_open": {"type": "boolean", "description": "A connection the operator side "
                          "cannot take goes to its original destination (default true)."},
            "fail_open_timeout": {"$ref": "#/$defs/duration"},
            "header": {"type": "object", "additionalProperties": False,
                       "required": ["name", "value"],
                       "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                       "description": "Only HTTP/1.1 requests with this header go to the "
                                      "operator; the rest reach the app."},
            "duration": {"$ref": "#/$defs/duration",
                         "description": "Without background: keep it up this long."},
        },
    }
    example = ("redirect:\n  ports: [8080]\n  to: 127.0.0.1:9000\nbackground: true\n"
               "register: redirected")
    needs_target = True
    can_background = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.session.results import RedirectSpec

        require_background_or_duration(self.kind, body, ctx)
        session = ctx.target()
        mapping = operator_mapping(body, session)
        direction = body.get("direction", "incoming")
        skip = session.node_sources() if direction == "incoming" and \
            body.get("probes", "app") == "app" else ()
        spec = RedirectSpec(
            direction=direction, ports=list(mapping),
            destination=body.get("destination"), fail_open=body.get("fail_open", True),
            fail_open_timeout=parse_duration(body.get("fail_open_timeout", 3)),
            header=header_of(body), skip_sources=skip)
        stats = dict.fromkeys(STAT_NAMES, 0)
        handle = session.manager.redirect(spec, mapping, on_event=_tracker(ctx, stats))
        kept = f"; from {', '.join(skip)} (the node: probes) to the app" if skip else ""
        ctx.output(f"{spec.direction} redirect of {', '.join(map(str, mapping))} -> "
                   f"{', '.join(f'{h}:{p}' for h, p in mapping.values())} "
                   f"(manager port {handle.listen_port}{kept})\n", "redirect")
        result = kept_up(handle, mapping, skip, stats, lambda text: ctx.output(text, "redirect"))
        return keep_up(RunningRedirect(handle, ctx, stats), body, ctx, result)

    def describe(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        ports = ", ".join(str(p) for p in body.get("ports", []))
        return f"{body.get('direction', 'incoming')} {ports} -> {body.get('to', '127.0.0.1')}"


STEP = RedirectStep()

"""``kdiag redirect``: the target's incoming (or outgoing) connections on some ports — or on
every port it listens on — go to this machine, until Ctrl-C. Each connection is printed.
``kdiag mirror`` (``args.mirror``) runs here too: the app keeps serving, copies come here.

With ``--all``, every ready pod of the target is redirected, and so is each pod that becomes
ready later (a scale-up, a rollout); a pod that goes away is dropped with a line saying so.
Each pod has its own manager session; every pod's connections reach the same local ports.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal, TextIO

from kdiag.cli.adhoc.lost import lost, wait_until_lost
from kdiag.cli.adhoc.targeting import open_session, parse_port_mappings
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, EnvironmentProblem, UsageError

_OUTPUT = threading.Lock()


def _say(text: str, file: TextIO | None = None) -> None:
    """Write one whole line: the pods of ``--all`` print from threads of their own, and
    ``print`` writes a line's text and its end in two calls, between which another pod's line
    can cut in (seen in CI: two pods' lines run together)."""
    with _OUTPUT:
        out = file or sys.stdout
        out.write(text + "\n")
        out.flush()


def _printer(prefix: str) -> Callable[[Any], None]:
    def on_event(info: Any) -> None:
        if info.kind == "connection" and info.peer and info.original:
            _say(f"{prefix}connection {info.connection_id}: {info.peer[0]}:{info.peer[1]} "
                 f"-> {info.original[0]}:{info.original[1]}")
        elif info.kind == "rejected":
            _say(f"{prefix}connection {info.connection_id} failed open: {info.error}")
        elif info.kind == "closed":
            _say(f"{prefix}connection {info.connection_id} closed: {info.bytes_in} bytes "
                 f"in, {info.bytes_out} out" + (f", reset: {info.error}" if info.error else ""))

    return on_event


def _mirror_printer(prefix: str, stats: dict[str, int]) -> Callable[[Any], None]:
    from kdiag.steps.mirror import mirror_tracker

    def output(text: str) -> None:
        print(f"{prefix}{text}", end="", flush=True)

    return mirror_tracker(output, lambda counts: None, stats)


class _Redirecting:
    """One pod's redirect, as :class:`~kdiag.targets.following.Following` keeps it; a mirror
    prints what it copied (and dropped) when it stops."""

    def __init__(self, handle: Any, prefix: str = "",
                 summary: Callable[[], str] | None = None) -> None:
        self.handle = handle
        self.lifeline = handle.lifeline
        self.prefix = prefix
        self.summary = summary

    def stop(self) -> None:
        self.handle.close()
        if self.summary is not None:
            _say(f"{self.prefix}stopped: {self.summary()}")


def command(args: argparse.Namespace) -> int:
    """Set up the redirect, print connections as they come, end cleanly on Ctrl-C."""
    if args.outgoing and not args.ports:
        raise UsageError("--outgoing needs PORT[:LOCALPORT] arguments")
    wanted = parse_port_mappings(args.ports, named=True)
    interrupt_on_sigterm()
    with open_session(args) as session:
        fleet = session.fleet()
        work = _start(args, session, wanted, "") if fleet is None else \
            _start_all(args, fleet, wanted)
        print("Ctrl-C to stop", flush=True)
        try:
            loss = wait_until_lost(work.lifeline, target=session.watch())
        except KeyboardInterrupt:
            work.stop()
            print("stopped; the mirror is closed (it installed no rules)" if _mode(args) ==
                  "mirror" else "stopped; the redirect rules are removed", flush=True)
            return EXIT_INTERRUPTED
        raise lost(_mode(args), loss)


def _header(text: str | None) -> tuple[str, str] | None:
    """``--header NAME=VALUE`` as (name, value)."""
    if text is None:
        return None
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--header {text!r}: expected NAME=VALUE")
    return name.strip(), value


def _mode(args: argparse.Namespace) -> str:
    return "mirror" if getattr(args, "mirror", False) else "redirect"


def _start(args: argparse.Namespace, session: Any, wanted: list[tuple[int | str, int | None]],
           prefix: str) -> _Redirecting:
    """The redirect (or mirror) on one pod (its ports mapped as the pod knows them)."""
    from kdiag.session.results import RedirectSpec

    try:
        mappings = [(session.map_port(remote), local) for remote, local in wanted]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not mappings:
        ports = sorted({s.port for p in session.manager.ps() if p.is_target
                        for s in p.listening if s.protocol.startswith("tcp")})
        if not ports:
            raise EnvironmentProblem("the target listens on no TCP port; name the ports")
        mappings = [(port, None) for port in ports]
    forward_to = {remote: (args.to, remote if local is None else local)
                  for remote, local in mappings}
    direction: Literal["incoming", "outgoing"] = "outgoing" if args.outgoing else "incoming"
    skip = session.node_sources() if direction == "incoming" and args.probes == "app" else ()
    mirror = _mode(args) == "mirror"
    spec = RedirectSpec(direction=direction, ports=list(forward_to),
                        fail_open=not args.no_fail_open, skip_sources=skip, mirror=mirror,
                        header=_header(getattr(args, "header", None)))
    stats: dict[str, int] = {}
    if mirror:
        from kdiag.steps.mirror import STAT_NAMES, mirror_stats_line

        stats = dict.fromkeys(STAT_NAMES, 0)
    on_event = _mirror_printer(prefix, stats) if mirror else _printer(prefix)
    handle = session.manager.redirect(spec, forward_to, on_event=on_event)
    arrows = ", ".join(f"{r} -> {h}:{p}" for r, (h, p) in forward_to.items())
    kept = f" (the node's connections, from {', '.join(skip)}, reach the app)" if skip else ""
    verb = "mirroring (the app serves every connection; copies to this machine)" if mirror \
        else f"redirecting {direction}"
    _say(f"{prefix}{verb} {arrows}{kept}")
    for warning in handle.warnings:
        _say(f"{prefix}warning: {warning}", sys.stderr)
    return _Redirecting(handle, prefix, (lambda: mirror_stats_line(stats)) if mirror else None)


def _start_all(args: argparse.Namespace, fleet: Any,
               wanted: list[tuple[int | str, int | None]]) -> Any:
    """The redirect on every pod of ``fleet``, following it (pods that join get it too)."""
    from kdiag.cli.adhoc.fanout import each
    from kdiag.targets.following import Following

    def start(replica: Any, session: Any) -> _Redirecting:
        return _start(args, session, wanted, f"[{replica.name}] ")

    def note(text: str) -> None:
        print(f"kdiag: {text}", file=sys.stderr, flush=True)

    following = Following(fleet, _mode(args), lambda r: start(r, fleet.open(r)), note)
    started = each(fleet, start)
    failed = [(r, w) for r, w in started if isinstance(w, Exception)]
    for replica, work in started:
        if not isinstance(work, Exception):
            following.add(replica, work)
    if failed:
        following.stop()
        replica, exc = failed[0]
        raise EnvironmentProblem(f"{_mode(args)} on {replica.name}: {exc}"
                                 + (f" (and {len(failed) - 1} more pods)"
                                    if len(failed) > 1 else ""))
    following.follow()
    verb = "mirror" if _mode(args) == "mirror" else "redirect"
    note(f"{verb}ing {len(started)} pods of {fleet.label}; pods that become ready later "
         f"are {verb}ed too")
    return following

"""``kdiag redirect``: the target's incoming (or outgoing) connections on some ports — or on
every port it listens on — go to this machine, until Ctrl-C. Each connection is printed."""

from __future__ import annotations

import argparse
import sys
import threading

from kdiag.cli.adhoc.targeting import open_session, parse_port_mappings
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, EnvironmentProblem, UsageError


def command(args: argparse.Namespace) -> int:
    """Set up the redirect, print connections as they come, end cleanly on Ctrl-C."""
    from kdiag.session.results import RedirectEventInfo, RedirectSpec

    mappings = parse_port_mappings(args.ports)
    interrupt_on_sigterm()
    with open_session(args) as session:
        if not mappings:
            if args.outgoing:
                raise UsageError("--outgoing needs PORT[:LOCALPORT] arguments")
            ports = sorted({s.port for p in session.manager.ps() if p.is_target
                            for s in p.listening if s.protocol.startswith("tcp")})
            if not ports:
                raise EnvironmentProblem("the target listens on no TCP port; name the ports")
            mappings = [(port, port) for port in ports]
        forward_to = {remote: (args.to, local) for remote, local in mappings}
        lock = threading.Lock()

        def on_event(info: RedirectEventInfo) -> None:
            with lock:
                if info.kind == "connection" and info.peer and info.original:
                    print(f"connection {info.connection_id}: {info.peer[0]}:{info.peer[1]} -> "
                          f"{info.original[0]}:{info.original[1]}", flush=True)
                elif info.kind == "rejected":
                    print(f"connection {info.connection_id} failed open: {info.error}",
                          flush=True)
                elif info.kind == "closed":
                    print(f"connection {info.connection_id} closed: {info.bytes_in} bytes in, "
                          f"{info.bytes_out} out", flush=True)

        spec = RedirectSpec(direction="outgoing" if args.outgoing else "incoming",
                            ports=[m[0] for m in mappings], fail_open=not args.no_fail_open)
        handle = session.manager.redirect(spec, forward_to, on_event=on_event)
        arrows = ", ".join(f"{r} -> {args.to}:{loc}" for r, loc in mappings)
        print(f"redirecting {spec.direction} {arrows}; Ctrl-C to stop", flush=True)
        for warning in handle.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        try:
            while handle.running:
                handle.wait(1.0)
        except KeyboardInterrupt:
            handle.close()
            print("stopped; the redirect rules are removed", flush=True)
            return EXIT_INTERRUPTED
        print(f"the redirect ended: {handle.error or 'the manager closed it'}", file=sys.stderr)
        raise EnvironmentProblem(f"redirect ended: {handle.error or 'manager gone'}")

"""``kdiag forward``: pod ports on local ports, as ``kubectl port-forward`` does, until Ctrl-C.
Needs no manager."""

from __future__ import annotations

import argparse
import threading

from kdiag.cli.adhoc.targeting import parse_port_mappings
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, UsageError


def command(args: argparse.Namespace) -> int:
    """Listen locally, forward each connection, print errors, stop on Ctrl-C."""
    from kdiag.kube.portforward import PortForwarder
    from kdiag.targets.kubernetes import pods_for_step

    if args.pid is not None:
        raise UsageError("forward works on pods only (no --pid)")
    mappings = parse_port_mappings(args.ports)
    if not mappings:
        raise UsageError("name at least one PORT[:LOCALPORT]")
    kube, pods = pods_for_step({}, {"namespace": args.namespace, "pod": args.pod,
                                    "selector": args.selector, "container": args.container,
                                    "kubeconfig": args.kubeconfig, "context": args.context})
    pod = pods[0]
    lock = threading.Lock()

    def on_error(message: str) -> None:
        with lock:
            print(f"error: {message}", flush=True)

    interrupt_on_sigterm()
    forwarders = []
    try:
        for remote, local in mappings:
            fwd = PortForwarder(kube.stream_core, pod.namespace, pod.name, remote, local,
                                args.address, kube.server, on_error=on_error)
            forwarders.append(fwd)
            print(f"Forwarding from {fwd.host}:{fwd.local_port} -> {pod.namespace}/{pod.name}:"
                  f"{remote}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        for fwd in forwarders:
            fwd.close()
    return EXIT_INTERRUPTED

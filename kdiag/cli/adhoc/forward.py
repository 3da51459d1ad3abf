"""``kdiag forward``: pod ports on local ports, as ``kubectl port-forward`` does, until Ctrl-C.
Needs no manager."""

from __future__ import annotations

import argparse
import threading
from typing import Any

from kdiag.cli.adhoc.lost import lost, wait_until_lost
from kdiag.cli.adhoc.targeting import parse_port_mappings
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, TargetError, UsageError


def _pod_port(port: str | int, pod: Any, selection: Any) -> int:
    """A Service's port (number or name) is its targetPort; a name, a container port."""
    from kdiag.kube.workloads import map_port

    try:
        return map_port(port, pod.named_ports, selection.workload)
    except TargetError as exc:
        raise UsageError(f"pod {pod.name}: {exc}") from None


def command(args: argparse.Namespace) -> int:
    """Listen locally, forward each connection, print errors, stop on Ctrl-C."""
    from kdiag.kube.podguard import PodGuard
    from kdiag.kube.portforward import PortForwarder
    from kdiag.lifeline import Lifeline
    from kdiag.targets.kubernetes import pods_for_step

    if args.pid is not None:
        raise UsageError("forward works on pods only (no --pid)")
    mappings = parse_port_mappings(args.ports, named=True)
    if not mappings:
        raise UsageError("name at least one PORT[:LOCALPORT]")
    kube, selection = pods_for_step({}, {"namespace": args.namespace, "pod": args.pod,
                                         "selector": args.selector, "container": args.container,
                                         "kubeconfig": args.kubeconfig, "context": args.context})
    pod = selection.pods[0]
    ports = [(_pod_port(remote, pod, selection), local) for remote, local in mappings]
    lock = threading.Lock()

    def on_error(message: str) -> None:
        with lock:
            print(f"error: {message}", flush=True)

    interrupt_on_sigterm()
    forwarders = []
    guard = PodGuard(kube.core(), pod, Lifeline(), server=kube.server, watch_container=False)
    try:
        for remote, local in ports:
            fwd = PortForwarder(kube.stream_core, pod.namespace, pod.name, remote,
                                remote if local is None else local,
                                args.address, kube.server, on_error=on_error)
            forwarders.append(fwd)
            print(f"Forwarding from {fwd.host}:{fwd.local_port} -> {pod.namespace}/{pod.name}:"
                  f"{remote}", flush=True)
        guard.start()
        loss = wait_until_lost(*(f.lifeline for f in forwarders), target=guard.lifeline)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        guard.stop()
        for fwd in forwarders:
            fwd.close()
    raise lost("forward", loss)

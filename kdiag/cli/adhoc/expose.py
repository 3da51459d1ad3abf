"""``kdiag expose SERVICE PORT --to [HOST:]PORT``: a port of this machine as the Service
SERVICE in the cluster until Ctrl-C (see :mod:`kdiag.expose`). Each connection is printed; the
Service and its pod are deleted when it ends (also after Ctrl-C or SIGTERM), and by
``kdiag gc`` when kdiag was killed."""

from __future__ import annotations

import argparse
import sys

from kdiag.cli.adhoc.lost import lost, wait_until_lost
from kdiag.cli.adhoc.targeting import add_cluster_flags
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SERVICE PORT --to, -n, --context, --kubeconfig, --image, --image-pull-policy."""
    parser.description = ("Expose a port of this machine as a Service in the cluster until "
                          "Ctrl-C: kdiag creates a small pod (the manager image) and the "
                          "Service SERVICE in front of it; each connection to SERVICE:PORT is "
                          "carried to --to on this machine. Both are deleted when it ends (and "
                          "by kdiag gc if kdiag was killed).")
    parser.epilog = ("examples:\n  kdiag expose checkout-preview 8080 --to 127.0.0.1:3000 -n "
                     "shop\n  kdiag expose api-preview 80 --to 8000     # 127.0.0.1:8000")
    parser.add_argument("service", metavar="SERVICE", help="the Service to create (it must "
                        "not exist)")
    parser.add_argument("port", metavar="PORT", type=int, help="the Service's port")
    parser.add_argument("--to", required=True, metavar="[HOST:]PORT",
                        help="where connections go on this machine (host default 127.0.0.1)")
    add_cluster_flags(parser)
    parser.add_argument("--image", help="the manager image (default: $KDIAG_MANAGER_IMAGE, "
                        "~/.config/kdiag/config.yaml, else kdiag.local/manager:VERSION)")
    parser.add_argument("--image-pull-policy", choices=["Always", "IfNotPresent", "Never"],
                        help="the pod's pull policy")
    parser.add_argument("--start-timeout", metavar="DURATION", default="60s",
                        help="how long the pod may take to be Ready (default 60s)")
    parser.set_defaults(handler="kdiag.cli.adhoc.expose")


def command(args: argparse.Namespace) -> int:
    """Create the pod and Service, print connections, delete both on Ctrl-C."""
    from kdiag.expose.exposure import Traffic, Wanted, start
    from kdiag.expose.objects import check_name
    from kdiag.kube.inject import ManagerImage
    from kdiag.language.durations import parse_duration
    from kdiag.steps.expose import parse_local

    try:
        local = parse_local(args.to)
        service = check_name(args.service)
        timeout = parse_duration(args.start_timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 0 < args.port < 65536:
        raise UsageError(f"port {args.port}: use 1-65535")
    wanted = Wanted(service, args.port, local, args.namespace, args.kubeconfig, args.context,
                    ManagerImage(args.image or "", args.image_pull_policy or ""))
    interrupt_on_sigterm()

    def say(line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()

    try:
        exposure = start(wanted, Traffic(say), timeout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    try:
        summary = exposure.summary()
        print(f"Exposing {local[0]}:{local[1]} as service {summary['namespace']}/{service}:"
              f"{args.port} ({summary['url']}; pod {exposure.pod}, ready in "
              f"{summary['ready_seconds']:.2f}s)", flush=True)
        loss = wait_until_lost(exposure.lifeline)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        for problem in exposure.stop():
            print(f"kdiag: {problem}", file=sys.stderr, flush=True)
    raise lost("expose", loss)

"""``kdiag connect [--service NAME]... [--all-services] -- COMMAND``: run a local command that
reaches cluster Services by their DNS names (``api``, ``api.shop``,
``api.shop.svc.cluster.local``), for that command only — no target pod, no manager (see
:mod:`kdiag.connect.command`). It exits with the command's exit code; kdiag's own failures
follow the exit-code contract (2 usage, 3 not root / cluster / a Service not reachable or its
forward lost, 130 interrupted)."""

from __future__ import annotations

import argparse
import os
import sys

from kdiag.cli.adhoc.targeting import add_cluster_flags
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--service, --all-services, -n, --context, --kubeconfig, --cluster-domain, -- COMMAND."""
    parser.description = ("Run a local command that reaches cluster Services by name (NAME, "
                          "NAME.NAMESPACE, NAME.NAMESPACE.svc.cluster.local): each Service "
                          "gets a loopback address forwarded to a pod behind it, and the "
                          "command alone sees a hosts file naming them (its own mount "
                          "namespace; this machine's /etc/hosts is not changed). Needs root. "
                          "Exits with the command's exit code.")
    parser.epilog = ("examples:\n  sudo kdiag connect -n shop --service api --service db -- "
                     "curl -s http://api:8080/\n  sudo kdiag connect -n shop --all-services -- "
                     "./integration-tests\n  sudo kdiag connect --service api.shop -- python3 "
                     "-m app   # NAME.NAMESPACE")
    parser.usage = "%(prog)s (--service NAME... | --all-services) [options] -- COMMAND..."
    add_cluster_flags(parser)
    parser.add_argument("--service", action="append", default=[], metavar="NAME",
                        help="a Service: NAME or NAME.NAMESPACE (repeatable)")
    parser.add_argument("--all-services", action="store_true",
                        help="every Service of the namespace")
    parser.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                        help="the cluster's DNS domain (default cluster.local)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                        help="the command to run")
    parser.set_defaults(handler="kdiag.cli.adhoc.connect")


def command(args: argparse.Namespace) -> int:
    """Forward the Services, run the command with their names; its exit code."""
    from kdiag.cli.adhoc.exec import wait_command
    from kdiag.connect.command import Wanted, open_connection
    from kdiag.launch.launcher import LaunchError, start

    argv = [a for a in args.cmd if a != "--"] if args.cmd else []
    if not argv:
        raise UsageError("name the command to run: kdiag connect --service NAME -- COMMAND...")
    if bool(args.service) == bool(args.all_services):
        raise UsageError("say which Services: --service NAME (repeatable) or --all-services")
    wanted = Wanted(args.namespace, tuple(args.service), args.kubeconfig, args.context,
                    args.cluster_domain)
    interrupt_on_sigterm()
    connected = open_connection(wanted, dict(os.environ))
    try:
        for note in connected.notes:
            print(f"kdiag: {note}", file=sys.stderr, flush=True)
        for svc in connected.result["services"]:
            ports = ", ".join(map(str, svc["ports"]))
            print(f"kdiag: {svc['namespace']}/{svc['service']} at {svc['address']} (ports "
                  f"{ports}, pod {svc['pod']})", file=sys.stderr, flush=True)
        try:
            process = start(connected.launch(argv, None), new_session=False)
        except LaunchError as exc:
            raise UsageError(str(exc)) from None
        return wait_command(process, connected.lifeline, "connect")
    finally:
        connected.close()

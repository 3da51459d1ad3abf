"""``kdiag gc [--dry-run] [-n NS | -A]``: remove what dead kdiag runs left in the cluster (pod
copies, node pods, expose pods and Services, their Leases); see :mod:`kdiag.kube.owned`."""

from __future__ import annotations

import argparse


def command(args: argparse.Namespace) -> int:
    """List (``--dry-run``) or remove the objects of dead runs; one line each."""
    from kdiag.errors import UsageError
    from kdiag.kube.config import KubeOptions, load
    from kdiag.kube.owned import collect

    if args.all_namespaces and args.namespace:
        raise UsageError("-n/--namespace and -A/--all-namespaces exclude each other")
    kube = load(KubeOptions(kubeconfig=args.kubeconfig, context=args.context,
                            namespace=args.namespace))
    namespaces = None if args.all_namespaces else [kube.namespace]
    found = collect(kube, namespaces, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for item in found:
        print(f"{verb} {item.describe()}")
    where = "all namespaces" if namespaces is None else f"namespace {kube.namespace}"
    print(f"{len(found)} object(s) of dead kdiag runs in {where}"
          + (" (dry run: nothing deleted)" if args.dry_run else ""))
    return 0

"""The target flags every ad-hoc command shares, and opening the target they name."""

from __future__ import annotations

import argparse
from typing import Any

from kdiag.errors import UsageError
from kdiag.language.ports import parse_port_mapping


def add_target_flags(parser: argparse.ArgumentParser, *, container_help: str = "") -> None:
    """-n/--namespace, -l/--selector, --pod, -c/--container, --kubeconfig, --context,
    --image, --image-pull-policy, --privileged, --timeout; --pid for node mode."""
    group = parser.add_argument_group("target")
    group.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    group.add_argument("-l", "--selector", help="a label selector, e.g. app=api (newest pod)")
    group.add_argument("--pod", help="a pod name")
    group.add_argument("-c", "--container", help=container_help or
                       "the container (default: kubectl's default container)")
    group.add_argument("--kubeconfig", help="a kubeconfig file (default: $KUBECONFIG, "
                       "~/.kube/config, else in-cluster)")
    group.add_argument("--context", help="the kubeconfig context")
    group.add_argument("--image", help="the manager image (default: $KDIAG_MANAGER_IMAGE, "
                       "~/.config/kdiag/config.yaml, else kdiag.local/manager:VERSION)")
    group.add_argument("--image-pull-policy", choices=["Always", "IfNotPresent", "Never"],
                       help="the manager's pull policy (default: $KDIAG_MANAGER_PULL_POLICY, "
                            "the settings file, else IfNotPresent)")
    group.add_argument("--privileged", action="store_true",
                       help="run the manager privileged (default: only the capabilities it needs)")
    group.add_argument("--start-timeout", metavar="DURATION", default=None,
                       help="how long to wait for the manager to start (default 60s)")
    group.add_argument("--pid", type=int, help="target this host process instead (node mode)")


def target_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The ``target:`` mapping the flags mean (UsageError when they name nothing)."""
    if args.pid is not None:
        if args.pod or args.selector:
            raise UsageError("--pid cannot be combined with --pod or --selector")
        return {"node": {"pid": args.pid}}
    if not args.pod and not args.selector:
        raise UsageError("name the target: --pod NAME or -l SELECTOR (or --pid N)")
    if args.pod and args.selector:
        raise UsageError("--pod and --selector cannot be combined")
    options = {"namespace": args.namespace, "pod": args.pod, "selector": args.selector,
               "container": args.container, "kubeconfig": args.kubeconfig,
               "context": args.context, "image": args.image,
               "image_pull_policy": args.image_pull_policy, "privileged": args.privileged,
               "timeout": args.start_timeout}
    return {"kubernetes": {k: v for k, v in options.items() if v not in (None, False)}}


def describe(spec: dict[str, Any]) -> str:
    """``pod ns/name`` / ``pods app=x`` / ``node process 123`` for messages."""
    kind, options = next(iter(spec.items()))
    if kind == "node":
        return f"node process {options['pid']}"
    where = options.get("pod") or options.get("selector")
    return f"pod {options['namespace']}/{where}" if options.get("namespace") else f"pod {where}"


def open_session(args: argparse.Namespace) -> Any:
    """Open the target session the flags name (EnvironmentProblem if it cannot)."""
    from kdiag.targets.factory import open_target

    return open_target(target_spec(args))


def parse_port_mappings(items: list[str]) -> list[tuple[int, int]]:
    """``8080`` or ``8080:9000`` → (remote, local); UsageError on anything else."""
    mappings = []
    for item in items:
        try:
            remote, local = parse_port_mapping(item, local_may_be_zero=True)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        mappings.append((remote, remote if local is None else local))
    return mappings

"""The target every ad-hoc command names — kubectl's way, ``TYPE/NAME`` or a pod name as the
first argument (``kdiag ps deploy/api -n shop``), or ``--pod``/``-l``/``--pid`` — its flags,
and opening it. ``--all`` means every ready pod of it."""

from __future__ import annotations

import argparse
import re
from typing import Any

from kdiag.errors import UsageError
from kdiag.language.ports import parse_port_mapping

TARGET_HELP = ("the target: POD, or TYPE/NAME with TYPE pod, deployment (deploy), statefulset "
               "(sts), daemonset (ds), replicaset (rs), job or service (svc): its newest "
               "running pod, or with --all every ready pod")


def add_target_flags(parser: argparse.ArgumentParser, *, container_help: str = "",
                     all_pods: bool = True) -> None:
    """-n/--namespace, -l/--selector, --pod, --all, -c/--container, --kubeconfig, --context,
    --image, --image-pull-policy, --privileged, --timeout; --pid for node mode."""
    group = parser.add_argument_group("target")
    group.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    group.add_argument("-l", "--selector", help="a label selector, e.g. app=api (newest pod)")
    group.add_argument("--pod", help="a pod name (or TYPE/NAME)")
    if all_pods:
        group.add_argument("--all", dest="all_pods", action="store_true",
                           help="every ready pod of the target (each line prefixed [pod])")
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
    group.add_argument("--copy", action="store_true",
                       help="debug a copy of the pod (for a pod crashing at start): its "
                            "container kept alive by a sleep, no probes, deleted at the end")
    group.add_argument("--copy-image", metavar="IMAGE",
                       help="with --copy: another image for the container in the copy")
    group.add_argument("--keep-copy", action="store_true", help="with --copy: leave the copy")
    group.add_argument("--via", choices=["ephemeral", "node", "auto"],
                       help="how the manager reaches the pod: an ephemeral container "
                            "(default), a privileged pod on its node entering its namespaces, "
                            "or auto (through the node when the ephemeral one is refused)")
    group.add_argument("--node-namespace", metavar="NS",
                       help="with node/NAME or --via node|auto: create the pod on the node in "
                            "NS, a namespace that allows privileged pods (default: the "
                            "target's)")
    group.add_argument("--pid", type=int, help="target this host process instead (node mode)")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """-n/--namespace, --context, --kubeconfig: for commands that need a cluster but no
    target pod (connect, expose)."""
    parser.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    parser.add_argument("--context", help="the kubeconfig context")
    parser.add_argument("--kubeconfig", help="a kubeconfig file (default: $KUBECONFIG, "
                        "~/.kube/config, else in-cluster)")


def take_target(args: argparse.Namespace, field: str, *, rest: str = "") -> None:
    """kubectl's positional target: unless ``--pod``, ``-l`` or ``--pid`` names it, the first
    of ``args.<field>`` (the positional words) does, and goes to ``args.pod``. The other words
    stay in ``field``; with ``rest``, they go in front of ``args.<rest>`` (a command)."""
    words = list(getattr(args, field, None) or [])
    named = args.pod or args.selector or args.pid is not None
    if words and not named and not (field == "ports" and _port_like(words[0])):
        args.pod = words.pop(0)
    if rest:
        setattr(args, rest, [*words, *(getattr(args, rest, None) or [])])
        words = []
    elif field != "ports" and words:
        raise UsageError(f"unexpected argument(s): {' '.join(words)}")
    setattr(args, field, words)


def _port_like(word: str) -> bool:
    return word.replace(":", "").isdigit()


def target_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The ``target:`` mapping the flags mean (UsageError when they name nothing)."""
    if args.pid is not None:
        if args.pod or args.selector:
            raise UsageError("--pid cannot be combined with a pod target or --selector")
        if getattr(args, "all_pods", False):
            raise UsageError("--all needs a pod target (a node process is one)")
        return {"node": {"pid": args.pid}}
    if not args.pod and not args.selector:
        raise UsageError("name the target: POD or TYPE/NAME (e.g. deploy/api), --pod NAME or "
                         "-l SELECTOR (or --pid N)")
    if args.pod and args.selector:
        raise UsageError("name the target once: a pod (or TYPE/NAME) or --selector")
    if args.pod and args.pod.startswith(("node/", "nodes/", "no/")):
        return {"kubernetes": _node_options(args)}
    if args.pod:
        from kdiag.errors import TargetError
        from kdiag.kube.workloads import parse_name

        try:
            parse_name(args.pod)
        except TargetError as exc:
            raise UsageError(str(exc)) from None
    options = {"namespace": args.namespace, "pod": args.pod, "selector": args.selector,
               "container": args.container, "kubeconfig": args.kubeconfig,
               "context": args.context, "image": args.image,
               "image_pull_policy": args.image_pull_policy, "privileged": args.privileged,
               "timeout": args.start_timeout,
               "pick": "all" if getattr(args, "all_pods", False) else None}
    if getattr(args, "copy", False) or getattr(args, "copy_image", None) \
            or getattr(args, "keep_copy", False):
        options["copy"] = {"image": args.copy_image} if args.copy_image else True
        options["keep_copy"] = args.keep_copy
    options["via"] = getattr(args, "via", None)
    options["node_namespace"] = getattr(args, "node_namespace", None)
    return {"kubernetes": {k: v for k, v in options.items() if v not in (None, False)}}


def _node_options(args: argparse.Namespace) -> dict[str, Any]:
    """``node/NAME``: the node itself (UsageError for what does not go with it)."""
    node = args.pod.partition("/")[2]
    if not node or args.selector or getattr(args, "all_pods", False) or args.container \
            or getattr(args, "copy", False) or getattr(args, "via", None):
        raise UsageError("node/NAME names a node: no -l, --all, -c, --copy or --via with it")
    options = {"namespace": args.namespace, "node": node, "kubeconfig": args.kubeconfig,
               "context": args.context, "image": args.image,
               "image_pull_policy": args.image_pull_policy, "timeout": args.start_timeout,
               "node_namespace": getattr(args, "node_namespace", None)}
    return {k: v for k, v in options.items() if v not in (None, False)}


def describe(spec: dict[str, Any]) -> str:
    """``pod ns/name`` / ``deploy/api`` / ``pods app=x`` / ``node process 123`` for
    messages."""
    kind, options = next(iter(spec.items()))
    if kind == "node":
        return f"node process {options['pid']}"
    if options.get("node"):
        return f"node {options['node']}"
    pod = str(options.get("pod") or "")
    where = pod if "/" in pod else (f"pod {pod}" if pod else f"pods {options.get('selector')}")
    return f"{where} in {options['namespace']}" if options.get("namespace") else where


def open_session(args: argparse.Namespace) -> Any:
    """Open the target session the flags name (EnvironmentProblem if it cannot)."""
    from kdiag.targets.factory import open_target

    return open_target(target_spec(args))


def parse_port_mappings(items: list[str], *, named: bool = False
                        ) -> list[tuple[int | str, int | None]]:
    """``8080`` or ``8080:9000`` → (remote, local; by default the remote one); ``named``: the
    remote port may be a name too (``http:9000``: a Service's or container's port; ``http``:
    local None, the number it stands for). UsageError on anything else."""
    mappings: list[tuple[int | str, int | None]] = []
    for item in items:
        remote, sep, local = item.partition(":")
        if named and remote and not remote.isdigit():
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", remote):
                raise UsageError(f"bad port {item!r}: use PORT, NAME, PORT:LOCALPORT or "
                                 "NAME:LOCALPORT")
            item = f"1{sep}{local}"  # check the local part alone
        try:
            number, local_port = parse_port_mapping(item, local_may_be_zero=True)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if remote.isdigit():
            mappings.append((number, number if local_port is None else local_port))
        else:
            mappings.append((remote, local_port))
    return mappings

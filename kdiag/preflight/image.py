"""The manager image: which reference kdiag will use (and why), and whether the node that
runs the target has it already — the one thing about pulling that can be known beforehand."""

from __future__ import annotations

from typing import Any

from kdiag.errors import TargetError
from kdiag.kube import imageref
from kdiag.preflight.checks import Check
from kdiag.preflight.cluster import Session
from kdiag.preflight.demand import Demand

HOW_TO = "see the README's 'The manager image' (build, push, point kdiag at it)"


def image_check(session: Session, demand: Demand, pod: Any | None) -> Check:
    """Where the image reference comes from and which nodes hold it (``pod``: the target
    pod, whose node is the one that matters)."""
    from kubernetes import client

    chosen = imageref.manager_image(demand.options.get("image"))
    policy = imageref.pull_policy(demand.options.get("image_pull_policy")).value
    name = f"manager image {chosen.value}"
    what = f"from {chosen.source}, pull policy {policy}"
    core: Any = client.CoreV1Api(session.api)
    node_name = str(pod.spec.node_name or "") if pod is not None else ""
    try:
        with session.call("get" if node_name else "list", "nodes", node_name):
            nodes = ([core.read_node(node_name, _request_timeout=10)] if node_name
                     else core.list_node(_request_timeout=10).items)
    except TargetError as exc:
        return Check(name, "unknown", f"{what}; whether the nodes have it is unknown ({exc})",
                     blocking=False, fix=HOW_TO)
    want = imageref.normalized(chosen.value)
    having = [n.metadata.name for n in nodes if want in _images(n)]
    if not node_name:
        return Check(name, "ok" if having else "unknown", f"{what}; on {len(having)} of {len(nodes)} nodes",
                     blocking=False, fix="" if having else HOW_TO)
    if having:
        return Check(name, "ok", f"{what}; present on node {node_name}")
    if policy == "Never":
        return Check(name, "fail", f"{what}; not on node {node_name}, and Never forbids pulling"
                     " it: the manager would fail with ErrImageNeverPull",
                     fix=f"put the image on the node, or allow pulling; {HOW_TO}")
    return Check(name, "unknown", f"{what}; not on node {node_name} yet: it will be pulled "
                 "(whether the node can reach the registry and has credentials shows then)",
                 blocking=False, fix=HOW_TO if chosen.source == "the default" else "")


def _images(node: Any) -> set[str]:
    names: set[str] = set()
    for image in node.status.images or []:
        names.update(imageref.normalized(n) for n in image.names or [])
    return names

"""The manager in a privileged pod on a node (kubespy's and kubectl-debug's way).

Two uses. A node target (``target: {kubernetes: {node: NAME}}``, ``kdiag shell node/NAME``):
the pod has the host's PID and network namespaces, and the manager's target is the host's PID
1, so ``shell`` runs in the host's root and ``ps`` sees every process of the node. Through the
node (``via: node``): the pod has the host's PID namespace only; the manager finds the target
container's oldest process from its runtime ID (as for ``shareProcessNamespace``) and joins that
process's network namespace before it listens, so it answers on the *target pod's* loopback —
reached with a port-forward to the target pod — and every step works as from an ephemeral
container. Either pod is created through :class:`~kdiag.kube.owned.Ownership` (role ``node``)
and deleted at the end of the run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.inject import ManagerImage
from kdiag.kube.owned import Ownership
from kdiag.kube.pods import PodRef, to_ref
from kdiag.kube.podstart import admission_hint, wait_running
from kdiag.kube.tokens import new_token, token_sha256

CONTAINER = "manager"


@dataclass(frozen=True)
class NodePod:
    """A running node pod: its ref (container ``manager``) and the session token."""

    ref: PodRef
    token: str


def pod_name(node: str) -> str:
    """``kdiag-node-<node>-<5 hex>`` (a DNS label)."""
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in node.lower())[:40].strip("-")
    return f"kdiag-node-{safe}-{secrets.token_hex(3)[:5]}"


def node_pod_body(name: str, node: str, image: ManagerImage, token_hash: str, *,
                  target_id: str = "") -> dict[str, Any]:
    """The pod (API field names). ``target_id``: through the node to that container (host PID
    namespace only); without: the node itself (host PID and network namespaces)."""
    env = [{"name": "KDIAG_TOKEN_SHA256", "value": token_hash},
           {"name": "KDIAG_TARGET_CONTAINER_ID", "value": target_id} if target_id else
           {"name": "KDIAG_TARGET", "value": "host"}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "nodeName": node, "hostPID": True, "hostNetwork": not target_id,
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": CONTAINER, "image": image.image, "imagePullPolicy": image.pull_policy,
                "args": ["--join-netns"] if target_id else [], "env": env,
                "securityContext": {"privileged": True},
                "terminationMessagePolicy": "FallbackToLogsOnError"}]}}


NODE_NAMESPACE_HINT = "name one for the pods on nodes: node_namespace, or --node-namespace"


def start_node_pod(core: Any, owned: Ownership, namespace: str, node: str,
                   image: ManagerImage, *, target: PodRef | None = None) -> NodePod:
    """Create the node pod in ``namespace`` (through ``target``'s container when given) and
    wait until its manager runs; TargetError naming why not (admission, image, timeout)."""
    if target is not None and not target.container_id:
        raise TargetError(f"{target.describe()}: the container is not running (no runtime ID "
                          "to find its processes by)")
    image = image.resolved()
    token = new_token()
    body = node_pod_body(pod_name(node), node, image, token_sha256(token),
                         target_id=target.container_id if target is not None else "")
    try:
        owned.create("pods", namespace, body, role="node")
    except TargetError as exc:
        raise TargetError(f"cannot start the manager on node {node} (a privileged pod with the "
                          f"host's PID namespace): "
                          f"{admission_hint(str(exc), NODE_NAMESPACE_HINT)}") from None
    pod = wait_running(core, namespace, body["metadata"]["name"], CONTAINER, image.timeout)
    return NodePod(to_ref(pod, CONTAINER), token)

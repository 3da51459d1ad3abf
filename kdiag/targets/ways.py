"""Ways into a pod other than an ephemeral container, and the node itself.

- a copy of the pod (``copy:``), for a pod that crashes at start (:mod:`kdiag.kube.podcopy`);
- through the node (``via: node``): the manager in a privileged pod on the pod's node enters
  the target container's namespaces (:mod:`kdiag.kube.nodepod`); ``via: auto`` tries the
  ephemeral container first and falls back on a clear refusal (RBAC, no ephemeral containers);
- the node itself (``node: NAME``).

What these create is deleted when the session closes (:mod:`kdiag.kube.owned`), and by
``kdiag gc`` when kdiag died.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from kdiag.errors import TargetError
from kdiag.kube.config import KubeConfig
from kdiag.kube.errors import Call, EphemeralUnsupported, RbacDenied, api_call
from kdiag.kube.inject import Injector
from kdiag.kube.owned import Ownership
from kdiag.kube.pods import PodRef, Selection, select

if TYPE_CHECKING:
    from kdiag.session.results import ProcessInfo

log = logging.getLogger(__name__)
KubernetesSession = Any
"""A :class:`kdiag.targets.kubernetes.KubernetesSession` (not imported: it imports this)."""


class KubernetesTarget(Protocol):
    """What this module uses of :class:`kdiag.targets.kubernetes.KubernetesTarget`."""

    spec: Any

    def open_pod(self, kube: KubeConfig, ref: PodRef, selection: Selection) -> Any:
        """The manager in pod ``ref`` as an ephemeral container."""

    def _connect(self, kube: KubeConfig, ref: PodRef, selection: Selection, injector: Injector,
                 name: str, token: str, reused: bool, log_ref: PodRef | None = None) -> Any:
        """Connect to a running manager."""

VIAS = ("ephemeral", "node", "auto")


def open_other_way(target: KubernetesTarget, kube: KubeConfig) -> KubernetesSession:
    """Open ``target`` (one pod, or a node) the way its spec asks."""
    spec = target.spec
    if spec.via not in VIAS:
        raise TargetError(f"target kubernetes: via: {spec.via!r} is not one of "
                          f"{', '.join(VIAS)}")
    if spec.node:
        return _open_node(target, kube, spec.node)
    if spec.pick == "all":
        raise TargetError("target kubernetes: copy and via: node work on one pod, not pick: all")
    owned = Ownership(kube)
    try:
        if spec.copy is not None:
            ref, original = _make_copy(target, kube, owned)
            session = _reach(target, kube, ref, Selection([ref]), owned)
            session.adopt(owned, session.info["way"] if session.info["way"] != "ephemeral"
                          else "copy", copy_of=original.name, keep_copy=spec.copy.keep,
                          **_via_info(session))
        else:
            selection = select(kube.core(), spec.selector_for(kube.namespace), kube.server)
            session = _reach(target, kube, selection.pods[0], selection, owned)
            session.adopt(owned, session.info["way"], **_via_info(session))
    except BaseException:
        owned.close()
        raise
    return session


def _via_info(session: KubernetesSession) -> dict[str, Any]:
    return {k: session.info[k] for k in ("via_node", "fallback") if k in session.info}


def _make_copy(target: KubernetesTarget, kube: KubeConfig, owned: Ownership
               ) -> tuple[PodRef, PodRef]:
    """The copy of the pod (any phase: it may be crashing), running: (copy, original)."""
    from kdiag.kube.podcopy import make_copy
    from kdiag.kube.pods import to_ref

    spec = target.spec
    assert spec.copy is not None
    core = kube.core()
    original = select(core, spec.selector_for(kube.namespace), kube.server,
                      running=False).pods[0]
    with api_call(Call("get", "pods", original.namespace, original.name, kube.server)):
        pod = core.read_namespaced_pod(original.name, original.namespace, _request_timeout=30)
    image = spec.manager_image().resolved()
    copied = make_copy(core, owned, pod, original.container, spec.copy, image.image,
                       image.pull_policy, spec.timeout)
    return to_ref(copied, original.container), original


def _reach(target: KubernetesTarget, kube: KubeConfig, ref: PodRef, selection: Selection,
           owned: Ownership) -> KubernetesSession:
    """The manager for pod ``ref``: an ephemeral container, or through its node."""
    via = target.spec.via
    fallback = ""
    if via in ("ephemeral", "auto"):
        try:
            return target.open_pod(kube, ref, selection)
        except (RbacDenied, EphemeralUnsupported) as exc:
            if via == "ephemeral":
                raise
            fallback = f"the ephemeral container was refused ({exc})"
            log.info("%s: through the node instead", fallback)
    return _via_node(target, kube, ref, selection, owned, fallback)


def _via_node(target: KubernetesTarget, kube: KubeConfig, ref: PodRef, selection: Selection,
              owned: Ownership, fallback: str) -> KubernetesSession:
    """The manager on ``ref``'s node, in the target container's namespaces."""
    from kdiag.kube.nodepod import CONTAINER, start_node_pod

    core = kube.core()
    image = target.spec.manager_image()
    if not ref.node:
        raise TargetError(f"{ref.describe()} is on no node yet")
    started = start_node_pod(core, owned, target.spec.node_namespace or ref.namespace, ref.node,
                             image, target=ref)
    session = target._connect(kube, ref, selection, Injector(core, kube.server, image),
                              CONTAINER, started.token, reused=False, log_ref=started.ref)
    if session.info.get("target_pid") in (None, 0, 1):
        session.close()
        raise TargetError(f"the manager on node {ref.node} found no process of "
                          f"{ref.describe()} (container {ref.container_id[:12]})")
    session.info.update(way="via-node", via_node=f"{started.ref.namespace}/{started.ref.name}",
                        **({"fallback": fallback} if fallback else {}))
    return session


def _open_node(target: KubernetesTarget, kube: KubeConfig, node: str) -> KubernetesSession:
    """The node itself: its host PID and network namespaces, its root."""
    from kdiag.kube.nodepod import CONTAINER, start_node_pod

    core = kube.core()
    image = target.spec.manager_image()
    owned = Ownership(kube)
    try:
        started = start_node_pod(core, owned, target.spec.node_namespace or kube.namespace, node,
                                 image)
        session = target._connect(kube, started.ref, Selection([started.ref]),
                                  Injector(core, kube.server, image), CONTAINER, started.token,
                                  reused=False)
    except BaseException:
        owned.close()
        raise
    session.manager.every_process = True
    session.manager.name_pods = PodNames(kube, node)
    session.adopt(owned, "node", node_pod=f"{started.ref.namespace}/{started.ref.name}")
    return session


class PodNames:
    """Names the pod and container of each process a node's manager lists (from the pods the
    API server has on that node; best effort: without RBAC to list them, processes keep their
    pod UID only)."""

    def __init__(self, kube: KubeConfig, node: str) -> None:
        self.kube = kube
        self.node = node

    def _index(self) -> tuple[dict[str, str], dict[str, str]]:
        core = self.kube.core()
        with api_call(Call("list", "pods", "(all)", server=self.kube.server)):
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}",
                                                    _request_timeout=30).items
        names, containers = {}, {}
        for pod in pods:
            names[pod.metadata.uid] = f"{pod.metadata.namespace}/{pod.metadata.name}"
            status = pod.status
            for c in [*(status.container_statuses or []), *(status.init_container_statuses or []),
                      *(status.ephemeral_container_statuses or [])] if status else []:
                if c.container_id:
                    containers[c.container_id.partition("://")[2]] = c.name
        return names, containers

    def __call__(self, processes: list[ProcessInfo]) -> list[ProcessInfo]:
        import dataclasses

        if not any(p.pod_uid for p in processes):
            return processes
        try:
            names, containers = self._index()
        except TargetError as exc:
            log.warning("processes' pods not named: %s", exc)
            return processes
        return [dataclasses.replace(p, pod=names.get(p.pod_uid, ""),
                                    container=containers.get(p.container_id, ""))
                if p.pod_uid else p for p in processes]

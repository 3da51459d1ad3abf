"""A copy of a pod, for pods that crash at start (``target: {kubernetes: {copy: {...}}}``).

The copy has the original's spec with: the chosen container's command replaced (by default it
is kept alive by a ``sleep`` — a static busybox an init container from the manager image puts
in an ``emptyDir`` at ``/.kdiag``, so that this works in a distroless image too — or by the
given ``command``), optionally another image for it, no probes in any container, no node name
(the scheduler places it), and new labels (``kdiag.dev/copy-of`` and the run's: see
:mod:`kdiag.kube.owned`) so that no Service or controller picks it up. The manager is then
injected into the copy as into any pod. The copy is deleted at the end of the run unless kept.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.owned import Ownership
from kdiag.kube.podstart import admission_hint, wait_running

COPY_OF = "kdiag.dev/copy-of"
BIN_DIR = "/.kdiag"
BIN_VOLUME = "kdiag-bin"
BUSYBOX = "/bin/busybox"  # in the manager image
KEEP_ALIVE = (f"{BIN_DIR}/busybox", "sleep", "2147483647")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
UNPRIVILEGED = {"runAsUser": 65534, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
"""The init container's: what even a Pod Security ``restricted`` namespace allows."""


@dataclass(frozen=True)
class CopySpec:
    """The runbook's ``copy: {command, image}`` and ``keep_copy``."""

    command: tuple[str, ...] = ()
    image: str = ""
    keep: bool = False

    @classmethod
    def from_options(cls, copy: Any, keep: Any = False) -> CopySpec:
        """From ``copy:`` (a mapping, or ``true`` for the defaults); TargetError on bad
        values."""
        if copy is True or copy is None:
            copy = {}
        if not isinstance(copy, dict):
            raise TargetError("target kubernetes: copy: a mapping ({command, image}) or true")
        command = copy.get("command") or ()
        if isinstance(command, str):
            import shlex

            command = shlex.split(command)
        if not isinstance(command, list | tuple) or not all(isinstance(c, str) for c in command):
            raise TargetError("target kubernetes: copy: command: a list of strings")
        return cls(tuple(command), str(copy.get("image") or ""), bool(keep))


def copy_name(original: str) -> str:
    """``<original>-kdiag-copy-<5 hex>`` (a DNS label: at most 63 characters)."""
    return f"{original[:41].rstrip('-')}-kdiag-copy-{secrets.token_hex(3)[:5]}"


def copy_body(pod: dict[str, Any], container: str, spec: CopySpec, manager_image: str,
              pull_policy: str, name: str) -> dict[str, Any]:
    """The copy of ``pod`` (API field names, as ``sanitize_for_serialization`` gives them)."""
    meta = pod.get("metadata") or {}
    body_spec = {k: v for k, v in (pod.get("spec") or {}).items()
                 if k not in ("nodeName", "ephemeralContainers")}
    containers = []
    for item in body_spec.get("containers") or []:
        item = {k: v for k, v in item.items() if k not in PROBES}
        if item.get("name") == container:
            if spec.image:
                item["image"] = spec.image
            item["command"] = list(spec.command or KEEP_ALIVE)
            item.pop("args", None)
            if not spec.command:
                item["volumeMounts"] = [*(item.get("volumeMounts") or []),
                                        {"name": BIN_VOLUME, "mountPath": BIN_DIR,
                                         "readOnly": True}]
        containers.append(item)
    body_spec["containers"] = containers
    body_spec["initContainers"] = [{k: v for k, v in c.items() if k not in PROBES}
                                   for c in body_spec.get("initContainers") or []]
    if not spec.command:
        body_spec["volumes"] = [*(body_spec.get("volumes") or []),
                                {"name": BIN_VOLUME, "emptyDir": {}}]
        body_spec["initContainers"].append({
            "name": "kdiag-sleep", "image": manager_image, "imagePullPolicy": pull_policy,
            "command": [BUSYBOX, "cp", BUSYBOX, f"{BIN_DIR}/busybox"],
            "volumeMounts": [{"name": BIN_VOLUME, "mountPath": BIN_DIR}],
            "securityContext": UNPRIVILEGED})
    if not body_spec["initContainers"]:
        del body_spec["initContainers"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta.get("namespace"),
                         "labels": {COPY_OF: str(meta.get("name"))},
                         "annotations": dict(meta.get("annotations") or {})},
            "spec": body_spec}


def make_copy(core: Any, ownership: Ownership, pod: Any, container: str, spec: CopySpec,
              manager_image: str, pull_policy: str, timeout: float) -> Any:
    """Create the copy of ``pod`` (registered with ``ownership``) and wait until ``container``
    runs in it; TargetError naming why it cannot (admission, image, timeout)."""
    from kubernetes import client

    raw = client.ApiClient().sanitize_for_serialization(pod)
    namespace = pod.metadata.namespace
    body = copy_body(raw, container, spec, manager_image, pull_policy,
                     copy_name(pod.metadata.name))
    try:
        ownership.create("pods", namespace, body, role="copy")
    except TargetError as exc:
        raise TargetError(f"cannot create a copy of pod {namespace}/{pod.metadata.name}: "
                          f"{admission_hint(str(exc))}") from None
    return wait_running(core, namespace, body["metadata"]["name"], container, timeout)

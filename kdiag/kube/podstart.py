"""Waiting for a pod kdiag created (a copy, a node pod) to run, and what admission refusing
it means."""

from __future__ import annotations

import time
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, PodGone, api_call

FATAL = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
"""Waiting reasons that will not resolve by themselves."""


def admission_hint(message: str, elsewhere: str = "") -> str:
    """``message``, and what Pod Security allows when it is what refused (``elsewhere``: how
    to ask for another namespace)."""
    if "PodSecurity" not in message:
        return message
    return (f"{message} — Pod Security admission refused it: a `baseline` namespace refuses "
            "host namespaces, privileged containers and added capabilities beyond its list, "
            "`restricted` also root and any added capability; kdiag's manager needs a "
            "namespace labelled pod-security.kubernetes.io/enforce=privileged"
            + (f" ({elsewhere})" if elsewhere else ""))


def wait_running(core: Any, namespace: str, name: str, container: str, timeout: float) -> Any:
    """Poll pod ``name`` until ``container`` runs (the pod object); TargetError on a state
    that will not lead there."""
    deadline = time.monotonic() + timeout
    while True:
        with api_call(Call("get", "pods", namespace, name)):
            pod = core.read_namespaced_pod(name, namespace, _request_timeout=30)
        if pod.metadata.deletion_timestamp is not None or pod.status.phase in ("Failed",
                                                                                "Succeeded"):
            raise PodGone(f"pod {namespace}/{name} ended ({pod.status.phase}) before it ran")
        init_names = {s.name for s in pod.status.init_container_statuses or []}
        statuses = [*(pod.status.init_container_statuses or []),
                    *(pod.status.container_statuses or [])]
        for status in statuses:
            state = status.state
            waiting = state.waiting if state is not None else None
            if waiting is not None and waiting.reason in FATAL:
                raise TargetError(f"pod {namespace}/{name}: container {status.name} cannot "
                                  f"start: {waiting.reason}: "
                                  f"{' '.join((waiting.message or '').split())[:300]}")
            terminated = state.terminated if state is not None else None
            if (terminated is not None and terminated.exit_code
                    and status.name in init_names):
                raise TargetError(f"pod {namespace}/{name}: {status.name} exited with code "
                                  f"{terminated.exit_code} ({terminated.reason})")
        if pod.status.phase == "Running" and any(
                s.name == container and s.state is not None and s.state.running is not None
                for s in pod.status.container_statuses or []):
            return pod
        if time.monotonic() > deadline:
            raise TargetError(f"pod {namespace}/{name} did not run within {timeout:g}s "
                              f"(phase {pod.status.phase})")
        time.sleep(0.5)

"""The manager as an ephemeral container next to the target container.

Injected through the ``ephemeralcontainers`` subresource with ``targetContainerName`` (so it
shares the target's PID namespace), only the capabilities the features need, and the SHA-256
of a fresh session token in its environment (anyone who can read the pod sees the spec; the
token itself stays on this machine). A running manager of this kdiag version whose token this
machine knows is reused. Waiting uses a watch on the pod, failing at once on image pull and
container creation errors or a terminated manager; the manager's address comes from the first
line of its log.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from kdiag import __version__
from kdiag.errors import TargetError
from kdiag.kube import imageref
from kdiag.kube.errors import Call, PodGone, api_call
from kdiag.kube.podlog import read_pod_log
from kdiag.kube.pods import PodRef
from kdiag.kube.tokens import TokenCache, new_token, token_sha256

DEFAULT_IMAGE = imageref.default_image()
DEFAULT_TIMEOUT = 60.0
CAPABILITIES = ("NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_ADMIN", "SYS_CHROOT")
"""What the features need: iptables (NET_ADMIN), capture, probes and mirror (NET_RAW), reading the
target's /proc and entering its namespaces (SYS_PTRACE, SYS_ADMIN), chroot into its root."""
# Waiting reasons that will not resolve by themselves: fail with them at once.
FATAL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "ErrImageNeverPull", "CreateContainerConfigError",
                           "CreateContainerError", "RunContainerError",
                           "PreCreateHookError", "PostStartHookError"})


def name_prefix() -> str:
    """``kdiag-0-1-0-<protocol>``: container names are DNS labels (no dots). The protocol
    fingerprint (of the manager API's descriptor) keeps a later build whose API changed under
    the same version from reusing an older, incompatible manager."""
    from kdiag_manager.wire.api.v1 import manager_pb2

    protocol = hashlib.sha256(manager_pb2.DESCRIPTOR.serialized_pb).hexdigest()[:6]
    version = "".join(c if c.isalnum() else "-" for c in __version__.lower())
    return f"kdiag-{version}-{protocol}"


@dataclass(frozen=True)
class ManagerImage:
    """Image, pull policy and privileges of the injected manager (flag, runbook or env)."""

    image: str = ""
    pull_policy: str = ""
    privileged: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def resolved(self) -> ManagerImage:
        """With the defaults of :mod:`kdiag.kube.imageref` (environment, settings file)."""
        return ManagerImage(
            image=imageref.manager_image(self.image).value,
            pull_policy=imageref.pull_policy(self.pull_policy).value,
            privileged=self.privileged, timeout=self.timeout)


@dataclass(frozen=True)
class Manager:
    """A running manager in a pod: its container, the token to use and where it listens."""

    container: str
    token: str
    port: int
    reused: bool
    first_line: dict[str, Any]


def container_spec(name: str, target: str, token_hash: str, image: ManagerImage,
                   target_id: str = "") -> dict[str, Any]:
    """The ephemeral container (API field names, as the PATCH body wants them).

    ``target_id``, the target container's runtime ID, lets the manager find the target's
    processes when PID 1 is not one of them (a pod with ``shareProcessNamespace``).
    """
    security: dict[str, Any] = {"privileged": True} if image.privileged else {
        "capabilities": {"add": list(CAPABILITIES)}}
    env = [{"name": "KDIAG_TOKEN_SHA256", "value": token_hash}]
    if target_id:
        env.append({"name": "KDIAG_TARGET_CONTAINER_ID", "value": target_id})
    return {
        "name": name,
        "image": image.image,
        "imagePullPolicy": image.pull_policy,
        "targetContainerName": target,
        "env": env,
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def reusable_containers(pod: Any, target: str) -> list[str]:
    """Running managers of this kdiag version targeting ``target``, newest first."""
    prefix = name_prefix()
    specs = {c.name: c for c in pod.spec.ephemeral_containers or []}
    running = {s.name for s in pod.status.ephemeral_container_statuses or []
               if s.state is not None and s.state.running is not None}
    names = [n for n, c in specs.items()
             if (n == prefix or n.startswith(prefix + "-")) and n in running
             and c.target_container_name == target]
    return list(reversed(names))


class Injector:
    """Finds or starts the manager in one pod."""

    def __init__(self, core: Any, server: str, image: ManagerImage,
                 cache: TokenCache | None = None) -> None:
        self.core = core
        self.server = server
        self.image = image.resolved()
        self.cache = cache or TokenCache()

    def _call(self, verb: str, resource: str, ref: PodRef) -> Any:
        return api_call(Call(verb, resource, ref.namespace, ref.name, self.server))

    def candidates(self, ref: PodRef) -> list[tuple[str, str]]:
        """(container, token) of running managers this machine can reuse, newest first."""
        with self._call("get", "pods", ref):
            pod = self.core.read_namespaced_pod(ref.name, ref.namespace, _request_timeout=30)
        found = []
        for name in reusable_containers(pod, ref.container):
            token = self.cache.get(self.server, ref.uid, name)
            if token:
                found.append((name, token))
        return found

    def forget(self, ref: PodRef, container: str) -> None:
        """A cached manager did not work (restarted pod, foreign token): never try it again."""
        self.cache.forget(self.server, ref.uid, container)

    def inject(self, ref: PodRef) -> tuple[str, str]:
        """Add a new manager container; returns (its name, its token) once it runs."""
        token = new_token()
        name = f"{name_prefix()}-{secrets.token_hex(3)}"
        body = {"spec": {"ephemeralContainers": [
            container_spec(name, ref.container, token_sha256(token), self.image,
                           ref.container_id)]}}
        with self._call("patch", "pods/ephemeralcontainers", ref):
            # A strategic merge patch appends to the list (keyed by name).
            pod = self.core.patch_namespaced_pod_ephemeralcontainers(
                ref.name, ref.namespace, body, _request_timeout=30)
        if pod.metadata.uid != ref.uid:
            raise PodGone(f"pod {ref.namespace}/{ref.name} was replaced while kdiag ran")
        self.cache.put(self.server, ref.uid, name, token)
        self.wait_running(ref, name, pod)
        return name, token

    def wait_running(self, ref: PodRef, name: str, pod: Any) -> None:
        """Watch the pod until container ``name`` runs; TargetError with the reason if it
        cannot (image pull error, creation error, terminated, pod gone, timeout)."""
        from kubernetes import watch

        deadline = time.monotonic() + self.image.timeout
        if _check_state(pod, ref, name, self):
            return
        version = pod.metadata.resource_version
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TargetError(f"the manager in {ref.describe()} did not start within "
                                  f"{self.image.timeout:g}s ({_waiting_reason(pod, name)})")
            w = watch.Watch()
            with self._call("watch", "pods", ref):
                for event in w.stream(self.core.list_namespaced_pod, ref.namespace,
                                      field_selector=f"metadata.name={ref.name}",
                                      resource_version=version,
                                      timeout_seconds=max(1, int(left + 0.999)),
                                      _request_timeout=left + 10):
                    if event["type"] == "DELETED":
                        w.stop()
                        raise PodGone(f"pod {ref.namespace}/{ref.name} was deleted")
                    if event["type"] == "ERROR":
                        break  # e.g. resource version too old: list again
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    if _check_state(pod, ref, name, self):
                        w.stop()
                        return
            with self._call("get", "pods", ref):
                pod = self.core.read_namespaced_pod(ref.name, ref.namespace, _request_timeout=30)
            version = pod.metadata.resource_version
            if _check_state(pod, ref, name, self):
                return

    def logs_tail(self, ref: PodRef, name: str, lines: int = 5) -> str:
        """The last log lines of a container (for error messages), '' if unavailable."""
        try:
            text = read_pod_log(self.core, ref.name, ref.namespace, container=name,
                                tail_lines=lines, _request_timeout=10)
        except Exception:
            return ""
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())

    def first_line(self, ref: PodRef, name: str) -> dict[str, Any]:
        """The manager's machine-readable first log line (follows the log until it comes)."""
        with self._call("get", "pods/log", ref):
            resp = self.core.read_namespaced_pod_log(
                ref.name, ref.namespace, container=name, follow=True, _preload_content=False,
                _request_timeout=self.image.timeout)
        other: list[str] = []
        try:
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    first = _parse_first(raw)
                    if first is not None:
                        return _checked(first, ref)
                    other.append(raw.decode(errors="replace").strip())
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"reading the manager's log in {ref.describe()}: {exc}") from None
        finally:
            resp.release_conn()
            resp.close()
        first = _parse_first(buf)
        if first is not None:
            return _checked(first, ref)
        said = " | ".join(line for line in other if line)[-300:] or "no output"
        raise TargetError(f"the manager in {ref.describe()} printed no address: {said}")


def _parse_first(raw: bytes) -> dict[str, Any] | None:
    """The ``kdiag_manager`` object of a log line, or None (stderr lines come first too)."""
    raw = raw.strip()
    if not raw.startswith(b"{"):
        return None
    try:
        first = json.loads(raw)["kdiag_manager"]
    except (ValueError, KeyError, TypeError):
        return None
    return dict(first) if isinstance(first, dict) else None


def _checked(first: dict[str, Any], ref: PodRef) -> dict[str, Any]:
    if "error" in first:
        raise TargetError(f"the manager in {ref.describe()} failed to start: {first['error']}")
    return first


def _waiting_reason(pod: Any, name: str) -> str:
    for status in pod.status.ephemeral_container_statuses or []:
        if status.name == name and status.state is not None and status.state.waiting:
            return status.state.waiting.reason or "waiting"
    return "not started"


def _check_state(pod: Any, ref: PodRef, name: str, injector: Injector) -> bool:
    """True once ``name`` runs; raises TargetError on states that will not lead there."""
    if pod.metadata.deletion_timestamp is not None:
        raise PodGone(f"pod {ref.namespace}/{ref.name} is being deleted")
    if pod.status.phase not in ("Running", "Pending"):
        raise PodGone(f"pod {ref.namespace}/{ref.name} is {pod.status.phase}")
    for status in pod.status.ephemeral_container_statuses or []:
        if status.name != name or status.state is None:
            continue
        state = status.state
        if state.running is not None:
            return True
        if state.terminated is not None:
            t = state.terminated
            tail = injector.logs_tail(ref, name) or t.message or ""
            raise TargetError(f"the manager in {ref.describe()} exited with code {t.exit_code}"
                              f" ({t.reason or 'terminated'}){': ' + tail if tail else ''}")
        if state.waiting is not None and state.waiting.reason in FATAL_WAITING:
            w = state.waiting
            message = " ".join((w.message or "").split())[:300]
            raise TargetError(f"the manager in {ref.describe()} cannot start: {w.reason}"
                              f"{': ' + message if message else ''} (image "
                              f"{injector.image.image}, pull policy {injector.image.pull_policy})")
    return False

"""Kubernetes API failures as one-line, exit-code-3 errors.

The API server's own wording is the most precise source for an RBAC denial (it names the user,
verb, resource and namespace), so it is parsed when present; the call's own verb/resource is
the fallback.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kdiag.errors import TargetError

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<ns>[^"]*)")?')


class ClusterUnreachable(TargetError):
    """The API server cannot be reached (connection refused, DNS, TLS, timeout)."""


class PodGone(TargetError):
    """The target pod no longer exists (or is no longer running)."""


class RbacDenied(TargetError):
    """The API server refused a call for lack of permission."""


class AdmissionRefused(TargetError):
    """An admission plugin (Pod Security, a policy webhook) refused the object."""


class EphemeralUnsupported(TargetError):
    """The cluster has no ephemeral containers (too old, or the feature is turned off)."""


@dataclass(frozen=True)
class Call:
    """What was being attempted, for messages: ``patch pods/ephemeralcontainers``."""

    verb: str
    resource: str
    namespace: str
    name: str = ""
    server: str = ""
    user: str = ""


def _status(exc: Any) -> tuple[int, str, dict[str, Any]]:
    """(HTTP status, message, Status object) of an ApiException."""
    body: dict[str, Any] = {}
    raw = getattr(exc, "body", None)
    if raw:
        with contextlib.suppress(ValueError, TypeError):
            parsed = json.loads(raw)
            body = parsed if isinstance(parsed, dict) else {}
    message = str(body.get("message") or getattr(exc, "reason", "") or exc).strip()
    return int(getattr(exc, "status", 0) or 0), message, body


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rbac_message(message: str, call: Call) -> str:
    """``RBAC: cannot patch pods/ephemeralcontainers in namespace ns (as user)``."""
    match = _FORBIDDEN.search(message)
    if match:
        group = match["group"]
        resource = match["resource"] if not group else f"{match['resource']}.{group}"
        where = f" in namespace {match['ns']}" if match["ns"] else " cluster-wide"
        return f"RBAC: cannot {match['verb']} {resource}{where} (as {match['user']})"
    user = f" (as {call.user})" if call.user else ""
    return f"RBAC: cannot {call.verb} {call.resource} in namespace {call.namespace}{user}"


def translate(exc: BaseException, call: Call) -> TargetError:
    """The one-line TargetError for an exception raised by a Kubernetes API call."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status, message, body = _status(exc)
        if status == 0:  # websocket calls wrap connection failures as status 0
            return _transport(message, call)
        if status == 403 and "violates PodSecurity" in message:
            return AdmissionRefused(f"{call.verb} {call.resource} {call.namespace}/{call.name}: "
                                    f"{_one_line(message, 500)}")
        if status == 403:
            return RbacDenied(rbac_message(message, call))
        if status == 401:
            return TargetError(f"cluster {call.server}: credentials rejected (401 Unauthorized)")
        if status == 404:
            return _not_found(message, body, call)
        if status == 422 and "ephemeral" in message.lower():
            return EphemeralUnsupported(f"ephemeral containers rejected: {_one_line(message)}")
        return TargetError(f"{call.verb} {call.resource} {call.namespace}/{call.name}: "
                           f"HTTP {status}: {_one_line(message)}")
    return _transport(str(exc), call)


def _not_found(message: str, body: dict[str, Any], call: Call) -> TargetError:
    details = body.get("details") or {}
    if call.resource.endswith("ephemeralcontainers") and not details.get("name"):
        # The pod exists but the subresource does not: the API server predates it.
        return EphemeralUnsupported(
            f"the cluster at {call.server} does not support ephemeral containers "
            "(Kubernetes 1.25 or later is needed)")
    if call.resource.startswith("pods") and call.name:
        return PodGone(f"pod {call.namespace}/{call.name} not found (deleted?)")
    if call.resource.startswith("namespaces") or "namespaces" in message:
        return TargetError(f"namespace {call.namespace} not found")
    return TargetError(f"{call.resource} {call.namespace}/{call.name}: not found")


def _transport(message: str, call: Call) -> TargetError:
    """Connection-level failures (urllib3/websocket/ssl) as 'cluster unreachable'."""
    reason = _one_line(message, 160)
    lowered = message.lower()
    if "certificate" in lowered or "ssl" in lowered:
        return ClusterUnreachable(f"cluster unreachable: {call.server} (TLS: {reason})")
    for needle, short in (("connection refused", "connection refused"),
                          ("timed out", "timed out"), ("name or service not known",
                                                       "unknown host"),
                          ("no route to host", "no route to host"),
                          ("network is unreachable", "network unreachable")):
        if needle in lowered:
            return ClusterUnreachable(f"cluster unreachable: {call.server} ({short})")
    return ClusterUnreachable(f"cluster unreachable: {call.server} ({reason})")


def is_transport_error(exc: BaseException) -> bool:
    """True for the exceptions a dead API server produces (not HTTP error answers)."""
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError)


@contextlib.contextmanager
def api_call(call: Call) -> Iterator[None]:
    """Turn Kubernetes client exceptions raised inside into TargetErrors for ``call``."""
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except TargetError:
        raise
    except ApiException as exc:
        raise translate(exc, call) from None
    except Exception as exc:
        if is_transport_error(exc):
            raise translate(exc, call) from None
        raise

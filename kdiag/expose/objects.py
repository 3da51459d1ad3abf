"""The expose pod and its Service, as API bodies (plain dicts in API field names).

The pod runs the manager image as its only container, with ``--exit-when-idle`` (it exits,
``restartPolicy: Never``, once no redirect has run for :data:`IDLE_EXIT_SECONDS`), only the
NET_ADMIN capability (its redirect's nftables rules), the SHA-256 of the session token, and a
TCP readiness probe on the exposed port: the kubelet's probe travels the whole way to the local
server, so the pod is Ready — and the Service has an endpoint — only while the tunnel carries
connections to something listening on this machine.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from kdiag.kube.inject import ManagerImage

ROLE = "expose"
POD_LABEL = "kdiag.dev/expose-pod"
"""Selects the one pod behind an exposed Service (its own name: unique per exposure)."""
CONTAINER = "manager"
IDLE_EXIT_SECONDS = 15
"""How long the pod's manager waits without a redirect (from its start, or since the last one
ended: the client gone) before it exits."""
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
"""A Service name (an RFC 1035 label)."""


def check_name(service: str) -> str:
    """``service`` if it can name a Service; ValueError saying why not."""
    if not NAME_RE.fullmatch(service):
        raise ValueError(f"service {service!r}: a Service name is 1-63 lowercase letters, "
                         "digits and '-', starting with a letter and ending with a letter or "
                         "digit")
    return service


def pod_name(service: str) -> str:
    """``kdiag-expose-<service>-<6 hex>`` (cut to fit a name's 63 characters)."""
    return f"kdiag-expose-{service[:42].rstrip('-')}-{secrets.token_hex(3)}"


def pod_body(name: str, port: int, image: ManagerImage, token_hash: str) -> dict[str, Any]:
    """The expose pod: the manager serving ``port`` (see the module's docstring)."""
    return {
        "metadata": {"name": name, "labels": {POD_LABEL: name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [{
                "name": CONTAINER,
                "image": image.image,
                "imagePullPolicy": image.pull_policy,
                "args": ["--exit-when-idle", str(IDLE_EXIT_SECONDS)],
                "env": [{"name": "KDIAG_TOKEN_SHA256", "value": token_hash}],
                "ports": [{"name": "exposed", "containerPort": port, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1,
                                   "failureThreshold": 1, "timeoutSeconds": 2},
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "48Mi"}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
    }


def service_body(service: str, port: int, pod: str) -> dict[str, Any]:
    """The Service ``service``: its ``port`` to the same port of the expose pod."""
    return {"metadata": {"name": service},
            "spec": {"selector": {POD_LABEL: pod},
                     "ports": [{"name": "exposed", "port": port, "targetPort": port,
                                "protocol": "TCP"}]}}

"""A local command connected to cluster Services without any target pod: ``kdiag connect --
COMMAND`` and a ``run`` step's ``connect:`` field.

The Services are forwarded on their loopback addresses (:mod:`.setup`) and the command sees a
hosts file naming them at ``/etc/hosts`` in a private mount namespace of its own: nothing else
on this machine changes. No pod's resolv.conf is read (there is no target), so the cluster
domain is ``cluster_domain`` (default ``cluster.local``).

Root is required: the mount namespace is made directly (a user namespace would do for the
names, but not for the Service ports below 1024 — 80 and 443, the most common ones — which
would then be left out or fail), and a user who is not root gets one line naming the way that
needs no privilege: ``kdiag forward`` and the program pointed at the local port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdiag.errors import EnvironmentProblem

from . import hosts
from .setup import connect

if TYPE_CHECKING:
    from kdiag.context.prepare import Prepared
    from kdiag.kube.config import KubeConfig


@dataclass(frozen=True)
class Wanted:
    """Which Services, where: ``services`` empty means every Service of ``namespace``."""

    namespace: str | None = None
    services: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    cluster_domain: str = hosts.DEFAULT_DOMAIN


def root_problem(namespace: str | None, services: tuple[str, ...]) -> str | None:
    """Why this process cannot connect a command (None as root), with the alternative."""
    if os.geteuid() == 0:
        return None
    first = services[0].split(".")[0] if services else "NAME"
    where = f" -n {namespace}" if namespace else ""
    return (f"connect needs root (a private mount namespace for the command's /etc/hosts, and "
            f"Service ports below 1024); without root, forward the Service and point the "
            f"program at the local port: kdiag forward{where} svc/{first} PORT:LOCALPORT, then "
            f"e.g. {first.upper().replace('-', '_')}_URL=http://127.0.0.1:LOCALPORT")


def open_connection(wanted: Wanted, env: dict[str, str]) -> Prepared:
    """Forward the Services ``wanted`` names and write their hosts file; the command's
    context, with ``env`` as its environment and ``result`` ``{namespace, services}``
    (EnvironmentProblem: not root, cluster unreachable, a named Service not reachable)."""
    from kdiag.context.folder import PrivateFolder
    from kdiag.context.prepare import Prepared
    from kdiag.kube.config import KubeOptions, load
    from kdiag.launch.view import View

    problem = root_problem(wanted.namespace, wanted.services)
    if problem:  # before anything is read: the kubeconfig may not even be readable
        raise EnvironmentProblem(problem)
    kube: KubeConfig = load(KubeOptions(wanted.kubeconfig, wanted.context, wanted.namespace))
    connected = connect(kube, kube.namespace, wanted.services, wanted.cluster_domain)
    prepared = Prepared(env=env, view=View("namespace"), connection=connected.connection,
                        notes=list(connected.notes))
    try:
        prepared.folder = PrivateFolder.make()
        hosts_path = prepared.folder.path / "hosts"
        hosts_path.write_text(connected.hosts_file)
        os.chmod(hosts_path, 0o444)
    except BaseException:
        prepared.close()
        raise
    prepared.binds.append((str(hosts_path), "/etc/hosts"))
    prepared.result = {"namespace": kube.namespace, "services": connected.connection.summary()}
    return prepared


SCHEMA: dict[str, object] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["services"],
    "description": "Cluster Service names for this command only, without a target pod: each "
                   "Service on a loopback address forwarded to a pod behind it, named in a "
                   "hosts file the command alone sees (needs root).",
    "properties": {
        "services": {"anyOf": [{"type": "boolean", "const": True},
                               {"type": "array", "minItems": 1,
                                "items": {"type": "string", "minLength": 1}}],
                     "description": "A list of NAME or NAME.NAMESPACE, or true: every Service "
                                    "of the namespace."},
        "namespace": {"type": "string", "description": "Default: the runbook's Kubernetes "
                      "target's, else the kubeconfig context's."},
        "context": {"type": "string", "description": "The kubeconfig context (default: the "
                    "Kubernetes target's, else the current one)."},
        "kubeconfig": {"type": "string", "description": "A kubeconfig file (default: the "
                       "Kubernetes target's, else $KUBECONFIG, ~/.kube/config)."},
        "cluster_domain": {"type": "string", "description": "The cluster's DNS domain "
                           "(default cluster.local)."},
    },
}


def wanted_from(body: dict[str, object], target: dict[str, object]) -> Wanted:
    """A ``run`` step's rendered ``connect:`` mapping; what it leaves out comes from the
    runbook's Kubernetes ``target`` (its spec: nothing is opened or injected)."""
    if target.get("kind") != "kubernetes":
        target = {}

    def pick(name: str) -> str | None:
        value = body.get(name) or target.get(name)
        return str(value) if value else None

    services = body.get("services")
    listed = tuple(str(s) for s in services) if isinstance(services, list) else ()
    return Wanted(pick("namespace"), listed, pick("kubeconfig"), pick("context"),
                  str(body.get("cluster_domain") or hosts.DEFAULT_DOMAIN))

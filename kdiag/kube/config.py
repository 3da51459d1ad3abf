"""Kubeconfig handling as kubectl users expect it.

Order: ``--kubeconfig`` (or the runbook's ``kubeconfig``), else ``$KUBECONFIG`` (a
colon-separated list, merged), else ``~/.kube/config``, else the in-cluster service account
(kdiag running as a CI job inside the cluster). ``--context`` picks a context; the namespace is
the explicit one, else the context's, else the in-cluster pod's, else ``default``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdiag.errors import TargetError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_MALFORMED = (TypeError, AttributeError, KeyError, yaml.YAMLError)
"""What the client library raises reading a kubeconfig that is not YAML or of the wrong shape
(``contexts: 7``): a clear line naming the file, not a traceback."""


@dataclass(frozen=True)
class KubeOptions:
    """What the user chose (flags, runbook target, environment)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass
class KubeConfig:
    """A loaded client configuration and the facts kdiag reports about it."""

    namespace: str
    server: str
    context: str | None
    user: str
    in_cluster: bool
    _load: Callable[[Any], None] = field(repr=False)
    _configuration: Any = field(default=None, repr=False)

    def configuration(self) -> Any:
        """A fresh ``kubernetes.client.Configuration`` (each ApiClient gets its own)."""
        from kubernetes import client

        conf = client.Configuration()
        self._load(conf)
        # Fail fast on a dead API server instead of urllib3's three silent retries.
        conf.retries = 1
        return conf

    def api_client(self) -> Any:
        """A new ApiClient for ordinary (non-streaming) calls."""
        from kubernetes import client

        if self._configuration is None:
            self._configuration = self.configuration()
        return client.ApiClient(configuration=self._configuration)

    def core(self) -> Any:
        """A CoreV1Api on a new ApiClient."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def stream_core(self) -> Any:
        """A CoreV1Api on an ApiClient of its own, for ``kubernetes.stream`` (exec,
        port-forward): ``stream()`` swaps ``call_api`` on its client, which is not thread-safe
        with calls sharing that client."""
        from kubernetes import client

        return client.CoreV1Api(client.ApiClient(configuration=self.configuration()))


def _kubeconfig_files(explicit: str | None) -> str | None:
    """The kubeconfig file(s) to use, or None when there is none (maybe in-cluster)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise TargetError(f"kubeconfig {explicit}: no such file")
        return str(path)
    env = os.environ.get("KUBECONFIG", "")
    existing = [p for p in env.split(os.pathsep) if p and Path(p).expanduser().exists()]
    if existing:
        return os.pathsep.join(existing)
    if env:
        raise TargetError(f"KUBECONFIG={env}: no such file")
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


def in_cluster_available() -> bool:
    """True when kdiag runs in a pod with a service account token mounted."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and IN_CLUSTER_TOKEN.exists()


def load(options: KubeOptions) -> KubeConfig:
    """Load the configuration ``options`` names (TargetError with one line if it cannot)."""
    from kubernetes import config as kconfig
    from kubernetes.config.config_exception import ConfigException

    files = _kubeconfig_files(options.kubeconfig)
    if files is None:
        if not in_cluster_available():
            raise TargetError("no kubeconfig: set KUBECONFIG, pass --kubeconfig, or create "
                              "~/.kube/config")
        return _load_in_cluster(options)
    try:
        contexts, active = _contexts(files, options.context)
    except (ConfigException, OSError, ValueError, *_MALFORMED) as exc:
        if not options.context and "current-context" in str(exc):
            raise TargetError(f"kubeconfig {files}: no current context; pass --context") from None
        raise TargetError(f"kubeconfig {files}: {exc}") from None
    chosen = active
    if options.context:
        chosen = next((c for c in contexts or [] if c.get("name") == options.context), None)
        if chosen is None:
            names = ", ".join(str(c.get("name")) for c in contexts or []) or "none"
            raise TargetError(f"kubeconfig {files}: no context {options.context!r} "
                              f"(contexts: {names})")
    if not chosen:
        raise TargetError(f"kubeconfig {files}: no current context; pass --context")
    ctx = chosen.get("context") or {}
    name = str(chosen.get("name"))

    def _apply(conf: Any) -> None:
        try:
            kconfig.load_kube_config(config_file=files, context=name,
                                     client_configuration=conf, persist_config=False)
        except (ConfigException, OSError, ValueError, *_MALFORMED) as exc:
            raise TargetError(f"kubeconfig {files}, context {name}: {exc}") from None

    result = KubeConfig(namespace=options.namespace or ctx.get("namespace") or "default",
                        server="", context=name, user=str(ctx.get("user") or "?"),
                        in_cluster=False, _load=_apply)
    result.server = result.configuration().host
    return result


def _contexts(files: str, wanted: str | None) -> tuple[list[dict[str, Any]], Any]:
    """(every context, the active one) of ``files``. A kubeconfig without a current-context
    serves a named context, as kubectl's ``--context`` does (the client's own listing insists
    on a current-context)."""
    from kubernetes.config import kube_config

    if not wanted:
        return kube_config.list_kube_config_contexts(config_file=files)
    merged = kube_config.KubeConfigMerger(files).config
    if merged is None:
        return [], None
    contexts = [dict(getattr(c, "value", c)) for c in merged.value.get("contexts") or []]
    return contexts, next((c for c in contexts if c.get("name") == merged.value.get(
        "current-context")), None)


def _load_in_cluster(options: KubeOptions) -> KubeConfig:
    from kubernetes import config as kconfig
    from kubernetes.config.config_exception import ConfigException

    def _apply(conf: Any) -> None:
        try:
            kconfig.load_incluster_config(client_configuration=conf)
        except ConfigException as exc:
            raise TargetError(f"in-cluster configuration: {exc}") from None

    try:
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
    except OSError:
        namespace = "default"
    result = KubeConfig(namespace=options.namespace or namespace or "default", server="",
                        context=None, user="the pod's service account", in_cluster=True,
                        _load=_apply)
    result.server = result.configuration().host
    return result

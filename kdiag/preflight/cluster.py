"""The cluster checks: reachable (and its version, and who kdiag is there), ephemeral containers,
every verb the run needs (:mod:`.needs`, asked with :mod:`.access`), and the namespace's Pod
Security level against the manager (:mod:`.podsecurity`). Nothing here changes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.config import KubeConfig, KubeOptions, load
from kdiag.kube.errors import Call, api_call
from kdiag.preflight import access, podsecurity
from kdiag.preflight.checks import Check
from kdiag.preflight.demand import Demand
from kdiag.preflight.needs import known_way, needs

EPHEMERAL_SINCE = (1, 25)


@dataclass
class Session:
    """What the first checks learnt, for the next ones."""

    kube: KubeConfig
    api: Any  # kubernetes.client.ApiClient
    namespace: str
    version: tuple[int, int] | None = None
    git_version: str = ""
    user: str = ""

    def call(self, verb: str, resource: str, name: str = "") -> Any:
        """``api_call`` for a call in this namespace (TargetError on failure)."""
        return api_call(Call(verb, resource, self.namespace, name, self.kube.server, self.user))


def connect(demand: Demand, identify: bool = True) -> tuple[Session | None, Check]:
    """Load the configuration, reach the API server; the ``cluster`` check (``identify``: ask
    who kdiag is there now, else only when a refusal needs the name)."""
    options = demand.options
    try:
        kube = load(KubeOptions(kubeconfig=options.get("kubeconfig"),
                                context=options.get("context"),
                                namespace=options.get("namespace")))
        session = Session(kube, kube.api_client(), kube.namespace)
        from kubernetes import client

        with session.call("get", "version"):
            info = client.VersionApi(session.api).get_code(_request_timeout=10)
    except TargetError as exc:
        return None, Check("cluster", "fail", str(exc), fix="check --kubeconfig/--context "
                           "($KUBECONFIG) and that the API server answers from here")
    session.git_version = str(info.git_version)
    session.version = _version(str(info.major), str(info.minor))
    if identify:
        session.user = whoami(session)
    who = f" as {session.user}" if session.user else ""
    return session, Check("cluster", "ok", f"{kube.server}: Kubernetes {session.git_version}{who}"
                          f", namespace {session.namespace}")


def _version(major: str, minor: str) -> tuple[int, int] | None:
    digits = [re.match(r"\d+", part) for part in (major, minor)]  # "1", "34+" on some clouds
    if not all(digits):
        return None
    return int(digits[0].group()), int(digits[1].group())  # type: ignore[union-attr]


def whoami(session: Session) -> str:
    """The user name the API server sees ('' when it cannot say: before Kubernetes 1.28)."""
    from kubernetes import client

    try:
        api: Any = client.AuthenticationV1Api(session.api)
        review = api.create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            _request_timeout=10)
        return str(review.status.user_info.username or "")
    except Exception:  # an older server, or the call is not allowed: messages go without it
        return ""


def ephemeral_check(session: Session, discover: bool = True) -> Check:
    """Whether the API server serves ``pods/ephemeralcontainers`` (Kubernetes 1.25+): from API
    discovery, or (``discover`` False, quicker) from the version alone."""
    from kubernetes import client

    if not discover and session.version is not None:
        served = session.version >= EPHEMERAL_SINCE
        return Check("ephemeral containers", "ok" if served else "fail",
                     "supported" if served else f"Kubernetes {session.git_version} has none",
                     fix="" if served else "Kubernetes 1.25 or later is needed")
    try:
        with session.call("get", "api resources"):
            resources = client.CoreV1Api(session.api).get_api_resources(_request_timeout=10)
        served = any(r.name == "pods/ephemeralcontainers" for r in resources.resources)
    except TargetError as exc:
        return Check("ephemeral containers", "unknown", f"API discovery failed: {exc}")
    if served and (session.version is None or session.version >= EPHEMERAL_SINCE):
        return Check("ephemeral containers", "ok", "supported")
    return Check("ephemeral containers", "fail",
                 f"Kubernetes {session.git_version} does not serve pods/ephemeralcontainers",
                 fix="Kubernetes 1.25 or later is needed (or a way in that does not use them)")


def rbac_checks(session: Session, demand: Demand) -> list[Check]:
    """One check per verb the run needs, named as a denial reads."""
    if not known_way(demand):
        return [Check(f"way {demand.way}", "unknown", "kdiag doctor does not know what this "
                      "way in needs", blocking=False)]
    wanted = needs(demand, session.version)
    try:
        answers = access.ask(session.api, session.kube.server, session.namespace,
                             [n.access for n in wanted])
    except TargetError as exc:
        return [Check("RBAC", "unknown", f"cannot ask the API server: {exc}", blocking=False)]
    checks = []
    if not session.user and not all(a.allowed for a in answers):
        session.user = whoami(session)
    who = f" (as {session.user})" if session.user else ""
    for need, answer in zip(wanted, answers, strict=True):
        where = f"in namespace {session.namespace}"
        if answer.allowed:
            checks.append(Check(f"RBAC: {need.access} {where}", "ok", blocking=not need.optional,
                                needed_by=need.reasons))
            continue
        checks.append(Check(
            f"RBAC: cannot {need.access} {where}{who}", "fail" if not need.optional else "warn",
            answer.reason, blocking=not need.optional, needed_by=need.reasons,
            fix=f"ask the cluster admin for a Role in {session.namespace} with the rule "
                f"{need.access.rule()} (bound to you)"))
    return checks


def pod_security_check(session: Session, demand: Demand, capabilities: tuple[str, ...]
                       ) -> Check:
    """The namespace's enforced Pod Security level against the manager's security context."""
    from kubernetes import client

    name = f"pod security (namespace {session.namespace})"
    privileged = bool(demand.options.get("privileged")) or demand.way == "node"
    fits = podsecurity.fitting_level(capabilities, privileged)
    try:
        core: Any = client.CoreV1Api(session.api)
        with session.call("get", "namespaces", session.namespace):
            ns = core.read_namespace(session.namespace, _request_timeout=10)
    except TargetError as exc:
        return Check(name, "unknown", f"cannot read the namespace's labels ({exc})",
                     fix=f"the manager needs the {fits!r} Pod Security level: ask the cluster "
                         "admin which level the namespace enforces", blocking=False)
    levels = podsecurity.Namespace.from_labels(session.namespace, ns.metadata.labels).levels
    enforce = levels.get("enforce")
    if enforce is None:
        return Check(name, "ok", "no enforce label: the cluster's default level applies "
                     "(privileged unless the admin configured another)")
    refused = podsecurity.violations(enforce, capabilities, privileged)
    if refused:
        return Check(name, "fail",
                     f"enforces {enforce!r}, which refuses the manager's {' and '.join(refused)}"
                     ": the manager cannot start there",
                     fix=f"the manager needs the {fits!r} level: ask the cluster admin to label "
                         f"the namespace {podsecurity.LABEL}enforce={fits} (or exempt it), or "
                         "debug the workload in a namespace that allows it")
    warned = [m for m in ("warn", "audit")
              if m in levels and podsecurity.violations(levels[m], capabilities, privileged)]
    if warned:
        return Check(name, "warn", f"enforces {enforce!r}; {' and '.join(warned)} at a "
                     "stricter level: injecting the manager will be warned about or audited",
                     blocking=False)
    return Check(name, "ok", f"enforces {enforce!r}")


def dry_run_injection(session: Session, pod: Any, spec: dict[str, Any]) -> Check:
    """Add the manager container in a server-side dry run: admission (Pod Security, webhooks)
    answers as it would for real, and nothing is stored."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from kdiag.kube.errors import is_transport_error, translate

    name = "manager admission (dry run)"
    where = f"pod {session.namespace}/{pod.metadata.name}"
    body = {"spec": {"ephemeralContainers": [spec]}}
    try:
        client.CoreV1Api(session.api).patch_namespaced_pod_ephemeralcontainers(
            pod.metadata.name, session.namespace, body, dry_run="All", _request_timeout=15)
    except ApiException as exc:
        message = _api_message(exc)
        if exc.status == 403 and "PodSecurity" in message:  # admission, not RBAC
            return Check(name, "fail", f"{where}: the manager cannot start there: {message}",
                         fix="the manager needs the 'privileged' Pod Security level: ask the "
                             "cluster admin to label the namespace "
                             f"{podsecurity.LABEL}enforce=privileged (or exempt it)")
        call = Call("patch", "pods/ephemeralcontainers", session.namespace, pod.metadata.name,
                    session.kube.server, session.user)
        return Check(name, "fail", f"{where}: {translate(exc, call)}")
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        return Check(name, "unknown", f"{where}: {exc}", blocking=False)
    return Check(name, "ok", f"{where} admits the manager")


def _api_message(exc: Any) -> str:
    """The Status message of an API error answer."""
    import json

    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(message or exc.reason or exc).split())

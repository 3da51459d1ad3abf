"""Running the checks a demand calls for, in order: doctor's full set, or the ones that can
refuse a run (``full=False``: what ``kdiag run`` asks before it changes anything)."""

from __future__ import annotations

from typing import Any

from kdiag.errors import TargetError
from kdiag.preflight.checks import Check
from kdiag.preflight.cluster import (
    Session,
    connect,
    dry_run_injection,
    ephemeral_check,
    pod_security_check,
    rbac_checks,
)
from kdiag.preflight.demand import Demand
from kdiag.preflight.needs import known_way, needs


def examine(demand: Demand, *, full: bool = True) -> list[Check]:
    """The checks for ``demand`` (a cluster's or this host's)."""
    if demand.kind == "node":
        from kdiag.preflight.host import host_checks

        return host_checks(demand)
    if demand.kind not in ("", "kubernetes"):
        return [Check(f"target {demand.kind}", "unknown", "kdiag doctor does not know this "
                      "kind of target", blocking=False)]
    if demand.steps is not None and known_way(demand) and not needs(demand):
        return [Check("cluster", "skipped", "no step of this runbook uses the cluster",
                      blocking=False)]
    session, reached = connect(demand, identify=full)
    checks = [reached]
    if session is None:
        return checks
    if demand.way == "ephemeral":
        checks.append(ephemeral_check(session, discover=full))
    checks.extend(rbac_checks(session, demand))
    from kdiag.kube.inject import CAPABILITIES

    checks.append(pod_security_check(session, demand, CAPABILITIES))
    refused = any(c.refuses for c in checks)
    if full:
        checks.extend(_target_checks(session, demand, refused))
    elif not refused and checks[-1].status == "unknown" and demand.way == "ephemeral":
        # The namespace's level is unreadable: let admission answer, in a dry run.
        pod, _ = _target_pod(session, demand)
        if pod is not None:
            checks.append(dry_run_injection(session, pod, _manager_spec(demand, pod)))
    return checks


def _target_checks(session: Session, demand: Demand, refused: bool) -> list[Check]:
    """The target pod, the image on its node, and a dry run of the injection (when nothing
    already says it would be refused)."""
    from kdiag.preflight.image import image_check

    pod, found = _target_pod(session, demand)
    checks = [found] if found is not None else []
    checks.append(image_check(session, demand, pod))
    if pod is not None and demand.way == "ephemeral" and not refused:
        checks.append(dry_run_injection(session, pod, _manager_spec(demand, pod)))
    return checks


def _target_pod(session: Session, demand: Demand) -> tuple[Any | None, Check | None]:
    """The pod the target names (None, and no check, when it names none)."""
    from kubernetes import client

    from kdiag.kube.pods import PodSelector, resolve

    options = demand.options
    pod_name, selector = options.get("pod"), options.get("selector")
    if not pod_name and not selector:
        return None, None
    core = client.CoreV1Api(session.api)
    wanted = PodSelector(namespace=session.namespace, pod=pod_name, selector=selector,
                         container=options.get("container"))
    try:
        ref = resolve(core, wanted, session.kube.server)[0]
        with session.call("get", "pods", ref.name):
            pod = core.read_namespaced_pod(ref.name, ref.namespace, _request_timeout=10)
    except TargetError as exc:
        return None, Check("target pod", "fail", str(exc),
                           fix="name a running pod (--pod, -l, -n)")
    return pod, Check("target pod", "ok", f"{ref.describe()} on node {ref.node or '?'}")


def _manager_spec(demand: Demand, pod: Any) -> dict[str, Any]:
    """The ephemeral container kdiag would add (token hash and name made up: a dry run)."""
    from kdiag.kube.inject import ManagerImage, container_spec, name_prefix
    from kdiag.kube.pods import default_container

    options = demand.options
    image = ManagerImage(image=options.get("image") or "",
                         pull_policy=options.get("image_pull_policy") or "",
                         privileged=bool(options.get("privileged"))).resolved()
    target = options.get("container") or default_container(pod)
    return container_spec(f"{name_prefix()}-doctor", str(target), "0" * 64, image)

"""Asking the API server what this user may do: one SelfSubjectAccessReview per verb (the
authoritative answer, unlike SelfSubjectRulesReview), asked concurrently."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kdiag.kube.errors import Call, api_call
from kdiag.preflight.needs import Access


@dataclass(frozen=True)
class Answer:
    """The API server's answer for one access (``allowed`` None: it could not say)."""

    access: Access
    allowed: bool | None
    reason: str = ""


def review_body(access: Access, namespace: str) -> dict[str, Any]:
    """The SelfSubjectAccessReview for ``access`` in ``namespace``."""
    attributes = {"namespace": namespace, "verb": access.verb, "group": access.group,
                  "resource": access.resource}
    if access.subresource:
        attributes["subresource"] = access.subresource
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}}


def ask(api_client: Any, server: str, namespace: str, accesses: list[Access]) -> list[Answer]:
    """The answers, in the order asked. Raises TargetError when the cluster is unreachable."""
    from kubernetes import client

    api: Any = client.AuthorizationV1Api(api_client)

    def one(access: Access) -> Answer:
        with api_call(Call("create", "selfsubjectaccessreviews", namespace, server=server)):
            review = api.create_self_subject_access_review(review_body(access, namespace),
                                                           _request_timeout=15)
        status = review.status
        reason = " ".join(str(status.reason or status.evaluation_error or "").split())
        return Answer(access, bool(status.allowed), reason)

    if not accesses:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(accesses)),
                            thread_name_prefix="kdiag-access") as pool:
        return list(pool.map(one, accesses))

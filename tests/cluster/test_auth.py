"""The cluster's authentication and authorization are real: a service account's token from
the TokenRequest API is accepted, and RBAC allows exactly what a Role grants."""

from __future__ import annotations

import pytest

from .conftest import Cluster

pytestmark = pytest.mark.cluster


def test_service_account_token_and_rbac(cluster: Cluster, namespace: str) -> None:
    from kubernetes import client

    core = cluster.core
    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-pod-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token

    base = cluster.api_client.configuration
    conf = client.Configuration()
    conf.host = base.host
    conf.ssl_ca_cert = base.ssl_ca_cert
    conf.api_key = {"authorization": f"Bearer {token}"}
    restricted = client.CoreV1Api(client.ApiClient(conf))

    assert restricted.list_namespaced_pod(namespace).items == []
    with pytest.raises(client.ApiException) as denied:
        restricted.list_namespaced_secret(namespace)
    assert denied.value.status == 403
    with pytest.raises(client.ApiException) as other_ns:
        restricted.list_namespaced_pod("default")
    assert other_ns.value.status == 403

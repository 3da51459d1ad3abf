"""Fixtures for the cluster end-to-end tests (marker `cluster`).

They use the local cluster that `make cluster-up` starts (cluster/up.sh) through its admin
kubeconfig, .cluster/kubeconfig. Without a running cluster every test fails with a message
saying so; nothing here starts or stops the cluster.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("KDIAG_CLUSTER_STATE", REPO / ".cluster"))
MANIFESTS = REPO / "cluster" / "testapps" / "manifests"
# The manager image the tests inject: the local cluster's, or another one imported beside it
# (e.g. KDIAG_E2E_MANAGER_IMAGE=kdiag.local/manager:slim to try a new image without replacing it).
MANAGER_IMAGE = os.environ.get("KDIAG_E2E_MANAGER_IMAGE", "kdiag.local/manager:dev")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: cluster end-to-end tests (needs `make cluster-up`)")


@dataclass
class Cluster:
    kubeconfig: Path
    info: dict[str, Any]
    api_client: Any  # kubernetes.client.ApiClient
    core: Any  # kubernetes.client.CoreV1Api

    @property
    def node_name(self) -> str:
        return str(self.info["node_name"])

    def stream_core(self) -> Any:
        """A CoreV1Api on a new ApiClient of its own, for kubernetes.stream (exec, attach,
        port-forward): stream() swaps call_api on the client it is given, so it must not
        share one with other calls."""
        from kubernetes import client, config

        api_client = client.ApiClient(
            configuration=_load_configuration(self.kubeconfig, config, client)
        )
        return client.CoreV1Api(api_client)

    def manifest(self, name: str) -> dict[str, Any]:
        """A test-app manifest from cluster/testapps/manifests/NAME.yaml."""
        return dict(yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text()))

    def wait_for(
        self, what: Callable[[], Any], timeout: float = 60, interval: float = 0.5, desc: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = what()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {desc or what}")
            time.sleep(interval)

    def wait_pod_running(self, namespace: str, name: str, timeout: float = 90) -> Any:
        def running() -> Any:
            pod = self.core.read_namespaced_pod(name, namespace)
            if pod.status.phase == "Running" and all(
                cs.ready for cs in pod.status.container_statuses or []
            ):
                return pod
            if pod.status.phase in ("Failed", "Succeeded"):
                raise AssertionError(f"pod {namespace}/{name} ended: {pod.status}")
            return None

        try:
            return self.wait_for(running, timeout, desc=f"pod {namespace}/{name} to run")
        except TimeoutError:
            pod = self.core.read_namespaced_pod(name, namespace)
            events = self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            )
            msgs = [f"{e.reason}: {e.message}" for e in events.items]
            raise AssertionError(
                f"pod {namespace}/{name} is not running: {pod.status}\nevents: {msgs}"
            ) from None


def _load_configuration(kubeconfig: Path, config: Any, client: Any) -> Any:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return configuration


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubeconfig = STATE / "kubeconfig"
    info_path = STATE / "run" / "cluster.json"
    if not kubeconfig.exists() or not info_path.exists():
        pytest.fail(
            f"the local cluster is not up ({kubeconfig} is missing): run `make cluster-up` "
            "(or `make e2e`, which starts it and runs these tests)",
            pytrace=False,
        )
    from kubernetes import client, config

    api_client = client.ApiClient(
        configuration=_load_configuration(kubeconfig, config, client)
    )
    core = client.CoreV1Api(api_client)
    info = json.loads(info_path.read_text())
    try:
        node = core.read_node(info["node_name"], _request_timeout=10)
    except Exception as e:  # connection refused, TLS, 404: say which, not a traceback
        pytest.fail(
            f"the local cluster does not answer ({type(e).__name__}: {e}); "
            "see .cluster/logs/ or run `make cluster-down cluster-up`",
            pytrace=False,
        )
    ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
    if not ready or ready[0].status != "True":
        pytest.fail(
            f"node {info['node_name']} is not Ready: {ready[0].message if ready else 'no status'}"
            "; see .cluster/logs/kubelet.log",
            pytrace=False,
        )
    # Tests that open targets in this process inject the cluster's manager image too.
    os.environ["KDIAG_MANAGER_IMAGE"] = MANAGER_IMAGE
    return Cluster(kubeconfig=kubeconfig, info=info, api_client=api_client, core=core)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with its pods) afterwards."""
    name = make_namespace(cluster)
    yield name
    cluster.core.delete_namespace(name, grace_period_seconds=0)


def make_namespace(cluster: Cluster) -> str:
    """Create a namespace and wait for its default service account."""
    from kubernetes import client

    name = f"kdiag-e2e-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_sa() -> bool:
        try:
            cluster.core.read_namespaced_service_account("default", name)
            return True
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise

    cluster.wait_for(default_sa, 30, desc=f"the default service account in {name}")
    return name

"""Services, ClusterIPs, EndpointSlices and cluster DNS on the local cluster, as on kind.

The Deployment `api` (three replicas with readiness and liveness probes) sits behind the
Service `api`, whose targetPort is the named container port `http`; pods of the namespace
resolve and call it by name through CoreDNS (the kube-dns ClusterIP) and kube-proxy's rules.
Manifests: cluster/testapps/manifests/{api,api-service,api-client,toolbox}.yaml.
"""

from __future__ import annotations

import collections
import copy
import ipaddress
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kdiag.kube.podlog import read_pod_log

from .conftest import Cluster, make_namespace
from .kube_fixtures import Result

pytestmark = pytest.mark.cluster


@dataclass
class Apps:
    """The namespace with the `api` Deployment and Service and the `toolbox` pod."""

    cluster: Cluster
    namespace: str
    replicas: dict[str, str] = field(default_factory=dict)  # pod name -> pod IP
    service_ip: str = ""

    def exec(self, command: list[str], pod: str = "toolbox", timeout: float = 60) -> Result:
        from kubernetes.stream import stream

        started = time.monotonic()
        resp = stream(self.cluster.stream_core().connect_get_namespaced_pod_exec, pod,
                      self.namespace, command=command, stdin=False, stdout=True, stderr=True,
                      tty=False, _preload_content=False)
        stdout, stderr = [], []
        while resp.is_open() and time.monotonic() - started < timeout:
            resp.update(timeout=1)
            if resp.peek_stdout():
                stdout.append(resp.read_stdout())
            if resp.peek_stderr():
                stderr.append(resp.read_stderr())
        rc = resp.returncode
        resp.close()
        return Result(rc if rc is not None else -1, "".join(stdout), "".join(stderr),
                      time.monotonic() - started)

    def sh(self, script: str, pod: str = "toolbox", timeout: float = 60) -> Result:
        return self.exec(["sh", "-c", script], pod, timeout)


def _apps_v1(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.AppsV1Api(cluster.api_client)


def _discovery(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.DiscoveryV1Api(cluster.api_client)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def api_pods(cluster: Cluster, namespace: str) -> list[Any]:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=api").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def ready_endpoints(cluster: Cluster, namespace: str, service: str) -> dict[str, bool]:
    """address -> ready, over the Service's EndpointSlices."""
    slices = _discovery(cluster).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return {address: bool(ep.conditions and ep.conditions.ready)
            for s in slices for ep in s.endpoints or [] for address in ep.addresses}


@pytest.fixture(scope="module")
def apps(cluster: Cluster) -> Iterator[Apps]:
    namespace = make_namespace(cluster)
    _apps_v1(cluster).create_namespaced_deployment(namespace, cluster.manifest("api"))
    cluster.core.create_namespaced_service(namespace, cluster.manifest("api-service"))
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("toolbox"))
    apps = Apps(cluster, namespace)

    def rolled_out() -> bool:
        dep = _apps_v1(cluster).read_namespaced_deployment("api", namespace)
        return (dep.status.ready_replicas or 0) == 3 and (dep.status.updated_replicas or 0) == 3

    cluster.wait_for(rolled_out, 90, desc=f"deployment {namespace}/api to have 3 ready replicas")
    pods = api_pods(cluster, namespace)
    apps.replicas = {p.metadata.name: p.status.pod_ip for p in pods}
    assert len(apps.replicas) == 3, apps.replicas
    # kube-proxy has the three endpoints once the EndpointSlice lists them ready.
    cluster.wait_for(lambda: ready_endpoints(cluster, namespace, "api")
                     == dict.fromkeys(apps.replicas.values(), True), 30,
                     desc="the api EndpointSlice to list the three replicas ready")
    apps.service_ip = cluster.core.read_namespaced_service("api", namespace).spec.cluster_ip
    cluster.wait_pod_running(namespace, "toolbox")
    yield apps
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def test_api_replicas_ready_with_probes(cluster: Cluster, apps: Apps) -> None:
    for pod in api_pods(cluster, apps.namespace):
        app = pod.spec.containers[0]
        assert app.readiness_probe.http_get.port == "http", app.readiness_probe
        assert app.liveness_probe.http_get.port == "http", app.liveness_probe
        assert _ready(pod), f"{pod.metadata.name} is not Ready: {pod.status.conditions}"
        (status,) = pod.status.container_statuses
        assert status.ready and status.restart_count == 0, status


def test_pods_resolv_conf_points_at_cluster_dns(cluster: Cluster, apps: Apps) -> None:
    result = apps.exec(["cat", "/etc/resolv.conf"])
    assert result.returncode == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    domain = cluster.info["cluster_domain"]
    assert lines["nameserver"] == [cluster.info["dns_ip"]], result.stdout
    assert lines["search"] == [f"{apps.namespace}.svc.{domain}", f"svc.{domain}", domain]
    assert "ndots:5" in lines["options"], result.stdout


def nslookup_answers(output: str) -> dict[str, list[str]]:
    """name -> addresses, from busybox nslookup's output (not the server's own address)."""
    return {name: re.findall(r"Address: (\S+)", block)
            for name, block in re.findall(r"^Name:\s+(\S+)\n((?:Address: \S+\n?)+)", output,
                                          re.MULTILINE)}


def test_nslookup_service_and_kubernetes(cluster: Cluster, apps: Apps) -> None:
    domain = cluster.info["cluster_domain"]
    kubernetes_ip = str(ipaddress.ip_network(cluster.info["service_range"])[1])
    api = f"api.{apps.namespace}.svc.{domain}"
    for name, want in [(api, apps.service_ip), (f"kubernetes.default.svc.{domain}", kubernetes_ip)]:
        result = apps.exec(["nslookup", name])
        assert result.returncode == 0, f"nslookup {name}: {result.output}"
        assert nslookup_answers(result.stdout) == {name: [want]}, result.output
    # busybox nslookup tries every search domain for a name without a dot (and exits 1 as
    # the other domains have no `api`): the namespace's own one answers.
    result = apps.exec(["nslookup", "api"])
    assert nslookup_answers(result.stdout) == {api: [apps.service_ip]}, result.output
    # The pod's libc resolver walks the search list: `kubernetes.default` is the Service.
    result = apps.sh("ping -c 1 -W 1 kubernetes.default | head -1")
    assert f"PING kubernetes.default ({kubernetes_ip})" in result.stdout, result.output


def test_pod_reaches_kubernetes_service(apps: Apps) -> None:
    """The API server through the `kubernetes` Service, by name (anonymous /version)."""
    result = apps.exec(["timeout", "10", "wget", "-qO-", "--no-check-certificate",
                        "https://kubernetes.default/version"])
    assert result.returncode == 0, result.output
    assert '"gitVersion": "v1.34' in result.stdout, result.stdout


def test_outside_names_fail_fast(apps: Apps) -> None:
    """No internet here: a name outside the cluster fails at once instead of hanging."""
    result = apps.exec(["nslookup", "no-such-host.invalid"])
    assert result.returncode != 0 and "can't find" in result.output, result.output
    result = apps.exec(["timeout", "10", "wget", "-qO-", "http://no-such-host.invalid/"])
    assert result.returncode != 0 and "bad address" in result.output, result.output
    assert result.seconds < 5, f"took {result.seconds:.1f} s: {result.output}"


def run_client(cluster: Cluster, namespace: str, requests: int = 20,
               name: str = "api-client") -> list[tuple[str, str]]:
    """Run the api-client Job (as ``name``: a Job and pod label of its own); return its
    (URL, answer) lines."""
    from kubernetes import client

    job = cluster.manifest("api-client")
    job["metadata"]["name"] = name
    job["spec"]["template"]["metadata"]["labels"] = {"app": name}
    (env,) = [e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
              if e["name"] == "REQUESTS"]
    env["value"] = str(requests)
    batch: Any = client.BatchV1Api(cluster.api_client)
    batch.create_namespaced_job(namespace, job)

    def finished() -> Any:
        status = batch.read_namespaced_job(name, namespace).status
        return status if (status.succeeded or status.failed) else None

    status = cluster.wait_for(finished, 90, desc=f"the {name} Job to finish")
    (pod,) = cluster.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    log = read_pod_log(cluster.core, pod.metadata.name, namespace)
    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    assert status.succeeded, f"{name} failed:\n{log}"
    calls = [line.split(" ", 1) for line in log.splitlines() if line.startswith("http://")]
    return [(url, answer) for url, answer in calls]


def test_client_calls_api_by_name_over_all_replicas(cluster: Cluster, apps: Apps) -> None:
    calls = run_client(cluster, apps.namespace, requests=20)
    fqdn = f"http://api.{apps.namespace}.svc.{cluster.info['cluster_domain']}/"
    assert collections.Counter(url for url, _ in calls) == {"http://api/": 20, fqdn: 20}, calls
    answered = collections.Counter(answer.removeprefix("hello from ") for _, answer in calls)
    assert set(answered) == set(apps.replicas), f"answers by replica: {answered}"
    assert sum(answered.values()) >= 30


def test_named_target_port(cluster: Cluster, apps: Apps) -> None:
    service = cluster.core.read_namespaced_service("api", apps.namespace)
    (port,) = service.spec.ports
    assert (port.port, port.target_port) == (80, "http")
    slices = _discovery(cluster).list_namespaced_endpoint_slice(
        apps.namespace, label_selector="kubernetes.io/service-name=api").items
    assert {(p.name, p.port) for s in slices for p in s.ports} == {("http", 8080)}
    # The ClusterIP on port 80 reaches a replica on its port named http.
    result = apps.exec(["timeout", "5", "wget", "-qO-", f"http://{apps.service_ip}/"])
    assert result.returncode == 0, result.output
    assert result.stdout.removeprefix("hello from ").strip() in apps.replicas, result.stdout


def test_service_back_to_the_calling_pod(cluster: Cluster, apps: Apps) -> None:
    """Hairpin: a pod calls a Service whose only endpoint is itself."""
    name, ip = sorted(apps.replicas.items())[0]
    cluster.core.patch_namespaced_pod(name, apps.namespace,
                                      {"metadata": {"labels": {"kdiag-test/self": "yes"}}})
    cluster.core.create_namespaced_service(apps.namespace, {
        "metadata": {"name": "api-self"},
        "spec": {"selector": {"app": "api", "kdiag-test/self": "yes"},
                 "ports": [{"port": 80, "targetPort": "http"}]}})
    cluster.wait_for(lambda: ready_endpoints(cluster, apps.namespace, "api-self") == {ip: True},
                     30, desc="the api-self EndpointSlice")
    # The replica's own client (testapp GET /call) resolves `api-self` and calls it.
    url = f"http://{ip}:8080/call?url=http://api-self/hairpin"

    def calls_itself() -> Result | None:
        result = apps.exec(["timeout", "10", "wget", "-qO-", url])
        return result if result.returncode == 0 else None

    result = cluster.wait_for(calls_itself, 20, interval=1, desc=f"{name} to call api-self")
    assert result.stdout.strip() == f"200 hello from {name}", result.output
    log = read_pod_log(cluster.core, name, apps.namespace)
    assert f"{name} GET /hairpin from" in log, log[-2000:]


def test_unready_pod_gets_no_traffic(cluster: Cluster, apps: Apps) -> None:
    """A pod matching the selector whose readiness probe fails stays out of the Service."""
    template = copy.deepcopy(cluster.manifest("api")["spec"]["template"])
    template["metadata"]["name"] = "api-unready"
    # testapp answers every path, so the probe asks a port nothing listens on.
    template["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 9999
    cluster.core.create_namespaced_pod(apps.namespace, template)
    try:
        def running() -> Any:
            pod = cluster.core.read_namespaced_pod("api-unready", apps.namespace)
            return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

        pod = cluster.wait_for(running, 60, desc="pod api-unready to run")
        cluster.wait_for(lambda: ready_endpoints(cluster, apps.namespace, "api").get(
            pod.status.pod_ip) is False, 30, desc="api-unready listed not ready")
        time.sleep(3)  # a few failed probes later it is still not Ready
        assert not _ready(cluster.core.read_namespaced_pod("api-unready", apps.namespace))
        result = apps.sh("for i in $(seq 15); do timeout 5 wget -qO- http://api/ || echo FAILED; done")
        answers = collections.Counter(line.removeprefix("hello from ")
                                      for line in result.stdout.splitlines())
        assert set(answers) <= set(apps.replicas) and sum(answers.values()) == 15, answers
    finally:
        cluster.core.delete_namespaced_pod("api-unready", apps.namespace, grace_period_seconds=0)

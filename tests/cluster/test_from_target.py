"""A local server started with a pod's context (issue 19), against the local cluster: the pod
gets its environment from a Secret (``envFrom``) and the downward API and a ConfigMap mounted
as files; ``runbooks/redirect-local-build.yaml`` redirects its port to a local server started
``from_target`` that answers with a value of the pod's environment and one of its config file;
a client pod gets that answer. Nothing read from the pod is in any report, artifact or the
console; the private folder is gone after the run. And ``kdiag exec --names``: cluster Service
names for one local command."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdiag.context.folder import base

from .conftest import Cluster, make_namespace
from .kube_fixtures import Kdiag, client_manifest, kdiag_cli  # noqa: F401

pytestmark = pytest.mark.cluster


@dataclass
class SecretApp:
    namespace: str
    password: str
    greeting: str
    pod: str = "secretapp"


def _secret_app_manifest(secret: str, config: str) -> dict[str, object]:
    return {
        "metadata": {"name": "secretapp", "labels": {"app": "secretapp"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "kdiag.local/testapp:dev", "imagePullPolicy": "Never",
            "args": ["-listen=:8080", "-name=secretapp"],
            "envFrom": [{"secretRef": {"name": secret}}],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.name"}}}],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                               "periodSeconds": 2},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": True}]}],
            "volumes": [{"name": "config", "configMap": {"name": config}}]}}


@pytest.fixture(scope="module")
def secret_app(cluster: Cluster) -> Iterator[SecretApp]:
    """In a namespace of its own: the app with a Secret's env and a ConfigMap's files, a
    client pod calling it, and a Service ``api`` (the test app behind it) for names."""
    namespace = make_namespace(cluster)
    core = cluster.core
    app = SecretApp(namespace, "pw-" + os.urandom(12).hex(), "greeting-" + os.urandom(8).hex())
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "app-secret"},
        "data": {"DB_PASSWORD": base64.b64encode(app.password.encode()).decode()}})
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "app-config"},
        "data": {"app.conf": f"greeting = {app.greeting}\nlevel = info\n"}})
    api = cluster.manifest("app")
    api["metadata"] = {"name": "api-0", "labels": {"app": "api"}}
    api["spec"]["containers"][0]["args"] = ["-listen=:8080", "-name=api-0"]
    core.create_namespaced_pod(namespace, api)
    core.create_namespaced_service(namespace, {  # before the app: its env names the Service
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80,
                                                        "targetPort": 8080}]}})
    core.create_namespaced_pod(namespace, _secret_app_manifest("app-secret", "app-config"))
    pod = cluster.wait_pod_running(namespace, "secretapp")
    core.create_namespaced_pod(namespace, client_manifest(pod.status.pod_ip))
    cluster.wait_pod_running(namespace, "testapp-client")
    cluster.wait_pod_running(namespace, "api-0")
    yield app
    core.delete_namespace(namespace, grace_period_seconds=0)


def _leaks(values: list[str], places: list[Path], console: str) -> list[str]:
    forms = {f for v in values for f in (v, v.upper(), base64.b64encode(v.encode()).decode())}
    found = [f"console: {f}" for f in forms if f in console]
    for place in places:
        for path in [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]:
            data = path.read_bytes()
            found += [f"{path}: {f}" for f in forms if f.encode() in data]
    return found


@pytest.mark.runbook("runbooks/redirect-local-build.yaml", "runbooks/lib/http-health.yaml")
def test_redirect_to_a_local_server_running_with_the_pods_env_and_files(
        secret_app: SecretApp, kdiag_cli: Kdiag, tmp_path: Path) -> None:  # noqa: F811
    report, artifacts = tmp_path / "r.json", tmp_path / "art"
    before = set(Path(base()).glob("kdiag-target-*"))
    result, data = kdiag_cli.run(
        "runbooks/redirect-local-build.yaml", secret_app.namespace, f"pod={secret_app.pod}",
        "local_port=18190", "files=[/etc/app/]",
        "answer=hello from laptop, password {env:DB_PASSWORD} pod {env:POD_NAME} "
        "config {file:/etc/app/app.conf}",
        report=report, extra=("--artifacts", str(artifacts), "--report",
                              f"junit={tmp_path / 'r.xml'}", "--report",
                              f"md={tmp_path / 'r.md'}", "--report",
                              f"html={tmp_path / 'r.html'}"))
    assert result.returncode == 0, result.output
    steps = {s["name"]: s for s in data["runs"][0]["steps"]}
    # The client pod got the local server's answer, made of the pod's values: the Secret's
    # and the ConfigMap's show masked, which only a value read from the pod is; the pod's name
    # (the downward API) is no secret: kdiag shows it anyway.
    answer = steps["the client calls the api"]["result"]["text"]
    # (the local server's line, then the client pod's own newline: masking keeps both)
    assert answer == "200 hello from laptop, password *** pod secretapp config ***\n\n", answer
    context = steps["local server"]["result"]["from_target"]
    assert {"DB_PASSWORD", "POD_NAME"} <= set(context["env"])
    assert context["files"][0]["path"] == "/etc/app" and context["files"][0]["files"] == 1
    assert context["files"][0]["links"] == 2  # app.conf -> ..data/app.conf, ..data -> ..2026_
    assert context["view"] == "namespace"
    places = [report, artifacts, tmp_path / "r.xml", tmp_path / "r.md", tmp_path / "r.html"]
    assert all(p.exists() for p in places), [p for p in places if not p.exists()]
    assert not _leaks([secret_app.password, secret_app.greeting, "greeting = "], places,
                      result.output)
    assert not Path(context["root"]).exists()  # the private folder is gone
    assert set(Path(base()).glob("kdiag-target-*")) <= before
    print("context read:", json.dumps(context["seconds"]))


def test_exec_with_cluster_names(secret_app: SecretApp, kdiag_cli: Kdiag,  # noqa: F811
                                 tmp_path: Path) -> None:
    """``api``, ``api.NS`` and the full name reach the Service's pod, for this command only;
    the pod's service-discovery variables point at the same local address."""
    ns = secret_app.namespace
    script = ("import os, socket, urllib.request\n"
              f"for host in ('api', 'api.{ns}', 'api.{ns}.svc.cluster.local'):\n"
              "    body = urllib.request.urlopen(f'http://{host}/', timeout=10).read()\n"
              "    print(host, socket.gethostbyname(host), body.decode().strip())\n"
              "print('env', os.environ.get('API_SERVICE_HOST'))\n")
    result = kdiag_cli("exec", "-n", ns, "--pod", secret_app.pod, "--env", "--names", "--",
                       sys.executable, "-c", script)
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == ["api 127.77.0.1 hello from api-0",
                     f"api.{ns} 127.77.0.1 hello from api-0",
                     f"api.{ns}.svc.cluster.local 127.77.0.1 hello from api-0",
                     "env 127.77.0.1"], lines
    assert "api" not in Path("/etc/hosts").read_text().split()

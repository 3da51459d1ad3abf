"""Workloads, Services and every replica on the real cluster (kube-proxy, CoreDNS): kubectl's
``TYPE/NAME`` targets, the fan-out of manager steps over every ready pod, and the workload
intercept of ``runbooks/redirect-api.yaml`` — every replica of the ``api`` Deployment redirected
while a client calls ``http://api.<ns>.svc.cluster.local``, the pods Ready throughout (the
kubelet's probes reach the app), a replica added by a scale-up redirected too, one removed by a
scale-down dropped, and every request back at the app once the run ends. Also the other kubectl
forms (`sts/`, `ds/`, `rs/`, `job/`), a Service port meaning the pods' named targetPort, and a
rollout moving the redirect to the new replicas.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import MANAGER_IMAGE, REPO, Cluster
from .kube_fixtures import Kdiag, kdiag_cli, manager_pids  # noqa: F401 - a fixture
from .test_services import (  # noqa: F401 - apps: a fixture
    Apps,
    _apps_v1,
    api_pods,
    apps,
    ready_endpoints,
    run_client,
)

pytestmark = pytest.mark.cluster

JOIN_WITHIN = 10.0
"""A replica that becomes ready is under the redirect within this many seconds."""


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _scale(cluster: Cluster, namespace: str, replicas: int) -> None:
    _apps_v1(cluster).patch_namespaced_deployment_scale(
        "api", namespace, {"spec": {"replicas": replicas}})

    def settled() -> bool:
        pods = api_pods(cluster, namespace)
        return len(pods) == replicas and all(_ready(p) for p in pods)

    cluster.wait_for(settled, 90, desc=f"deployment api to have {replicas} ready replicas")


@pytest.fixture
def three(cluster: Cluster, apps: Apps) -> str:  # noqa: F811 - the fixture
    """The namespace of the `api` Deployment (test_services.py's, made for this module), its
    Service and `toolbox`, with the Deployment back at 3 ready replicas."""
    namespace = apps.namespace
    _scale(cluster, namespace, 3)
    cluster.wait_for(lambda: list(ready_endpoints(cluster, namespace, "api").values())
                     == [True] * 3, 30, desc="the api EndpointSlice to list 3 ready replicas")
    return namespace


def local_server(port: int) -> subprocess.Popen[str]:
    """The local server on ``port``: answers "hello from laptop", refuses /healthz (a probe
    reaching it would make the pod NotReady), prints what it saw."""
    return subprocess.Popen([sys.executable, "runbooks/lib/recording_server.py", str(port),
                             "hello from laptop", "--refuse", "/healthz"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)


def call_api(cluster: Cluster, namespace: str, requests: int) -> list[tuple[str, str]]:
    """The api-client Job (calling `api` and its full name ``requests`` times each) under a
    name of its own; its (URL, answer) lines."""
    return run_client(cluster, namespace, requests, f"api-client-{uuid.uuid4().hex[:6]}")


@dataclass
class Readiness:
    """Watches the api pods: any pod seen Ready that is later seen NotReady (and not being
    deleted) is a lapse."""

    cluster: Cluster
    namespace: str
    lapses: list[str] = field(default_factory=list)
    ready_at: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Readiness:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for pod in api_pods(self.cluster, self.namespace):
                name = pod.metadata.name
                if _ready(pod):
                    self.ready_at.setdefault(name, time.monotonic())
                elif name in self.ready_at:
                    self.lapses.append(f"{name} NotReady at {time.strftime('%T')}: "
                                       f"{pod.status.conditions}")


class Run:
    """``kdiag run`` in the background, its console output collected as it comes."""

    def __init__(self, cluster: Cluster, tmp_path: Path, *args: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1",
               "XDG_CACHE_HOME": str(tmp_path / "cache"), "KDIAG_MANAGER_IMAGE": MANAGER_IMAGE,
               "KDIAG_MANAGER_PULL_POLICY": "Never"}
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen([sys.executable, "-m", "kdiag", *args], cwd=REPO,
                                        env=env, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_line(self, pattern: str, timeout: float = 120) -> float:
        """When a line matching ``pattern`` came (fails if the run ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if re.search(pattern, line):
                    return at
            if self.process.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"kdiag ended ({self.process.returncode}) before "
                            f"{pattern!r}:\n{self.output}")
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} within {timeout:.0f}s:\n{self.output}")

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            self.process.kill()
        self._reader.join(5)
        return code


def test_shell_on_every_replica_and_ps_behind_a_service(cluster: Cluster, three: str,
                                                        kdiag_cli: Kdiag) -> None:  # noqa: F811
    replicas = sorted(p.metadata.name for p in api_pods(cluster, three))
    result = kdiag_cli("shell", "deploy/api", "-n", three, "--all", "--", "cat", "/etc/hostname")
    assert result.returncode == 0, result.output
    lines = sorted(result.stdout.splitlines())
    assert lines == [f"[{name}] {name}" for name in replicas], result.output
    result = kdiag_cli("ps", "svc/api", "-n", three, "--all")
    assert result.returncode == 0, result.output
    assert {line.split()[0] for line in result.stdout.splitlines()[1:]} == \
        {f"[{name}]" for name in replicas}, result.output
    assert all("testapp -listen=:8080" in line for line in result.stdout.splitlines()[1:])
    # Without --all: one pod, as kubectl logs deploy/api picks one.
    result = kdiag_cli("shell", "deploy/api", "-n", three, "--", "cat", "/etc/hostname")
    assert result.returncode == 0 and result.stdout.strip() in replicas, result.output


@pytest.mark.runbook("runbooks/redirect-api.yaml", "runbooks/lib/http-health.yaml")
def test_redirect_api_follows_the_workload_and_keeps_it_ready(cluster: Cluster, three: str,
                                                              tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = Run(cluster, tmp_path, "run", "runbooks/redirect-api.yaml", "--set",
              f"namespace={three}", "--set", "local_port=18280", "--set", "requests=100",
              "--report", f"json={report}")
    try:
        with Readiness(cluster, three) as readiness:
            run.wait_line(r"^\[ ok \] redirect every replica")
            first = call_api(cluster, three, 20)  # 40 calls, by short and full name
            assert len(first) == 40
            assert collections.Counter(a for _, a in first) == {"hello from laptop": 40}, first

            before = {p.metadata.name for p in api_pods(cluster, three)}
            _apps_v1(cluster).patch_namespaced_deployment_scale(
                "api", three, {"spec": {"replicas": 4}})
            cluster.wait_for(lambda: set(readiness.ready_at) - before, 90,
                             desc="a fourth replica to be ready")
            (new,) = set(readiness.ready_at) - before
            joined = run.wait_line(rf"{new} joined deployment/api: its redirect is up")
            print(f"replica {new} ready -> redirected in {joined - readiness.ready_at[new]:.2f}s")
            assert joined - readiness.ready_at[new] < JOIN_WITHIN, run.output
            second = call_api(cluster, three, 20)
            assert collections.Counter(a for _, a in second) == {"hello from laptop": 40}

            _apps_v1(cluster).patch_namespaced_deployment_scale(
                "api", three, {"spec": {"replicas": 3}})
            run.wait_line(r"deleted: its redirect is dropped")
            third = call_api(cluster, three, 10)
            assert collections.Counter(a for _, a in third) == {"hello from laptop": 20}
            code = run.finish()
            lapses = list(readiness.lapses)
        assert code == 0, run.output
        assert not lapses, "\n".join(lapses)  # the probes reached the app throughout
    finally:
        run.process.kill()
    steps = {s["name"]: s for s in json.loads(report.read_text())["runs"][0]["steps"]}
    (note,) = steps["connections per replica"]["notes"]
    counts = dict(re.findall(r"(\S+)=(\d+)", note))
    assert len(counts) == 4 and all(int(n) > 0 for n in counts.values()), counts
    assert "/healthz" not in run.output  # the local server never saw a probe
    after = call_api(cluster, three, 10)
    answers = collections.Counter(a.removeprefix("hello from ") for _, a in after)
    assert "laptop" not in answers and len(answers) >= 2, answers  # back at the app


def test_probes_redirect_too_when_asked(cluster: Cluster, three: str, tmp_path: Path,
                                        kdiag_cli: Kdiag) -> None:  # noqa: F811
    """``--probes redirect``: the kubelet's probes go to the local server too, which refuses
    /healthz: the replicas drop out of the Service — what the default spares the user."""
    server = local_server(18281)
    run = Run(cluster, tmp_path, "redirect", "deploy/api", "-n", three, "--all",
              "--probes", "redirect", "http:18281")
    try:
        run.wait_line(r"redirecting 3 pods of deployment/api")
        cluster.wait_for(lambda: not any(ready_endpoints(cluster, three, "api").values()), 30,
                         desc="the replicas to be NotReady (probes answered 503 here)")
    finally:
        stop(run, server)
        assert server.stdout is not None
        seen = server.stdout.read()
    assert "GET /healthz" in seen
    assert "the node's connections" not in run.output  # no source was left to the app
    cluster.wait_for(lambda: list(ready_endpoints(cluster, three, "api").values()) == [True] * 3,
                     60, desc="the replicas Ready again once the redirect ended")


def test_a_replica_manager_killed_fails_the_run(cluster: Cluster, three: str,
                                                tmp_path: Path) -> None:
    """Losing a live replica's manager is not a replica going away: exit 3, naming it."""
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target: {{kubernetes: {{namespace: {three}, pod: deploy/api, pick: all}}}}
        steps:
          - {{name: api, redirect: {{ports: [http], to: "127.0.0.1:9"}}, background: true}}
          - {{name: long wait, wait: 300s}}
    """))
    run = Run(cluster, tmp_path, "run", str(runbook))
    try:
        run.wait_line(r"^\[ ok \] api")
        time.sleep(0.5)
        victim = api_pods(cluster, three)[0]
        at = time.monotonic()
        for pid in manager_pids(victim):
            os.kill(pid, signal.SIGKILL)
        code = run.finish()
    finally:
        run.process.kill()
    ended = run.lines[-1][0] - at
    assert code == 3, run.output
    assert re.search(rf"{victim.metadata.name}: .*(manager gone|terminated|ended)", run.output), \
        run.output
    print(f"manager killed -> run ended in {ended:.2f}s")
    assert ended < 10, run.output


def test_every_manager_step_fans_out(cluster: Cluster, three: str, tmp_path: Path) -> None:
    """net, ps, probe, copy, capture and shell on every replica: one result per pod, files per
    pod, and one failing pod failing the step by name."""
    replicas = sorted(p.metadata.name for p in api_pods(cluster, three))
    victim = replicas[1]
    out, art = tmp_path / "out", tmp_path / "art"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target: {{kubernetes: {{namespace: {three}, pod: deploy/api, pick: all}}}}
        steps:
          - name: net
            net: {{}}
            register: n
            assert: ["n.count == 3 and n.pods.values() | rejectattr('addresses') | list == []"]
          - name: ps
            ps: {{}}
            register: p
            assert:
              - "p.all_ok and p.count == 3"
              - "p.pods.values() | map(attribute='ports') | map('join', ',')
                 | select('search', '(^|,)8080(,|$)') | list | length == 3"
          - name: probe
            probe: {{tcp: "127.0.0.1:8080"}}
            assert: ["result.all_ok and result.ok_count == 3"]
          - name: copy
            copy: {{download: /etc/hostname, to: "{out}/hostname"}}
          - name: capture
            capture: {{filter: tcp port 8080, duration: 1s}}
            parallel: 1
          - name: one fails
            shell: {{script: 'test "$(cat /etc/hostname)" != {victim}'}}
            register: f
            continue_on_error: true
          - name: look
            assert:
              - "f.failed_pods == ['{victim}'] and f.ok_count == 2"
              - "f.pods['{victim}'].rc == 1"
    """))
    run = Run(cluster, tmp_path, "run", str(runbook), "--artifacts", str(art), "--report",
              f"json={tmp_path / 'r.json'}")
    code = run.finish(180)
    assert code == 0, run.output
    assert {p.name: (p / "hostname").read_text().strip() for p in out.iterdir()} == \
        {name: name for name in replicas}
    captures = sorted(p.parent.name for p in art.rglob("capture.pcap"))
    assert captures == replicas, captures
    steps = {s["name"]: s for s in json.loads((tmp_path / "r.json").read_text())["runs"][0]
             ["steps"]}
    assert steps["one fails"]["status"] == "ignored"
    assert steps["one fails"]["message"] == f"1 of 3 pods failed: {victim}: exit code 1"
    assert "[ ok ] probe" in run.output and f"    {victim}: passed" in run.output


def _testapp_template(app: str) -> dict[str, Any]:
    """A pod template of the test app labelled ``app`` (no probes: Ready once running)."""
    return {"metadata": {"labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "app", "image": "kdiag.local/testapp:dev", "imagePullPolicy": "Never",
                "args": ["-listen=:8080"], "ports": [{"name": "http", "containerPort": 8080}]}]}}


def _ready_names(cluster: Cluster, namespace: str, app: str) -> list[str]:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sorted(p.metadata.name for p in pods
                  if p.metadata.deletion_timestamp is None and _ready(p))


def assert_all_to_laptop(cluster: Cluster, namespace: str, calls: int) -> None:
    """The api-client Job's ``calls`` calls by each name all answered by the local server."""
    answers = call_api(cluster, namespace, calls)
    assert collections.Counter(a for _, a in answers) == {"hello from laptop": 2 * calls}, \
        answers


def stop(run: Run, server: subprocess.Popen[str]) -> None:
    """End an ad-hoc ``kdiag redirect`` as Ctrl-C would, then its local server."""
    run.process.send_signal(signal.SIGTERM)
    run.finish(30)
    server.kill()


def test_every_kubectl_workload_type_names_its_pods(cluster: Cluster, three: str,
                                                    kdiag_cli: Kdiag) -> None:  # noqa: F811
    """``sts/``, ``ds/``, ``rs/`` and ``job/`` (read from the real API for their selector, a
    Job's the generated controller-uid one): ``--all`` reaches each ready pod of each, and
    only those."""
    from kubernetes import client

    apps_api, batch = _apps_v1(cluster), client.BatchV1Api(cluster.api_client)
    apps_api.create_namespaced_stateful_set(three, {
        "metadata": {"name": "kinds-sts"},
        "spec": {"replicas": 2, "serviceName": "kinds-sts",
                 "selector": {"matchLabels": {"app": "kinds-sts"}},
                 "template": _testapp_template("kinds-sts")}})
    apps_api.create_namespaced_daemon_set(three, {
        "metadata": {"name": "kinds-ds"},
        "spec": {"selector": {"matchLabels": {"app": "kinds-ds"}},
                 "template": _testapp_template("kinds-ds")}})
    job_template = _testapp_template("kinds-job")
    job_template["spec"]["restartPolicy"] = "Never"
    batch.create_namespaced_job(three, {
        "metadata": {"name": "kinds-job"},
        "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0,
                 "template": job_template}})
    try:
        expected = {"sts/kinds-sts": ("kinds-sts", 2), "ds/kinds-ds": ("kinds-ds", 1),
                    "job/kinds-job": ("kinds-job", 2)}
        for target, (app, count) in expected.items():
            cluster.wait_for(lambda app=app, count=count:  # type: ignore[misc]
                             len(_ready_names(cluster, three, app)) == count, 90,
                             desc=f"{target} to have {count} ready pods")
        (replicaset,) = [rs.metadata.name for rs in apps_api.list_namespaced_replica_set(
            three, label_selector="app=api").items if (rs.spec.replicas or 0) > 0]
        targets = {**{t: _ready_names(cluster, three, app) for t, (app, _) in expected.items()},
                   f"rs/{replicaset}": sorted(p.metadata.name for p in api_pods(cluster, three))}
        assert targets["sts/kinds-sts"] == ["kinds-sts-0", "kinds-sts-1"], targets
        for target, pods in targets.items():
            result = kdiag_cli("shell", target, "-n", three, "--all", "--", "cat",
                               "/etc/hostname")
            assert result.returncode == 0, (target, result.output)
            assert sorted(result.stdout.splitlines()) == [f"[{p}] {p}" for p in pods], \
                (target, result.output)
    finally:
        gone = {"propagation_policy": "Foreground", "grace_period_seconds": 0}
        apps_api.delete_namespaced_stateful_set("kinds-sts", three, **gone)
        apps_api.delete_namespaced_daemon_set("kinds-ds", three, **gone)
        batch.delete_namespaced_job("kinds-job", three, **gone)


def test_a_service_port_means_the_pods_target_port(cluster: Cluster, three: str,
                                                   tmp_path: Path) -> None:
    """``kdiag redirect svc/api 80:PORT``: the Service's port 80 is its named targetPort
    ``http`` — 8080 in each pod — so what clients send through the Service reaches the local
    server (the pods listen on nothing at 80)."""
    server = local_server(18282)
    run = Run(cluster, tmp_path, "redirect", "svc/api", "-n", three, "--all", "80:18282")
    try:
        replicas = sorted(p.metadata.name for p in api_pods(cluster, three))
        run.wait_line(r"redirecting 3 pods of service/api")
        for name in replicas:
            run.wait_line(rf"^\[{name}\] redirecting incoming 8080 -> 127\.0\.0\.1:18282")
        assert_all_to_laptop(cluster, three, 10)
    finally:
        stop(run, server)


def test_a_rollout_moves_the_redirect_to_the_new_replicas(cluster: Cluster, three: str,
                                                          tmp_path: Path) -> None:
    """``kubectl rollout restart``'s way (a new template annotation): every replica is
    replaced one by one; each new one gets the redirect, each old one is dropped, the
    redirect lives on and, once the rollout is done, every request still reaches the local
    server."""
    server = local_server(18283)
    run = Run(cluster, tmp_path, "redirect", "deploy/api", "-n", three, "--all", "http:18283")
    try:
        before = {p.metadata.name for p in api_pods(cluster, three)}
        run.wait_line(r"redirecting 3 pods of deployment/api")
        _apps_v1(cluster).patch_namespaced_deployment("api", three, {"spec": {"template": {
            "metadata": {"annotations": {"kdiag.test/restarted-at": str(time.time())}}}}})

        def replaced() -> set[str]:
            pods = api_pods(cluster, three)
            names = {p.metadata.name for p in pods}
            done = len(pods) == 3 and all(_ready(p) for p in pods) and not names & before
            return names if done else set()

        new = cluster.wait_for(replaced, 120, desc="the rollout to replace every replica")
        for name in new:
            run.wait_line(rf"{name} joined deployment/api: its redirect is up", 60)
        for name in before:
            run.wait_line(rf"{name} deleted: its redirect is dropped", 60)
        assert run.process.poll() is None, run.output  # the redirect lives on
        assert_all_to_laptop(cluster, three, 10)
    finally:
        stop(run, server)

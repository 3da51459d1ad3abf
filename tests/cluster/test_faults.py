"""Truthful under faults, on the real cluster: a runbook with a background redirect and a long
``wait`` ends with exit 3 within 2 s when its pod is deleted or its manager is killed (the
``finally`` steps run, the report names the cause); the ad-hoc redirect, forward and logs say
in one line what died and exit 3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Cluster
from .kube_fixtures import manager_pids

pytestmark = pytest.mark.cluster

EVENT_TO_EXIT = 2.0
"""The promise: the run ends (exit 3, finally steps run) within 2 s of the event."""


@pytest.fixture
def app_pod(cluster: Cluster, namespace: str) -> Any:
    """The test app, alone in a fresh namespace, running."""
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("app"))
    return cluster.wait_pod_running(namespace, "testapp")


def _kdiag(cluster: Cluster, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "NO_COLOR": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "KDIAG_MANAGER_PULL_POLICY": "Never"}
    env.pop("KDIAG_MANAGER_IMAGE", None)
    return subprocess.Popen([sys.executable, "-m", "kdiag", *args], cwd=REPO, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"kdiag ended early ({process.returncode}):\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def _manager_pid(pod: Any) -> int:
    """The host PID of the manager in ``pod`` (the node is this machine)."""
    return manager_pids(pod)[0]


def _run_until(cluster: Cluster, pod: Any, tmp_path: Path, fault: str
               ) -> tuple[int, str, dict[str, Any], float]:
    """A background redirect and a long wait; then ``fault`` (delete the pod, or kill -9 the
    manager). Exit code, output, the JSON report's run, seconds from the fault to the end."""
    ready, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    ns, name = pod.metadata.namespace, pod.metadata.name
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        target: {{kubernetes: {{namespace: {ns}, pod: {name}}}}}
        steps:
          - name: api
            redirect: {{ports: [8080], to: "127.0.0.1:9"}}
            background: true
          - {{name: tell the test, run: {{argv: [touch, {ready}]}}}}
          - {{name: long wait, wait: 300s}}
          - {{name: never, note: x}}
        finally:
          - {{name: cleanup, run: {{argv: [touch, {cleaned}]}}}}
    """))
    report = tmp_path / "report.json"
    process = _kdiag(cluster, tmp_path, "run", str(runbook), "--report", f"json={report}")
    try:
        _wait_for(ready, process)
        time.sleep(0.5)  # the wait has begun
        victim = _manager_pid(pod) if fault == "kill manager" else 0
        at = time.monotonic()
        if fault == "delete pod":
            cluster.core.delete_namespaced_pod(name, ns)
        else:
            os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=120)
        ended = time.monotonic() - at
    finally:
        process.kill()
    assert cleaned.exists(), f"the finally step did not run:\n{out}\n{err}"
    return process.returncode, out + err, json.loads(report.read_text())["runs"][0], ended


def test_deleted_pod_during_a_wait_is_exit_3_within_2s(cluster: Cluster, app_pod: Any,
                                                        tmp_path: Path) -> None:
    code, output, run, ended = _run_until(cluster, app_pod, tmp_path, "delete pod")
    print(f"pod deleted -> run ended in {ended:.2f}s")
    assert code == 3, output
    assert ended < EVENT_TO_EXIT, f"{ended:.2f}s from the deletion to the end of the run"
    cause = f"pod {app_pod.metadata.namespace}/testapp deleted"
    assert run["message"] == f"target: {cause}"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["long wait"]["status"] == "error"
    assert steps["long wait"]["message"] == f"stopped: target: {cause}"
    assert steps["never"]["status"] == "skipped" and steps["cleanup"]["status"] == "passed"
    assert run["background_failures"][0]["cause"] == cause
    assert "Traceback" not in output


def test_killed_manager_during_a_wait_is_exit_3_within_2s(cluster: Cluster, app_pod: Any,
                                                          tmp_path: Path) -> None:
    code, output, run, ended = _run_until(cluster, app_pod, tmp_path, "kill manager")
    print(f"manager killed -> run ended in {ended:.2f}s")
    assert code == 3, output
    assert ended < EVENT_TO_EXIT, f"{ended:.2f}s from the kill to the end of the run"
    steps = {s["name"]: s for s in run["steps"]}
    cause = steps["api"]["background_failure"]["cause"]  # the redirect died with it
    assert cause.startswith("manager gone (container kdiag-"), cause
    assert cause.endswith("terminated: Error, exit code 137)"), cause
    # Whichever saw it first: the pod's status, or the redirect's stream (then explained).
    assert run["message"] in (f"target: {cause}", f"redirect 'api': {cause}")
    assert steps["long wait"]["status"] == "error"
    assert steps["cleanup"]["status"] == "passed"


def _adhoc_until_deleted(cluster: Cluster, pod: Any, tmp_path: Path, *args: str,
                         ready: str) -> tuple[int, str, float]:
    ns = pod.metadata.namespace
    process = _kdiag(cluster, tmp_path, *args, "-n", ns, "--pod", "testapp")
    try:
        stream = process.stderr if ready.startswith("following") else process.stdout
        assert stream is not None
        deadline = time.monotonic() + 120
        while not (line := stream.readline()).startswith(ready):
            assert line and time.monotonic() < deadline, f"no {ready!r}: {line!r}"
        at = time.monotonic()
        cluster.core.delete_namespaced_pod("testapp", ns)
        _out, err = process.communicate(timeout=60)
        ended = time.monotonic() - at
    finally:
        process.kill()
    return process.returncode, err, ended


@pytest.mark.parametrize(("command", "ready"), [
    (("redirect", "8080:9"), "redirecting"),
    (("forward", "8080:0"), "Forwarding from"),
    (("logs",), "following"),
], ids=["redirect", "forward", "logs"])
def test_adhoc_commands_name_a_deleted_pod_and_exit_3(cluster: Cluster, app_pod: Any,
                                                      tmp_path: Path, command: tuple[str, ...],
                                                      ready: str) -> None:
    code, err, ended = _adhoc_until_deleted(cluster, app_pod, tmp_path, *command, ready=ready)
    assert code == 3, err
    ns = app_pod.metadata.namespace
    assert err.strip().splitlines()[-1] == (f"kdiag: error: {command[0]} ended: pod {ns}/"
                                            "testapp deleted")
    print(f"{command[0]}: pod deleted -> ended in {ended:.2f}s")
    assert ended < EVENT_TO_EXIT, f"{ended:.2f}s from the deletion to the end"

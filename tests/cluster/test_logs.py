"""Following a selector picks up pods that start running under it later (a Deployment's
replacement pod), from their first line: the ``logs`` step and ``kdiag logs``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def _worker(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "worker"}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "main", "image": "kdiag.local/busybox:dev", "imagePullPolicy": "Never",
                "command": ["sh", "-c", f"echo hello from {name}; exec sleep 3600"]}]}}


def _wait_output(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """Read ``proc``'s merged output until ``text`` shows (what was read so far)."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert text in seen, seen
    return seen


def test_pods_started_later_are_followed(cluster: Cluster, namespace: str, kdiag_cli: Kdiag,
                                         tmp_path: Path) -> None:
    cluster.core.create_namespaced_pod(namespace, _worker("w1"))
    cluster.wait_pod_running(namespace, "w1")
    runbook = tmp_path / "logs.yaml"
    runbook.write_text(f"""\
steps:
  - name: workers
    logs: {{selector: app=worker, namespace: {namespace}, duration: 15s}}
    register: seen
    assert:
      - "seen.lines | selectattr('pod', 'equalto', 'w2') | map(attribute='text')
         | list == ['hello from w2']"
""")
    report = tmp_path / "report.json"
    step = subprocess.Popen([sys.executable, "-m", "kdiag", "run", str(runbook), "--report",
                             f"json={report}", "--artifacts", str(tmp_path / "artifacts")],
                            cwd=REPO, env=kdiag_cli.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    adhoc = subprocess.Popen([sys.executable, "-m", "kdiag", "logs", "-n", namespace, "-l",
                              "app=worker", "--", "sleep", "600"], cwd=REPO, env=kdiag_cli.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_output(step, "following w1/main")
        _wait_output(adhoc, "following w1/main")
        cluster.core.create_namespaced_pod(namespace, _worker("w2"))
        said = _wait_output(adhoc, "[w2/main] hello from w2")
        assert "following w2/main (started later)" in said
        assert step.wait(60) == 0, step.stdout.read() if step.stdout else ""
    finally:
        for proc in (step, adhoc):
            proc.kill()
            proc.wait()
    (result,) = [s for s in json.loads(report.read_text())["runs"][0]["steps"]]
    assert result["status"] == "passed"
    files = {Path(f).name: Path(f) for f in result["result"]["files"]}
    assert files["w2.main.log"].read_text().split(" ", 1)[1] == "hello from w2\n"

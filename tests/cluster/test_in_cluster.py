"""kdiag as a CI job inside the cluster: no kubeconfig, the pod's service account instead.

The job's pod is reproduced around the real CLI: a private mount namespace with the service
account files where a pod has them (token from a TokenRequest, the cluster CA, the namespace),
``KUBERNETES_SERVICE_HOST/PORT`` pointing at the API server, and no kubeconfig anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import MANAGER_IMAGE, Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Pods, restricted_kubeconfig

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# What a CI job running kdiag needs (docs: README, RBAC).
RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]},
]
RUNBOOK = """\
params:
  namespace: {type: string}
  server: {type: string}
target:
  kubernetes: {pod: testapp}
steps:
  - name: inside
    shell: {argv: [echo, from a job]}
    register: said
    assert:
      - "said.stdout == 'from a job\\\\n'"
      - target.in_cluster and target.context is none
      - target.namespace == params.namespace and target.server == params.server
      - "target.user == \\"the pod's service account\\""
  - ps: {}
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_runbook_with_the_pods_service_account(cluster: Cluster, example_pods: Pods,
                                               tmp_path: Path) -> None:
    ns = example_pods.namespace
    kubeconfig = restricted_kubeconfig(cluster, ns, tmp_path / "kubeconfig", RULES, name="ci")
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    host, port = admin["server"].removeprefix("https://").rsplit(":", 1)
    files = tmp_path / "serviceaccount"
    files.mkdir()
    (files / "token").write_text(user["token"])
    (files / "namespace").write_text(ns)
    (files / "ca.crt").write_bytes(base64.b64decode(admin["certificate-authority-data"]))
    runbook = tmp_path / "job.yaml"
    runbook.write_text(RUNBOOK)
    report = tmp_path / "report.json"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KDIAG_MANAGER_IMAGE")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "cache"), NO_COLOR="1",
               KDIAG_MANAGER_IMAGE=MANAGER_IMAGE, XDG_CONFIG_HOME=str(tmp_path / "config"),
               KDIAG_MANAGER_PULL_POLICY="Never", KUBERNETES_SERVICE_HOST=host,
               KUBERNETES_SERVICE_PORT=port)
    # /run only in this private mount namespace: the pod's files appear where kdiag (and the
    # kubernetes client) look for them, and nothing on the host changes.
    script = (f"mount -t tmpfs kdiag-job /run && mkdir -p {SERVICE_ACCOUNT} && "
              f"cp {shlex.quote(str(files))}/* {SERVICE_ACCOUNT}/ && "
              f"exec {shlex.quote(sys.executable)} -m kdiag run {shlex.quote(str(runbook))} "
              f"--set namespace={ns} --set server={admin['server']} "
              f"--report json={shlex.quote(str(report))}")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(report.read_text())["runs"][0]
    assert [s["status"] for s in run["steps"]] == ["passed", "passed"]
    assert len(run["steps"][0]["assertions"]) == 4

"""Environment errors on a pod target: each is one line naming its cause, exit code 3, and the
runbook's finally steps still run where they can."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from .conftest import Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods, restricted_kubeconfig

pytestmark = pytest.mark.cluster

RUNBOOK = """\
params:
  namespace: {type: string}
  pod: {type: string, default: testapp}
target:
  kubernetes: {namespace: "{{ params.namespace }}", pod: "{{ params.pod }}"}
steps:
  - ps: {}
finally:
  - note: finally ran
"""


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[ERR ]")]


def _finally_ran(report: dict) -> bool:
    return any(s["name"] == "note #1 (finally)" and s["status"] == "passed"
               for s in report["runs"][0]["steps"])


def test_rbac_denial_names_the_missing_permission(cluster: Cluster, example_pods: Pods,
                                                  kdiag_cli: Kdiag, tmp_path: Path) -> None:
    ns = example_pods.namespace
    kubeconfig = restricted_kubeconfig(cluster, ns, tmp_path / "kubeconfig", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    ])
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(RUNBOOK)
    result, report = kdiag_cli.run(str(runbook), ns, report=tmp_path / "r.json",
                                   env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 3, result.output
    expected = (f"RBAC: cannot patch pods/ephemeralcontainers in namespace {ns} "
                f"(as system:serviceaccount:{ns}:restricted)")
    assert expected in result.stdout, result.output
    assert len(_error_lines(result.stdout)) == 1
    assert _finally_ran(report)
    assert "Traceback" not in result.output


def test_pod_deleted_mid_run(cluster: Cluster, example_pods: Pods, kdiag_cli: Kdiag,
                             tmp_path: Path) -> None:
    ns = example_pods.namespace
    victim = cluster.manifest("app")
    victim["metadata"] = {"name": "victim", "labels": {"app": "victim"}}
    cluster.core.create_namespaced_pod(ns, victim)
    cluster.wait_pod_running(ns, "victim")
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent("""\
        params:
          namespace: {type: string}
          python: {type: string}
        target:
          kubernetes: {namespace: "{{ params.namespace }}", pod: victim}
        steps:
          - ps: {}
          - name: delete the pod
            run:
              argv:
                - "{{ params.python }}"
                - -c
                - |
                  import sys, time
                  from kubernetes import client, config
                  config.load_kube_config()
                  core = client.CoreV1Api()
                  # A normal delete: the pod object goes once its containers are stopped.
                  core.delete_namespaced_pod("victim", sys.argv[1])
                  while True:
                      try:
                          core.read_namespaced_pod("victim", sys.argv[1])
                      except client.ApiException:
                          break
                      time.sleep(0.2)
                - "{{ params.namespace }}"
          - shell: {script: echo still here}
        finally:
          - note: finally ran
        """))
    result, report = kdiag_cli.run(str(runbook), ns, f"python={sys.executable}",
                                   report=tmp_path / "r.json")
    assert result.returncode == 3, result.output
    errors = _error_lines(result.stdout)
    assert len(errors) == 1 and f"pod {ns}/victim" in errors[0], result.output
    assert "deleted" in errors[0] or "not found" in errors[0], errors
    assert _finally_ran(report)


def test_unreachable_api_server(cluster: Cluster, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(RUNBOOK)
    result, report = kdiag_cli.run(str(runbook), "default", report=tmp_path / "r.json",
                                   env={"KUBECONFIG": str(kubeconfig)}, timeout=60)
    assert result.returncode == 3, result.output
    errors = _error_lines(result.stdout)
    assert len(errors) == 1, result.output
    assert "ps #1: cluster unreachable: https://127.0.0.1:1 (connection refused)" in errors[0]
    assert result.seconds < 20
    assert _finally_ran(report)


def test_image_that_cannot_be_pulled_fails_fast(example_pods: Pods, kdiag_cli: Kdiag,
                                                tmp_path: Path) -> None:
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(RUNBOOK)
    result, _ = kdiag_cli.run(str(runbook), example_pods.namespace,
                              env={"KDIAG_MANAGER_IMAGE": "kdiag.local/no-such-image:dev"},
                              timeout=120)
    assert result.returncode == 3, result.output
    errors = _error_lines(result.stdout)
    assert len(errors) == 1 and "ErrImageNeverPull" in errors[0], result.output
    assert result.seconds < 30

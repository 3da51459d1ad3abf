"""What the manager image holds, used from a pod: the parts of the manager the example runbooks
do not reach — HTTPS (python's ssl and the OpenSSL libraries the image carries) and DNS probes
from inside the pod, and the tools answering inside the manager container itself.

With ``KDIAG_E2E_MANAGER_IMAGE`` set, the whole cluster suite runs against another image (e.g.
the slim one, imported as ``kdiag.local/manager:slim`` beside ``:dev``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import APP_TARGET, Kdiag, Pods
from .test_smoke import exec_in

pytestmark = pytest.mark.cluster

RUNBOOK = APP_TARGET + """\
steps:
  - name: https from inside
    probe: {url: "https://kubernetes.default.svc/version"}
    register: https
    assert:
      - https.status in (200, 401, 403)
      - "'\\"' in https.text"
  - name: dns from inside
    probe: {dns: kubernetes.default.svc.cluster.local}
    register: dns
    assert: ["dns.addresses | length > 0"]
"""


def test_https_and_dns_probes(example_pods: Pods, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    runbook = tmp_path / "probes.yaml"
    runbook.write_text(RUNBOOK)
    result, report = kdiag_cli.run(str(runbook), example_pods.namespace,
                                   report=tmp_path / "r.json")
    assert result.returncode == 0, result.output
    assert [s["status"] for s in report["runs"][0]["steps"]] == ["passed", "passed"]


def test_tools_in_the_manager_container(cluster: Cluster, example_pods: Pods,
                                        kdiag_cli: Kdiag) -> None:
    ns = example_pods.namespace
    result = kdiag_cli("ps", "-n", ns, "--pod", "testapp")  # injects (or reuses) a manager
    assert result.returncode == 0, result.output
    pod = cluster.core.read_namespaced_pod("testapp", ns)
    manager = pod.spec.ephemeral_containers[-1].name
    script = ("iptables -V && ip6tables -V && iptables-save -V && ip6tables-restore -V && "
              "tcpdump --version 2>&1 | head -1 && busybox | head -1 && "
              # the image's python (a venv's in the images before the slim one)
              "py=python3; if [ -x /opt/kdiag/venv/bin/python ]; then py=/opt/kdiag/venv/bin/python; fi"
              " && $py -c 'import ssl, ctypes, json, kdiag_manager.server; print(ssl.OPENSSL_VERSION)'"
              " && $py -c 'print(\"b\u00fccher.example\".encode(\"idna\"))'"
              " && test -x /usr/local/lib/kdiag/enter && echo enter-ok")
    said = exec_in(cluster.stream_core(), ns, "testapp", manager, ["sh", "-c", script])
    for expected in ("iptables v1.", "(nf_tables)", "ip6tables v1.", "ip6tables-restore v1.",
                     "tcpdump version", "BusyBox", "OpenSSL", "xn--bcher-kva.example", "enter-ok"):
        assert expected in said, said

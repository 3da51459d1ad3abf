"""Every example runbook in runbooks/ that targets a pod, run with the CLI against the local
cluster (the pods they expect are made by the `example_pods` fixture). `redirect-api.yaml`,
which targets the `api` Deployment, runs in test_workloads.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods

pytestmark = pytest.mark.cluster


@pytest.mark.runbook("runbooks/diagnose-distroless.yaml")
def test_diagnose_distroless(example_pods: Pods, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    result, _ = kdiag_cli.run("runbooks/diagnose-distroless.yaml", example_pods.namespace,
                              extra=("--artifacts", str(tmp_path / "art")))
    assert result.returncode == 0, result.output
    assert "no /bin/sh in this image" in result.stdout
    hosts = list((tmp_path / "art").rglob("hosts"))
    assert hosts and hosts[0].stat().st_size > 0


@pytest.mark.runbook("runbooks/outgoing-sidecar.yaml", "runbooks/lib/http-health.yaml")
def test_outgoing_sidecar(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    result, _ = kdiag_cli.run("runbooks/outgoing-sidecar.yaml", example_pods.namespace,
                              "local_port=18181")
    assert result.returncode == 0, result.output
    assert "GET /from-sidecar" in result.stdout


@pytest.mark.runbook("runbooks/logs-around-request.yaml")
def test_logs_around_request(example_pods: Pods, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    art = tmp_path / "art"
    result, _ = kdiag_cli.run("runbooks/logs-around-request.yaml", example_pods.namespace,
                              extra=("--artifacts", str(art)))
    assert result.returncode == 0, result.output
    # Lines are prefixed with their pod/container on the console ...
    assert "testapp-client/client]" in result.stdout and "testapp/app]" in result.stdout
    # ... and kept in one file per pod/container.
    files = {p.name: p.read_text() for p in art.rglob("*.log") if "." in p.stem}
    assert "from-client" in files["testapp.app.log"], files.keys()
    assert "call http" in files["testapp-client.client.log"], files.keys()


@pytest.mark.runbook("runbooks/capture.yaml")
def test_capture(example_pods: Pods, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    art = tmp_path / "art"
    result, _ = kdiag_cli.run("runbooks/capture.yaml", example_pods.namespace,
                              extra=("--artifacts", str(art)))
    assert result.returncode == 0, result.output
    pcap = next(art.rglob("app.pcap"))
    assert pcap.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")

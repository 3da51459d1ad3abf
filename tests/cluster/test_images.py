"""The locally built images run in the cluster: the manager image built from the Dockerfile
starts as an ephemeral container next to the distroless app and has its tools."""

from __future__ import annotations

import json

import pytest

from kdiag.kube.podlog import read_pod_log

from .conftest import MANAGER_IMAGE, Cluster
from .test_smoke import exec_in

pytestmark = pytest.mark.cluster


def test_manager_image_runs_as_ephemeral_container(cluster: Cluster, namespace: str) -> None:
    core = cluster.core
    pod = cluster.manifest("app")
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(namespace, pod)
    cluster.wait_pod_running(namespace, name)

    core.patch_namespaced_pod_ephemeralcontainers(
        name,
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "kdiag",
                        "image": MANAGER_IMAGE,
                        "imagePullPolicy": "Never",
                        "targetContainerName": "app",
                        "env": [{"name": "KDIAG_TOKEN", "value": "e2e-image-test"}],
                        "securityContext": {
                            "capabilities": {"add": ["NET_ADMIN", "NET_RAW", "SYS_PTRACE"]}
                        },
                    }
                ]
            }
        },
    )

    def first_line() -> dict | None:
        try:
            text = read_pod_log(core, name, namespace, container="kdiag")
        except Exception:
            return None  # not started yet
        for line in text.splitlines():
            if line.startswith("{"):
                return dict(json.loads(line)["kdiag_manager"])
        return None

    hello = cluster.wait_for(first_line, 90, desc="the manager's first output line")
    assert "error" not in hello, hello
    assert hello["address"].startswith("127.0.0.1:"), hello

    streams = cluster.stream_core()
    tools = exec_in(
        streams,
        namespace,
        name,
        "kdiag",
        [
            "sh",
            "-c",
            "iptables -V && tcpdump --version 2>&1 | head -1 && busybox | head -1 "
            "&& test -f /usr/local/lib/kdiag/enter && test -x /usr/local/lib/kdiag/enter && echo enter-ok",
        ],
    )
    assert "iptables v" in tools and "tcpdump version" in tools, tools
    assert "BusyBox" in tools and "enter-ok" in tools, tools

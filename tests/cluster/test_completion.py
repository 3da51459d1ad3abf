"""Shell completion asking a real cluster (issue 16): the pod names of the namespace on the
command line, and namespaces, as the completion scripts and kubectl's plugin completion get
them. The unit tests (tests/unit/test_completion.py) cover the rest and an unreachable
cluster."""

from __future__ import annotations

import pytest

from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods

pytestmark = pytest.mark.cluster


def test_pod_names_of_the_namespace_on_the_line(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    ns = example_pods.namespace
    result = kdiag_cli("__complete", "shell", "-n", ns, "--pod", "testapp-", timeout=30)
    assert result.returncode == 0, result.output
    assert result.stdout.splitlines() == ["words", "testapp-client", "testapp-sidecar"], \
        result.output
    result = kdiag_cli("__complete", "doctor", "--namespace", ns, "--pod", "", timeout=30)
    assert result.stdout.splitlines() == [
        "words", "testapp", "testapp-client", "testapp-sidecar"], result.output


def test_namespaces(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    ns = example_pods.namespace
    result = kdiag_cli("__complete", "shell", "-n", ns[:-1], timeout=30)
    assert result.returncode == 0, result.output
    kind, *names = result.stdout.splitlines()
    assert kind == "words" and ns in names and all(n.startswith(ns[:-1]) for n in names), \
        result.output

"""The node pod (kdiag/kube/nodepod.py) and the target options of the other ways in."""

from __future__ import annotations

import argparse

import pytest

from kdiag.cli.adhoc.targeting import target_spec
from kdiag.errors import UsageError
from kdiag.kube.inject import ManagerImage
from kdiag.kube.nodepod import node_pod_body, pod_name
from kdiag.preflight.demand import Demand
from kdiag.targets.kubernetes import KubernetesSpec

IMAGE = ManagerImage(image="mgr:1", pull_policy="Never")


def test_a_node_target_has_the_hosts_pid_and_network_and_targets_the_host() -> None:
    body = node_pod_body("kdiag-node-n1-abcde", "n1", IMAGE, "h" * 64)
    spec = body["spec"]
    assert spec["nodeName"] == "n1" and spec["hostPID"] and spec["hostNetwork"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    [manager] = spec["containers"]
    assert manager["securityContext"] == {"privileged": True} and manager["args"] == []
    assert {"name": "KDIAG_TARGET", "value": "host"} in manager["env"]


def test_through_the_node_joins_the_containers_namespaces_not_the_hosts_network() -> None:
    body = node_pod_body("p", "n1", IMAGE, "h" * 64, target_id="c" * 64)
    spec = body["spec"]
    assert spec["hostPID"] and not spec["hostNetwork"]
    [manager] = spec["containers"]
    assert manager["args"] == ["--join-netns"]
    assert {"name": "KDIAG_TARGET_CONTAINER_ID", "value": "c" * 64} in manager["env"]


def test_pod_names_are_dns_labels() -> None:
    name = pod_name("Node_1.example.com" * 4)
    assert len(name) <= 63 and name == name.lower() and "_" not in name and "." not in name


def _args(**kw: object) -> argparse.Namespace:
    base = {"pid": None, "pod": None, "selector": None, "namespace": "ns", "container": None,
            "kubeconfig": None, "context": None, "image": None, "image_pull_policy": None,
            "privileged": False, "start_timeout": None, "all_pods": False, "copy": False,
            "copy_image": None, "keep_copy": False, "via": None}
    return argparse.Namespace(**{**base, **kw})


def test_node_slash_name_and_via_on_the_command_line() -> None:
    assert target_spec(_args(pod="node/n1")) == {"kubernetes": {"namespace": "ns", "node": "n1"}}
    assert target_spec(_args(pod="api-0", via="auto"))["kubernetes"]["via"] == "auto"
    with pytest.raises(UsageError, match="node/NAME names a node"):
        target_spec(_args(pod="node/n1", via="node"))
    with pytest.raises(UsageError, match="node/NAME names a node"):
        target_spec(_args(pod="node/"))


def test_the_way_a_target_asks_for() -> None:
    assert Demand({"kubernetes": {"pod": "a", "via": "node"}}).way == "node"
    assert Demand({"kubernetes": {"node": "n1"}}).way == "node"
    assert Demand({"kubernetes": {"pod": "a", "via": "auto"}}).way == "auto"
    assert Demand({"kubernetes": {"pod": "a", "copy": {}}}).way == "copy"
    assert Demand({"kubernetes": {"pod": "a"}}).way == "ephemeral"
    spec = KubernetesSpec.from_options({"node": "n1", "namespace": "ns"})
    assert spec.node == "n1" and spec.describe() == "node n1"


def test_through_the_node_needs_pods_and_leases_not_ephemeral_containers() -> None:
    from kdiag.preflight.demand import StepUse
    from kdiag.preflight.needs import needs

    demand = Demand({"kubernetes": {"pod": "a", "via": "node"}}, steps=[StepUse("s", "shell")])
    found = {str(n.access) for n in needs(demand, (1, 35))}
    assert {"create pods", "delete pods", "get pods/log", "create pods/portforward",
            "create leases.coordination.k8s.io"} <= found
    assert "patch pods/ephemeralcontainers" not in found

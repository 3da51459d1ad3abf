"""Targets in kubectl's TYPE/NAME form and the ad-hoc commands' positional target (the logic:
tests/cluster/test_workloads.py runs them against real Deployments and Services)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from kdiag.cli.main import _parse, build_parser
from kdiag.errors import TargetError, UsageError
from kdiag.kube.workloads import ServicePort, Workload, map_port, parse_name, selector_text


@pytest.mark.parametrize(("text", "kind", "name"), [
    ("api-0", "pod", "api-0"), ("pod/api-0", "pod", "api-0"), ("po/api-0", "pod", "api-0"),
    ("deploy/api", "deployment", "api"), ("deployments/api", "deployment", "api"),
    ("deployment.apps/api", "deployment", "api"), ("sts/db", "statefulset", "db"),
    ("ds/agent", "daemonset", "agent"), ("rs/api-7d9", "replicaset", "api-7d9"),
    ("job/migrate", "job", "migrate"), ("jobs.batch/migrate", "job", "migrate"),
    ("svc/api", "service", "api"), ("Service/api", "service", "api")])
def test_kubectl_forms(text: str, kind: str, name: str) -> None:
    assert parse_name(text) == (kind, name)


@pytest.mark.parametrize("text", ["cronjob/x", "deploy/", "deployment.batch/api", "a/b/c"])
def test_unknown_forms_say_which_are_known(text: str) -> None:
    with pytest.raises(TargetError, match=r"use NAME or TYPE/NAME with TYPE one of pod/, "
                                          r"deployment/ \(deploy/\)"):
        parse_name(text)


def test_label_selectors_from_workloads() -> None:
    expression = NS(key="tier", operator="In", values=["web", "api"])
    selector = NS(match_labels={"app": "api", "a": "b"}, match_expressions=[
        expression, NS(key="canary", operator="DoesNotExist", values=None),
        NS(key="x", operator="Exists", values=None),
        NS(key="y", operator="NotIn", values=["1"])])
    assert selector_text(selector) == "a=b,app=api,tier in (web,api),!canary,x,y notin (1)"


SERVICE = Workload("service", "api", "shop", "app=api", (
    ServicePort(80, "http", "web"), ServicePort(9090, "metrics", 9100)))


def test_service_ports_become_the_pods_target_ports() -> None:
    named = {"web": 8080, "admin": 8081}
    assert map_port(80, named, SERVICE) == 8080  # named targetPort: the pod's number
    assert map_port("http", named, SERVICE) == 8080
    assert map_port("9090", named, SERVICE) == 9100
    assert map_port("metrics", named, SERVICE) == 9100
    assert map_port(8081, named, SERVICE) == 8081  # not a Service port: the pod's own
    assert map_port("admin", named, SERVICE) == 8081  # a container port's name
    assert map_port("admin", named, None) == 8081
    with pytest.raises(TargetError, match="no port named 'grpc' \\(named ports: admin, http, "
                                          "metrics, web\\)"):
        map_port("grpc", named, SERVICE)
    with pytest.raises(TargetError, match="targetPort 'web' names no port of the pod"):
        map_port(80, {}, SERVICE)


def _args(*words: str):
    command = next(w for w in words if not w.startswith("-"))
    return _parse(build_parser("kdiag", only=command), list(words), command)


def test_the_first_word_names_the_target_as_kubectl_does() -> None:
    args = _args("shell", "deploy/api", "-n", "shop", "--all", "--", "cat", "-n", "/x", "--")
    assert (args.pod, args.namespace, args.all_pods, args.cmd) == \
        ("deploy/api", "shop", True, ["cat", "-n", "/x", "--"])
    args = _args("shell", "--pod", "api-0", "--", "ls", "-l")
    assert (args.pod, args.cmd) == ("api-0", ["ls", "-l"])
    args = _args("shell", "--pod", "api-0", "ls")  # a word after a named target: the command
    assert (args.pod, args.cmd) == ("api-0", ["ls"])
    args = _args("ps", "svc/api", "-n", "shop", "-A")
    assert (args.pod, args.all_processes, args.all_pods) == ("svc/api", True, False)
    args = _args("redirect", "deploy/api", "-n", "shop", "8080:9000", "--all", "http")
    assert (args.pod, args.ports, args.all_pods) == ("deploy/api", ["8080:9000", "http"], True)
    args = _args("redirect", "-l", "app=api", "8080")
    assert (args.pod, args.selector, args.ports) == (None, "app=api", ["8080"])
    args = _args("redirect", "8080:9000")  # a port first: no target named
    assert (args.pod, args.ports) == (None, ["8080:9000"])
    args = _args("forward", "svc/api", "80")
    assert (args.pod, args.ports) == ("svc/api", ["80"])
    args = _args("logs", "deploy/api", "-c", "all", "--", "curl", "-s", "x")
    assert (args.pod, args.container, args.cmd) == ("deploy/api", "all", ["curl", "-s", "x"])
    with pytest.raises(UsageError, match="unexpected argument"):
        _args("ps", "deploy/api", "extra")


def test_exec_takes_the_target_first_and_one_pod_only() -> None:
    """``kdiag exec TARGET [options] -- COMMAND`` as the README writes it; a command's own
    ``--`` stays; ``--all`` is refused before anything is opened (one pod's context)."""
    from kdiag.cli.adhoc.exec import command

    args = _args("exec", "deploy/api", "-n", "shop", "--env", "--file", "/etc/api/", "--",
                 "./api", "--", "-x")
    assert (args.pod, args.namespace, args.env, args.file, args.cmd) == \
        ("deploy/api", "shop", True, ["/etc/api/"], ["./api", "--", "-x"])
    args = _args("exec", "--pod", "api-0", "--env", "--", "env")
    assert (args.pod, args.cmd) == ("api-0", ["env"])
    args = _args("exec", "--pid", "7", "--env", "--", "env")
    assert (args.pod, args.pid, args.cmd) == (None, 7, ["env"])
    args = _args("exec", "deploy/api", "--all", "--env", "--", "./api")
    with pytest.raises(UsageError, match=r"^--all: a command runs with one pod's context"):
        command(args)


def test_target_spec_of_the_flags() -> None:
    from kdiag.cli.adhoc.targeting import target_spec

    spec = target_spec(_args("shell", "deploy/api", "-n", "shop", "--all"))
    assert spec == {"kubernetes": {"namespace": "shop", "pod": "deploy/api", "pick": "all"}}
    with pytest.raises(UsageError, match="name the target once"):
        target_spec(_args("shell", "--pod", "deploy/api", "-l", "app=x", "--", "ls"))
    with pytest.raises(UsageError, match="name the target: POD or TYPE/NAME"):
        target_spec(_args("redirect", "8080"))
    with pytest.raises(UsageError, match="--all needs a pod target"):
        target_spec(_args("ps", "--pid", "1", "--all"))


@pytest.mark.parametrize(("pod", "access"), [
    ("deploy/api", "get deployments.apps"), ("statefulsets/db", "get statefulsets.apps"),
    ("ds/agent", "get daemonsets.apps"), ("rs/api-7d9", "get replicasets.apps"),
    ("job/migrate", "get jobs.batch"), ("svc/api", "get services"),
    ("service/api", "get services")])
def test_preflight_asks_to_read_the_workload(pod: str, access: str) -> None:
    from kdiag.preflight.demand import Demand, StepUse
    from kdiag.preflight.needs import needs

    found = {str(n.access): n.reasons for n in
             needs(Demand({"kubernetes": {"pod": pod}}, [StepUse("s", "shell")]))}
    assert found[access] == ["the target"]
    assert {"list pods", "watch pods"} <= set(found)  # pick: all follows its pods
    plain = {str(n.access) for n in needs(Demand({"kubernetes": {"pod": "pod/api-0"}},
                                                 [StepUse("s", "shell")]))}
    assert not plain & {"get deployments.apps", "get services"}

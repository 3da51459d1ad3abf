"""The logic of doctor and the check before a run: the needs table, Pod Security levels, what a
runbook asks for, the manager image reference and the settings file, node mode's checks, the
verdicts and their output. (The checks against a real API server: tests/cluster/test_doctor.py.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kdiag.errors import UsageError
from kdiag.preflight import podsecurity
from kdiag.preflight.checks import Check, exit_code
from kdiag.preflight.demand import Demand, StepUse
from kdiag.preflight.needs import STEPS, WAYS, Access, needs

MANAGER_CAPS = ("NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_ADMIN", "SYS_CHROOT")


def _pod_demand(*steps: StepUse, **options: object) -> Demand:
    return Demand(target={"kubernetes": {"pod": "api", **options}}, steps=list(steps))


def _accesses(demand: Demand, server: tuple[int, int] | None = (1, 34)) -> dict[str, list[str]]:
    return {str(n.access): n.reasons for n in needs(demand, server)}


def test_manager_steps_need_the_ways_verbs() -> None:
    found = _accesses(_pod_demand(StepUse("look", "shell"), StepUse("ps #2", "ps")))
    assert found == {
        "get pods": ["the target"], "list pods": ["the target"], "watch pods": ["the target"],
        "patch pods/ephemeralcontainers": ["shell 'look'", "ps 'ps #2'"],
        "get pods/log": ["shell 'look'", "ps 'ps #2'"],
        "get pods/portforward": ["shell 'look'", "ps 'ps #2'"]}


def test_port_forward_needs_create_from_kubernetes_1_35() -> None:
    demand = _pod_demand(StepUse("fw", "forward"))
    assert "create pods/portforward" not in _accesses(demand, (1, 34))
    assert _accesses(demand, (1, 35))["create pods/portforward"] == ["forward 'fw'"]
    assert "create pods/portforward" in _accesses(demand, None)  # unknown version: ask


def test_other_ways_and_step_extras() -> None:
    copy = _accesses(_pod_demand(StepUse("s", "shell"), way="copy"))
    # the manager is injected into the copy; the copy lives while its run's Lease does
    assert {"create pods", "delete pods", "patch pods/ephemeralcontainers",
            "create leases.coordination.k8s.io"} <= set(copy)
    logs = _accesses(_pod_demand(StepUse("l", "logs")))
    assert "patch pods/ephemeralcontainers" not in logs and logs["get pods/log"] == ["logs 'l'"]
    expose = _accesses(_pod_demand(StepUse("r", "redirect", "expose")))
    assert expose["create services"] == ["redirect 'r'"]
    assert "create services" not in _accesses(_pod_demand(StepUse("r", "redirect")))


def test_steps_that_do_not_use_the_cluster_need_nothing() -> None:
    assert needs(_pod_demand(StepUse("a", "run"), StepUse("b", "http"), StepUse("c", "note"))) == []


def test_without_a_runbook_everything_and_extras_are_optional() -> None:
    wanted = needs(Demand(target={"kubernetes": {}}, steps=None), (1, 34))
    optional = {str(n.access) for n in wanted if n.optional}
    required = {str(n.access) for n in wanted if not n.optional}
    assert {"create services", "delete services"} <= optional
    assert {"patch pods/ephemeralcontainers", "get pods/log", "get pods/portforward",
            "get pods"} <= required


def test_workload_targets_read_the_workload() -> None:
    found = _accesses(_pod_demand(StepUse("s", "ps"), pod="deployment/api"))
    assert found["get deployments.apps"] == ["the target"]


def test_the_table_names_real_step_types() -> None:
    from kdiag.preflight.needs import manager_kinds
    from kdiag.steps import step_types

    kinds = set(step_types())
    assert {key.split(":")[0] for key in STEPS} <= kinds
    assert {"shell", "ps", "net", "redirect", "capture", "copy", "probe"} <= manager_kinds()
    for texts in [*WAYS.values(), *STEPS.values()]:
        for text in texts:
            assert str(Access.parse(text)) == text


def test_access_rules() -> None:
    access = Access.parse("get deployments.apps")
    assert (access.verb, access.resource, access.group) == ("get", "deployments", "apps")
    assert Access.parse("patch pods/ephemeralcontainers").rule() == (
        '{apiGroups: [""], resources: ["pods/ephemeralcontainers"], verbs: ["patch"]}')


def test_pod_security_levels() -> None:
    assert podsecurity.violations("privileged", MANAGER_CAPS, False) == []
    baseline = podsecurity.violations("baseline", MANAGER_CAPS, False)
    assert baseline == ["added capabilities NET_ADMIN, NET_RAW, SYS_PTRACE, SYS_ADMIN"]
    restricted = podsecurity.violations("restricted", MANAGER_CAPS, False)
    assert "SYS_CHROOT" in restricted[0] and "root" in restricted[1]
    assert podsecurity.violations("baseline", MANAGER_CAPS, True) == ["privileged: true"]
    assert podsecurity.fitting_level(MANAGER_CAPS, False) == "privileged"
    assert podsecurity.fitting_level(("SYS_CHROOT",), False) == "baseline"
    labels = {"pod-security.kubernetes.io/enforce": "nonsense",
              "pod-security.kubernetes.io/warn": "baseline"}
    assert podsecurity.Namespace.from_labels("x", labels).levels == {
        "enforce": "restricted", "warn": "baseline"}


def test_demand_from_a_runbook(tmp_path: Path) -> None:
    from kdiag.language.runbook import Loader
    from kdiag.preflight.demand import from_runbook
    from kdiag.steps import catalog

    (tmp_path / "lib.yaml").write_text("steps:\n  - capture: {duration: 1s}\n")
    (tmp_path / "rb.yaml").write_text(
        "params:\n  ns: {type: string}\n"
        "target:\n  kubernetes: {namespace: '{{ params.ns }}', pod: api}\n"
        "steps:\n  - name: outer\n    group:\n      steps:\n        - ps: {}\n"
        "  - include: {file: lib.yaml}\n"
        "  - redirect: {ports: [80], to: '127.0.0.1:9'}\n    background: true\n"
        "finally:\n  - note: bye\n")
    loader = Loader(catalog(), [])
    demand = from_runbook(loader.load(str(tmp_path / "rb.yaml")), {"ns": "shop"}, loader)
    assert demand.target == {"kubernetes": {"namespace": "shop", "pod": "api"}}
    assert [(s.kind, s.mode) for s in demand.steps or []] == [
        ("group", ""), ("ps", ""), ("include", ""), ("capture", ""), ("redirect", ""),
        ("note", "")]
    assert demand.way == "ephemeral" and demand.kind == "kubernetes"


def test_a_steps_mode_counts() -> None:
    from types import SimpleNamespace

    from kdiag.preflight.demand import step_uses

    def spec(kind: str, body: object) -> object:
        return SimpleNamespace(name=kind, kind=kind, body=body, children=())

    uses = step_uses([spec("redirect", {"mode": "expose"}),  # type: ignore[list-item]
                      spec("redirect", {"mode": "{{ params.mode }}"}), spec("ps", {})])
    assert [u.key for u in uses] == ["redirect:expose", "redirect", "ps"]


def test_a_target_needing_run_values_is_left_to_the_run(tmp_path: Path) -> None:
    from kdiag.language.model import Runbook
    from kdiag.preflight.demand import render_target

    runbook = Runbook(name="x", file=str(tmp_path / "x.yaml"),
                      target={"kubernetes": {"pod": "{{ steps.find.stdout }}"}})
    assert render_target(runbook, {}) is None


def test_image_reference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kdiag import __version__
    from kdiag.kube import imageref

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("KDIAG_MANAGER_IMAGE", raising=False)
    monkeypatch.delenv("KDIAG_MANAGER_PULL_POLICY", raising=False)
    assert imageref.manager_image() == imageref.Chosen(f"kdiag.local/manager:{__version__}",
                                                       "the default")
    (tmp_path / "kdiag").mkdir()
    (tmp_path / "kdiag" / "config.yaml").write_text(
        "manager_image: registry.example:5000/team/kdiag-manager\nmanager_pull_policy: Always\n")
    chosen = imageref.manager_image()
    assert chosen.value == f"registry.example:5000/team/kdiag-manager:{__version__}"
    assert "config.yaml" in chosen.source
    assert imageref.pull_policy().value == "Always"
    monkeypatch.setenv("KDIAG_MANAGER_IMAGE", "mine@sha256:" + "a" * 64)
    assert imageref.manager_image().value == "mine@sha256:" + "a" * 64
    assert imageref.manager_image("flag:3").value == "flag:3"
    assert imageref.normalized("busybox") == "docker.io/library/busybox:latest"
    assert imageref.normalized("kdiag.local/manager:dev") == "kdiag.local/manager:dev"
    assert imageref.normalized("localhost/x") == "localhost/x:latest"
    assert imageref.normalized("team/app:1") == "docker.io/team/app:1"


@pytest.mark.parametrize(("text", "error"), [
    ("manager_image: [1]\n", "manager_image must be a non-empty string"),
    ("manager_imag: x\n", "unknown setting 'manager_imag'"),
    ("manager_pull_policy: Sometimes\n", "manager_pull_policy must be one of"),
    ("\nmanager_image: x: y\n", "config.yaml:2:"),
    ("- a\n", "expected a mapping"),
])
def test_settings_file_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str,
                              error: str) -> None:
    from kdiag import userconfig

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "kdiag").mkdir()
    (tmp_path / "kdiag" / "config.yaml").write_text(text)
    with pytest.raises(UsageError, match=error):
        userconfig.load()


def test_node_mode_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from kdiag.preflight.host import host_checks, kernel_version

    assert kernel_version("6.18.44-fc-v1098") == (6, 18)
    assert kernel_version("5.4.0-150-generic") == (5, 4)
    checks = {c.name: c for c in host_checks(Demand(target={"node": {"pid": os.getpid()}}))}
    assert checks[f"target process {os.getpid()}"].status == "ok"
    monkeypatch.setenv("KDIAG_IPTABLES", "no-such-iptables")
    monkeypatch.setattr("platform.release", lambda: "5.4.0")
    checks = {c.name: c for c in host_checks(Demand(target={"node": {"pid": 999999999}},
                                                    steps=[StepUse("r", "redirect")]))}
    assert checks["no-such-iptables"].refuses and checks["target process 999999999"].refuses
    assert checks["no-such-ip6tables"].status == "warn"
    assert checks["kernel"].status == "warn" and "5.12" in checks["kernel"].detail
    quiet = {c.name: c for c in host_checks(Demand(target={"node": {"pid": 1}},
                                                   steps=[StepUse("p", "ps")]))}
    assert not quiet["no-such-iptables"].refuses  # no redirect: not needed


def test_verdicts_and_output() -> None:
    from kdiag.preflight.table import print_table, report

    checks = [Check("cluster", "ok", "v1.34"),
              Check("RBAC: cannot get pods/log in namespace x", "fail", fix="ask for it",
                    needed_by=["a", "b", "c", "d"]),
              Check("RBAC: cannot create services in namespace x", "warn", blocking=False)]
    assert exit_code(checks) == 3 and exit_code([checks[0], checks[2]]) == 0
    assert checks[1].line() == ("RBAC: cannot get pods/log in namespace x (needed by a, b, c "
                                "and 1 more); ask for it")
    out = io.StringIO()
    print_table(checks, out, color=False)
    text = out.getvalue()
    assert "FAIL" in text and "→ ask for it" in text and "a run would stop here" in text
    assert all(line == line.rstrip() for line in text.splitlines())
    data = json.loads(report(checks, {"kubernetes": {}}, ""))
    assert data["exit_code"] == 3 and not data["ok"] and len(data["checks"]) == 3
    assert data["checks"][1] == {"check": checks[1].name, "status": "fail", "detail": "",
                                 "fix": "ask for it", "blocking": True,
                                 "needed_by": ["a", "b", "c", "d"]}


def test_gate_words_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.kube.errors import ClusterUnreachable
    from kdiag.preflight import gate

    demand = _pod_demand(StepUse("s", "shell"))
    demand.runbook = "rb.yaml"
    answers: list[list[Check]] = [
        [Check("cluster", "fail", "cluster unreachable: https://x (connection refused)")],
        [Check("cluster", "ok"), Check("RBAC: cannot a", "fail", needed_by=["shell 's'"]),
         Check("RBAC: cannot b", "fail", needed_by=["shell 's'"])],
        [Check("cluster", "ok"), Check("x", "warn", blocking=False)],
    ]
    monkeypatch.setattr("kdiag.preflight.examine.examine", lambda d, full: answers.pop(0))
    unreachable = gate.refusal(demand)
    assert isinstance(unreachable, ClusterUnreachable)
    assert str(unreachable) == "cluster unreachable: https://x (connection refused)"
    assert str(gate.refusal(demand)) == ("RBAC: cannot a; RBAC: cannot b (needed by shell 's');"
                                         " kdiag doctor -f rb.yaml says what to ask for")
    assert gate.refusal(demand) is None
